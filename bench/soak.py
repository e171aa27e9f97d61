"""A year of weekly runs, each week checked: the real DAG on moto's S3 with tiny models, and every fault a careless
data team or a flaky week brings.

    python bench/soak.py --weeks 52     # a year: about an hour on 2 cores
    python bench/soak.py --weeks 13     # one pass of every fault
    python bench/soak.py --tiny         # three weeks (CI)

Each week lands new data for en→de and en→nl under one prefix of moto's S3 (a process of its own on 127.0.0.1),
then runs `translation_finetune` for both languages with `dag.test()` (the real tasks, a real tiny model learning
the digit task, publishing to a local Hub-compatible server). The weeks cycle through a 13-week calendar of faults
(FAULTS). After each week the soak checks, from what the runs left on S3:

- accounting: every row of every object a run validated ends in exactly one place (clean.jsonl or
  rejects.jsonl), new, carried and screened-again rows alike, and each new object's row count is its line count;
- the frozen test set of each language never changes;
- no object version is consumed twice (its entry keeps the run that consumed it) or never (after a run commits,
  every data object at the source is consumed at its current version, unless broken or retracted);
- the carried copies are cleaned by the current rules (each entry's fingerprint is the committing run's);
- the state stays proportional to the data: consumed.json bytes per object, and the shards in use bounded.

The last line is one JSON object: weeks, runs, invariant_failures (0 is the goal), the first failures, each week's
fault and outcome per language, and seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "plugins", REPO / "tests", REPO / "bench"):
    sys.path.insert(0, str(_path))

LANGS = ("de", "nl")
DATA = "s3://soak-data/weekly"
# The calendar: week 1 trains briefly, so its champion leaves room for week 2's en→de to be promoted while en→nl
# (targets shuffled) is refused; week 13 retracts that shuffled object.
FAULTS = ["first week", "one language refused", "broken file", "broken file removed", "duplicate object",
          "rewritten object", "deleted object", "empty week", "failed run", "recovery", "filter tightened",
          "snapshot run", "retraction"]
FIRST_WEEK_STEPS = 200
ROWS = 500  # new rows per language and week
MAX_STATE_BYTES_PER_OBJECT = 1500


def environment(home: Path) -> None:
    """What tests/conftest.py sets up for a test session: a private Airflow home and an offline Hub client."""
    os.environ.update({
        "AIRFLOW_HOME": str(home / "airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "HF_HOME": str(home / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
        "MT_LOCAL_DATA_ROOTS": str(home), "MT_ARTIFACT_ROOT": "s3://soak-artifacts/runs",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
    })
    for var in ("MT_DATA_URI", "HF_TOKEN", "AWS_PROFILE"):
        os.environ.pop(var, None)
    done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], capture_output=True,
                          text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])


def models(home: Path) -> tuple[str, str]:
    """The tiny base model, and a copy whose weights are NaN (a broken base: its run fails in training)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from support.multilingual import build_multilingual_digits_model

    base = build_multilingual_digits_model(home / "models" / "base")
    broken = home / "models" / "broken"
    shutil.copytree(base, broken)
    model = AutoModelForSeq2SeqLM.from_pretrained(broken)
    with torch.no_grad():
        model.model.shared.weight.fill_(float("nan"))
    model.save_pretrained(broken)
    return str(base), str(broken)


class Source:
    """The data team: lands, rewrites and deletes objects under DATA/en-<lang>/, and remembers what is broken."""

    def __init__(self, scratch: Path, root: str = DATA):
        from tasks.io import storage

        self.storage, self.scratch, self.root, self.broken, self.retracted = storage, scratch, root, set(), set()

    def uri(self, lang: str, key: str) -> str:
        return f"{self.root}/en-{lang}/{key}"

    def land(self, lang: str, key: str, pairs) -> str:
        from support.corpora import write_jsonl

        path = write_jsonl(self.scratch / f"{lang}-{key.replace('/', '_')}", pairs, "en", lang)
        self.storage.upload_file(path, self.uri(lang, key))
        return self.uri(lang, key)

    def land_bytes(self, lang: str, key: str, data: bytes) -> str:
        self.storage.write_bytes(self.uri(lang, key), data)
        return self.uri(lang, key)

    def delete(self, uri: str) -> None:
        self.storage.delete(uri)

    def objects(self, lang: str) -> dict[str, str]:
        """uri → ETag of every object at the source for `lang`."""
        return {o.uri: o.etag for o in self.storage.list_objects(f"{self.root}/en-{lang}/")}


def week_data(source: Source, week: int, fault: str, cycle: int) -> dict:
    """Land the week's data for its fault; returns what the week's runs need to know (extra conf, snapshot,
    the object to retract)."""
    from support.multilingual import digit_pairs_to, unrelated_pairs

    plan: dict = {"conf": {}}
    if fault == "empty week":
        return plan
    for lang in LANGS:
        pairs = digit_pairs_to(lang, ROWS, seed=week * 7 + LANGS.index(lang))
        if fault == "one language refused" and lang == "nl":  # targets shuffled across sources: unlearnable
            pairs = unrelated_pairs(lang, ROWS * 8, seed=week)
            plan["retract_next"] = source.land(lang, f"w{week:02d}/part.jsonl", pairs)
            continue
        source.land(lang, f"w{week:02d}/part.jsonl", pairs)
    first = f"w{week - 1 - FAULTS.index(fault) + 1:02d}/part.jsonl"  # the cycle's first week's object
    if fault == "duplicate object":
        copied = source.storage.read_bytes(source.uri("de", first))
        source.land_bytes("de", f"w{week:02d}/copy-of-first.jsonl", copied)
    elif fault == "broken file":
        plan["broken"] = source.land_bytes("de", f"w{week:02d}/broken.jsonl", b"\x00\x01PK\x03\x04" * 64)
        source.broken.add(plan["broken"])
    elif fault == "broken file removed":
        for uri in sorted(source.broken):
            source.delete(uri)
        source.broken.clear()
    elif fault == "rewritten object":
        source.land("de", first, digit_pairs_to("de", ROWS, seed=10_000 + week))
    elif fault == "deleted object":
        source.delete(source.uri("nl", first))
    elif fault == "failed run":
        plan["fails"] = True
    elif fault == "snapshot run":
        plan["snapshot"] = [source.uri("de", first), source.uri("nl", first)]
    return plan


def recipe(base: str, cycle: int) -> dict:
    from support.multilingual import TINY_RECIPE

    # Filters tightened mid-year (the calendar's "filter tightened" week sets the cycle's limit from then on).
    return {**TINY_RECIPE, "data_uri": DATA + "/", "target_langs": list(LANGS), "base_model": base,
            "hub_repo_id": "soak/digits", "min_clean_pairs": 200,
            "test_fraction": 0.15, "min_test_pairs": 40, "min_test_sentences": 40, "min_bleu_gain": 5.0}


def run(dag, conf: dict) -> dict:
    """One DAG run; returns its state and each language's task states and run directory."""
    from tasks.io import storage

    dag_run = dag.test(run_conf=conf)
    tis = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    run_dir = storage.join(os.environ["MT_ARTIFACT_ROOT"], dag.dag_id, storage.safe_name(dag_run.run_id))
    languages = {}
    for index, lang in enumerate(LANGS):
        directory = storage.join(run_dir, "pairs", f"en-{lang}")
        gate = storage.read_json_or(storage.join(directory, "gate.json")) or {}
        languages[lang] = {"dir": directory, "validated": tis.get(("language.validate", index)) == "success",
                           "gate": gate.get("decision") or tis.get(("language.gate", index)),
                           "committed": tis.get(("mark_consumed", index)) == "success"}
    return {"run_id": dag_run.run_id, "state": dag_run.state, "languages": languages,
            "published": [lang for index, lang in enumerate(LANGS) if tis.get(("publish", index)) == "success"]}


class Checks:
    """The invariants, checked after each week from what the runs left on S3."""

    def __init__(self, source: Source):
        from tasks.io import storage

        self.source, self.storage = source, storage
        self.failures: list[str] = []
        self.test_sets: dict[str, str] = {}
        self.consumed_by: dict[tuple[str, str], str] = {}  # (uri, etag) → the run that consumed that version

    def fail(self, week: int, message: str) -> None:
        self.failures.append(f"week {week}: {message}")

    def week(self, week: int, runs: list[dict]) -> None:
        for outcome in runs:
            for lang, found in outcome["languages"].items():
                if found["validated"]:
                    self.accounting(week, lang, found["dir"])
        for lang in LANGS:
            state_dir = self.state_dir(runs, lang)
            if state_dir is None:
                continue
            self.test_set(week, lang, state_dir)
            committed = [o["languages"][lang] for o in runs if o["languages"][lang]["committed"]]
            self.consumption(week, lang, state_dir, committed)

    def state_dir(self, runs: list[dict], lang: str) -> str | None:
        from tasks import config

        for outcome in runs:
            directory = outcome["languages"][lang]["dir"]
            if self.storage.exists(self.storage.join(directory, "config.json")):
                return config.load(directory).state_dir
        return None

    def accounting(self, week: int, lang: str, directory: str) -> None:
        from tasks import layout

        report = self.storage.read_json_or(self.storage.join(directory, layout.VALIDATION_REPORT))
        if report is None:
            return
        manifest = self.storage.read_json(self.storage.join(directory, layout.PULL_MANIFEST))
        lines = {name: sum(1 for line in self.storage.read_text(self.storage.join(directory, name)).splitlines()
                           if line.strip()) for name in (layout.CLEAN, layout.REJECTS)}
        rescreened = sum(c["rows"] for c in report.get("rescreened", {}).values())
        expected = report["rows_in"] + report["carried_rows"] + rescreened
        if lines[layout.CLEAN] + lines[layout.REJECTS] != expected:
            self.fail(week, f"en-{lang}: clean {lines[layout.CLEAN]} + rejects {lines[layout.REJECTS]} rows "
                            f"!= {expected} rows read (new, carried, screened again)")
        for obj in manifest["objects"]:
            counts = report["files"].get(obj["key"])
            if obj["key"] in report["unreadable_files"]:
                continue
            raw = self.storage.read_text(self.storage.join(directory, layout.RAW, obj["local"]))
            if counts is None or counts["rows"] != sum(1 for line in raw.splitlines() if line.strip()):
                self.fail(week, f"en-{lang}: {obj['key']}: rows counted {counts and counts['rows']} != its lines")

    def test_set(self, week: int, lang: str, state_dir: str) -> None:
        from tasks import layout

        uri = self.storage.join(state_dir, layout.TEST_SET)
        if not self.storage.exists(uri):
            return
        digest = hashlib.sha256(self.storage.read_bytes(uri)).hexdigest()
        if self.test_sets.setdefault(lang, digest) != digest:
            self.fail(week, f"en-{lang}: the frozen test set changed")

    def consumption(self, week: int, lang: str, state_dir: str, committed: list[dict]) -> None:
        from tasks import layout
        from tasks.data import shards

        uri = self.storage.join(state_dir, layout.CONSUMED)
        state = self.storage.read_json_or(uri) or {"objects": {}}
        objects = state["objects"]
        for obj_uri, entry in objects.items():
            first = self.consumed_by.setdefault((obj_uri, entry["etag"]), entry["consumed_by"])
            if first != entry["consumed_by"]:
                self.fail(week, f"en-{lang}: {obj_uri} at ETag {entry['etag']} consumed twice ({first}, then "
                                f"{entry['consumed_by']})")
        if committed:
            at_source = self.source.objects(lang)
            for obj_uri, etag in at_source.items():
                if obj_uri in self.source.broken or obj_uri in self.source.retracted:
                    continue
                if objects.get(obj_uri, {}).get("etag") != etag:
                    self.fail(week, f"en-{lang}: {obj_uri} is at the source but not consumed after a commit")
        if committed and committed[-1]["gate"] == "promote":
            # A promoted commit applies its copies, re-screened by its rules; a refused one keeps the pipeline's and
            # adds only what was new to it, cleaned by its own rules (tasks/data/consumed.py).
            rules = self.storage.read_json(self.storage.join(committed[-1]["dir"], layout.VALIDATION_REPORT))
            stale = [u for u, e in objects.items() if e.get("rules") != rules["rules"]["fingerprint"]]
            if stale:
                self.fail(week, f"en-{lang}: {len(stale)} carried copies cleaned by older rules, e.g. {stale[0]}")
        size = len(self.storage.read_bytes(uri)) if self.storage.exists(uri) else 0
        kept = len(objects) + len(state.get("dropped", {}))
        if size > MAX_STATE_BYTES_PER_OBJECT * max(kept, 1) + 2000:
            self.fail(week, f"en-{lang}: consumed.json is {size} bytes for {kept} objects")
        in_use = {e["cache"] for e in objects.values() if e.get("cache")}
        if len(in_use) > shards.MAX_SHARDS + 1:
            self.fail(week, f"en-{lang}: the corpus spans {len(in_use)} shards (at most {shards.MAX_SHARDS + 1})")


def main_dag():
    """translation_finetune, parsed afresh for each run as the scheduler would (dag.test() leaves a run's conf in
    the DAG object's params)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags")).dags["translation_finetune"]


def soak(weeks: int, home: Path) -> dict:
    from devtools.local_hub import LocalHub

    base, broken = models(home)
    source = Source(home / "landed")
    checks = Checks(source)
    log, runs_total, started = [], 0, time.perf_counter()
    with LocalHub(home / "hub", tokens={"hf_soak": "write"}) as hub:
        os.environ["AIRFLOW_CONN_HUGGINGFACE_DEFAULT"] = json.dumps(
            {"conn_type": "generic", "password": "hf_soak", "extra": {"endpoint": hub.url}})
        retract_next, tightened = None, {}
        for week in range(1, weeks + 1):
            cycle, fault = divmod(week - 1, len(FAULTS))
            fault = FAULTS[fault]
            plan = week_data(source, week, fault, cycle)
            if fault == "filter tightened":
                tightened = {"max_chars": 38 - cycle}  # digit pairs run to 42 characters: some rows go
            conf = {**recipe(base, cycle), **tightened, **({"max_steps": FIRST_WEEK_STEPS} if week == 1 else {})}
            runs = []
            if plan.get("snapshot"):
                runs.append(run(main_dag(), {**conf, "data_snapshot": plan["snapshot"]}))
            if fault == "retraction" and retract_next:
                conf["retract_data"] = [retract_next]
                source.retracted.add(retract_next)
                retract_next = None
            weekly = {**conf, **({"base_model": broken} if plan.get("fails") else {})}
            runs.append(run(main_dag(), weekly))
            retract_next = plan.get("retract_next", retract_next)
            checks.week(week, runs)
            runs_total += len(runs)
            log.append({"week": week, "fault": fault, "state": runs[-1]["state"],
                        "gates": {lang: runs[-1]["languages"][lang]["gate"] for lang in LANGS},
                        "published": runs[-1]["published"], "failures": len(checks.failures)})
            print(json.dumps(log[-1]), file=sys.stderr, flush=True)
    split = sum(1 for w in log if sorted(w["gates"].values()) == ["promote", "refuse"])
    return {"weeks": weeks, "runs": runs_total, "invariant_failures": len(checks.failures),
            "failures": checks.failures[:20], "split_decisions": split,
            "published": sum(len(w["published"]) for w in log), "seconds": round(time.perf_counter() - started, 1),
            "log": log}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--tiny", action="store_true", help="three weeks: a smoke test")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from history_scale import moto_server

    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp, moto_server():
        home = Path(tmp)
        environment(home)
        from tasks.io import storage

        for bucket in ("soak-data", "soak-artifacts"):
            storage.s3_client().create_bucket(Bucket=bucket)
        result = soak(3 if args.tiny else args.weeks, home)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
