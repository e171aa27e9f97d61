"""Run directories for step tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.corpora import write_jsonl
from tasks import config, layout
from tasks.io import storage

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_run(root: Path | str, run_id: str = "run-1", **params) -> config.RunConfig:
    """A saved run config. The alignment screen is off unless asked for: it loads `base_model`, and the default one
    is a Hub id that cannot be downloaded here."""
    params.setdefault("alignment_screen", False)
    cfg = config.build(params, dag_id="test_dag", run_id=run_id, artifact_root=str(root))
    config.save(cfg)
    return cfg


def write_splits(cfg: config.RunConfig, scratch: Path, **splits) -> None:
    """Place ready-made splits (name → list of pairs) in the run directory, as the split step would."""
    for name, pairs in splits.items():
        path = write_jsonl(scratch / f"{name}.jsonl", pairs, cfg.source_lang, cfg.target_lang)
        storage.upload_file(path, cfg.uri(layout.split_file(name)))


def ready_to_evaluate(root: Path, run_id: str, base: Path, candidate: Path, champion: Path | None = None, *,
                      test: list, general: list, card: str = "# the model card\n", **params) -> config.RunConfig:
    """A run of the pipeline under `root` as the steps before evaluate leave it: its splits, the trained model, and
    the champion step's record. A champion is placed as that step leaves a published release: with the release's
    card and record."""
    import json
    import shutil

    cfg = make_run(root / "artifacts", run_id=run_id, base_model=str(base), **params)
    write_splits(cfg, root / run_id, test=test, general_test=general)
    shutil.copytree(candidate, cfg.uri(layout.MODEL))
    if champion is None:
        storage.write_json(cfg.uri(layout.CHAMPION_RECORD), {"found": False, "reason": "nothing published yet"})
        return cfg
    shutil.copytree(champion, cfg.uri(layout.CHAMPION))
    Path(cfg.uri(layout.CHAMPION), "README.md").write_text("---\nlicense: apache-2.0\n---\n" + card)
    Path(cfg.uri(layout.CHAMPION), "release.json").write_text(json.dumps({"run_id": "run-1"}))
    storage.write_json(cfg.uri(layout.CHAMPION_RECORD), {"found": True, "label": "org/digits@run-1",
                                                         "model_uri": cfg.uri(layout.CHAMPION)})
    return cfg


def cli_env() -> dict:
    """Environment for `python -m tasks ...` subprocesses: the repo importable, the offline Hub settings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def cli(step: str, run_dir: str) -> list[str]:
    return [sys.executable, "-m", "tasks", step, "--run-dir", run_dir]


def make_promoted_run(root: Path | str, model_dir: Path, run_id: str = "manual__2026-11-27T06:51:49+00:00",
                      promote: bool = True, champion_source=None, **params) -> config.RunConfig:
    """A run directory as the steps before publish leave it: a trained model, scores, the gate's decision,
    the release gate's verdict, the pull manifest, the validation report and the test split. Scores are made up; their shape is real.
    The champion lookup is the champion step's, from `champion_source` (a registry), when one is given (a
    champion it finds is scored below the candidate, as evaluate would score it); else the lookup of a first run,
    which saw nothing published."""
    import json
    import shutil
    import tempfile

    from tasks.evaluate import champion, gate
    from tasks.io import digest
    from tasks.publish import release

    cfg = make_run(root, run_id=run_id, **params)
    lookup = champion.run(cfg, source=champion_source) if champion_source else \
        {"found": False, "reason": "nothing published yet", "registry_revision": None}
    model_uri = cfg.uri(layout.MODEL)
    if storage.is_s3(model_uri):
        storage.upload_tree(model_dir, model_uri)
    else:
        shutil.copytree(model_dir, model_uri)
    settings = {"source_lang": "en", "target_lang": "de", "max_source_length": 32,
                "loop": {"learning_rate": 0.003, "num_train_epochs": 100.0, "max_tokens_per_batch": 512}}
    storage.write_json(cfg.uri(layout.TRAIN_REPORT),
                       {"best_step": 250, "best_validation_loss": 0.42, "train_pairs": 1200, "settings": settings})
    signatures = {"bleu": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
                  "chrf": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0",
                  "ter": "nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0"}
    outputs = {"outputs": 150, "distinct": 0.97, "empty": 0.0, "source_copies": 0.02, "runaway": 0.0}
    base = {"bleu": 3.1, "chrf": 20.4, "ter": 95.0, "signatures": signatures, "outputs": outputs}
    candidate = {"bleu": 61.7, "chrf": 80.2, "ter": 30.5, "signatures": signatures, "outputs": outputs}
    if not promote:
        candidate = {**base}
    champion_scores = {"bleu": 58.2, "chrf": 78.0, "ter": 33.1, "signatures": signatures, "outputs": outputs,
                       "model": lookup["label"]} if lookup["found"] else None
    test = {m: {"baseline": base[m], "system": candidate[m], "delta": round(candidate[m] - base[m], 2),
                "p_value": 0.001 if promote else 1.0, "baseline_ci": 1.5, "system_ci": 2.0}
            for m in ("bleu", "chrf", "ter")}
    with tempfile.TemporaryDirectory() as scratch:
        fingerprint = digest.of_folder(storage.local_dir_for(model_uri, Path(scratch) / "model"))
    scores = {"test_sentences": 150, "decoding": {"num_beams": 2, "max_length": 32},
              "base": base, "candidate": candidate, "champion": champion_scores,
              "champion_lookup": lookup,
              "significance": {"candidate_vs_base": {**test, "signatures": {
                  "bleu": signatures["bleu"] + "|bs:1000|seed:12345"}}},
              "general": None, "bootstrap": {"resamples": 1000, "seed": 12345},
              "candidate_model": {"uri": model_uri, "fingerprint": fingerprint}}
    storage.write_json(cfg.uri(layout.SCORES), scores)
    stored = storage.read_bytes(cfg.uri(layout.SCORES))
    storage.write_json(cfg.uri(layout.GATE), gate.decide(json.loads(stored), cfg, digest.of_bytes(stored)))
    storage.write_json(cfg.uri(layout.VALIDATION_REPORT), {"rows_in": 1503, "kept": 1500, "rejected": 2, "deduplicated": 1})
    storage.write_json(cfg.uri(layout.PULL_MANIFEST), {"source": cfg.data_uri, "objects": [
        {"uri": cfg.data_uri + "part-a.jsonl", "relpath": "part-a.jsonl", "etag": "abc", "size": 1234}]})
    storage.write_text(cfg.uri(layout.split_file("test")), json.dumps({"translation": {"en": "one", "de": "eins"}}) + "\n")
    release.decide([cfg])  # the release gate, after every language's gate (here: this one)
    return cfg


def put_raw(cfg: config.RunConfig, *paths: Path) -> None:
    """Place files in the run's raw/ folder and list them in its manifest, as the pull step would (each under
    its file name as its key)."""
    from datetime import datetime, timezone

    from tasks.data import pull

    objects = []
    for path in paths:
        uri, etag = f"{cfg.data_uri.rstrip('/')}/{path.name}", storage.stat(str(path)).etag
        local = pull.raw_name(uri, path.name)
        storage.upload_file(path, cfg.uri(layout.RAW, local))
        objects.append({"uri": uri, "key": path.name, "etag": etag, "size": path.stat().st_size, "local": local})
    storage.write_json(cfg.uri(layout.PULL_MANIFEST), {
        "source": cfg.data_uri, "mode": "incremental", "training_data": cfg.training_data,
        "pulled_at": datetime.now(timezone.utc).isoformat(), "objects": objects, "changed": [], "carried": [],
        "already_consumed": 0, "ignored": [], "nothing_new": not objects, "message": "test files"})


def validate_files(root: Path | str, files, **params):
    """A run over `files` (placed as the pull step would) through validate, with min_clean_pairs 1 and 64-token
    limits unless `params` say otherwise: its config, and the BadBatchError that refused the batch, or None."""
    from tasks.data import validate

    cfg = make_run(root, **{"min_clean_pairs": 1, "max_source_length": 64, "max_target_length": 64, **params})
    put_raw(cfg, *files)
    try:
        validate.run(cfg)
    except validate.BadBatchError as err:
        return cfg, err
    return cfg, None


def accounted(cfg: config.RunConfig) -> tuple[dict, list[dict], list[dict]]:
    """The validation report, clean records and rejects, after checking that every row read is in exactly
    one of them: rows in = kept + rejected + deduplicated, per file and in total; rows carried from consumed
    objects = kept + deduplicated + leakage; rows of carried copies screened again = kept + rejected +
    deduplicated; and every object of the manifest has its entry."""
    import json
    from collections import Counter

    report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    clean = [json.loads(line) for line in storage.read_text(cfg.uri(layout.CLEAN)).splitlines()]
    rejects = [json.loads(line) for line in storage.read_text(cfg.uri(layout.REJECTS)).splitlines()]
    assert report["rows_in"] == report["kept"] + report["rejected"] + report["deduplicated"], report["accounting"]
    carried, again = report.get("carried", {}), report.get("rescreened", {})
    assert len(clean) == report["kept"] + sum(c["kept"] for c in [*carried.values(), *again.values()]) == \
        report["clean_pairs"]
    assert len(rejects) == report["rejected"] + report["deduplicated"] + \
        sum(c["deduplicated"] + c["leakage"] for c in carried.values()) + \
        sum(c["rejected"] + c["deduplicated"] for c in again.values())
    per_file = Counter(r["file"] for r in clean + rejects)
    rows = Counter({name: c["rows"] for name, c in [*report["files"].items(), *carried.items(), *again.items()]
                    if c["rows"]})
    assert per_file == rows
    for name, c in [*report["files"].items(), *again.items()]:
        assert c["rows"] == c["kept"] + c["rejected"] + c["deduplicated"], name
    manifest = storage.read_json_or(cfg.uri(layout.PULL_MANIFEST))
    if manifest is not None:
        assert {o["key"] for o in manifest["objects"]} == set(report["files"])
        assert {c["key"] for c in manifest.get("carried", [])} == set(carried) | set(again)
    assert all(r["reasons"] and all(x["reason"] and x["detail"] for x in r["reasons"]) for r in rejects)
    return report, clean, rejects


def folder_or_s3(request, tmp_path: Path, kind: str, bucket: str, prefix: str) -> str:
    """A storage root for tests parametrized over both backends: a folder, or a prefix in moto's S3."""
    if kind != "s3":
        return str(tmp_path / prefix.rsplit("/", 1)[-1])
    request.getfixturevalue("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/{prefix}"


def kill_once_checkpointed(cfg: config.RunConfig, within: float) -> int:
    """Start the train step, SIGKILL it as soon as a checkpoint exists (as when a pod is evicted: no cleanup, no
    goodbye) and return the newest checkpoint's step."""
    checkpoints = Path(cfg.uri(layout.CHECKPOINTS))
    proc = subprocess.Popen(cli("train", cfg.run_dir), env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + within
    while not list(checkpoints.glob("step-*/state.pt")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, f"no checkpoint within {within} s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return max(int(p.parent.name.split("-")[1]) for p in checkpoints.glob("step-*/state.pt"))


def tiny_bench(script: str, *args: str, timeout: int = 600) -> dict:
    """Run `bench/<script> --tiny [args]` as CI runs it and return the figures of its last line (one JSON object)."""
    return tiny_bench_lines(script, *args, timeout=timeout)[-1]


def tiny_bench_lines(script: str, *args: str, timeout: int = 600) -> list[dict]:
    """The JSON objects `bench/<script> --tiny [args]` printed, one a line, in order (other lines skipped: the
    seed's Trainer prints its metrics as a Python dict). The last line must be one."""
    import json

    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / script), "--tiny", *args], env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    figures = []
    for line in lines:
        try:
            figures.append(json.loads(line))
        except ValueError:
            continue
    assert figures and figures[-1] == json.loads(lines[-1])
    return figures
