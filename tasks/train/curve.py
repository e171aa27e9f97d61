"""Learning curve: how BLEU grows with the amount of domain data, to tell whether more data would pay off.

With `learning_curve_fractions` (e.g. [0.1, 0.25, 0.5]) the DAG trains one extra model per share of the
training split, each as a mapped task, and evaluates it on the run's test split:

1. `plan` (in the Airflow worker, small files only) gives each point a run directory of its own,
   `{run_dir}/curve/f0.25/`, holding a copy of the run's config and `curve_point.json` (its share);
2. `run` (`python -m tasks curve --run-dir {run_dir}/curve/f0.25`, through the same launcher as `train`)
   writes the point's splits (a subset of the train split, the run's validation and test splits), trains
   with the run's exact recipe (replay, adaptation, checkpoints and resume all included) and scores the
   model with evaluate's decoding settings;
3. `summarize` writes `learning_curve.json`, `learning_curve.md` and `learning_curve.png` to the run
   directory, with the base model (no domain data) and the run's candidate (all of it) as end points.

Subsets are nested: pairs are ordered once by a seeded hash of their normalized source and each share
takes a prefix, so the 10% subset lies inside the 25% one, and a point differs from the next only by more
data. The candidate's own training is not touched.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
from pathlib import Path

from tasks import config as run_config
from tasks import cost, hub_models, layout
from tasks.config import RunConfig
from tasks.data import replay
from tasks.evaluate import decoding, engines, scoring
from tasks.io import storage
from tasks.io.pairs import read_pairs, write_pairs
from tasks.train import step as train

log = logging.getLogger(__name__)

def nested_subset(pairs: list[tuple[str, str]], fraction: float, seed: int) -> list[tuple[str, str]]:
    """round(len × fraction) pairs (at least one); a smaller fraction always gives a subset of a larger one."""
    def key(pair: tuple[str, str]) -> bytes:
        return hashlib.blake2b(f"curve\0{seed}\0{replay.source_key(pair[0])}".encode(), digest_size=8).digest()

    ordered = sorted(range(len(pairs)), key=lambda i: key(pairs[i]))
    keep = set(ordered[:max(1, round(len(pairs) * fraction))])
    return [pair for i, pair in enumerate(pairs) if i in keep]


def point_dir(config: RunConfig, fraction: float) -> str:
    return config.uri(layout.CURVE, f"f{fraction:g}")


def plan(config: RunConfig) -> list[str]:
    """Create a run directory for each learning-curve point and return their URIs (none: no curve, or a pair
    that never reached its split because nothing new was pulled)."""
    if not config.learning_curve_fractions or not storage.exists(config.uri(layout.split_file("train"))):
        return []
    dirs = []
    for fraction in config.learning_curve_fractions:
        # A point starts from the base model: it measures what data buys, not what the champion knew.
        point = RunConfig(**{**config.model_dump(), "run_dir": point_dir(config, fraction),
                             "learning_curve_fractions": [], "init_from": "base"})
        run_config.save(point)
        hub_models.carry_over(config, point)  # the point starts from the commit of the base its run trained from
        if not storage.exists(point.uri(layout.CURVE_POINT_SPEC)):
            storage.write_json(point.uri(layout.CURVE_POINT_SPEC), {"fraction": fraction, "run_dir": config.run_dir})
        dirs.append(point.run_dir)
    if dirs:
        log.info("learning curve: %d points: %s", len(dirs), ", ".join(f"{f:g}" for f in
                                                                      config.learning_curve_fractions))
    return dirs


def result(config: RunConfig) -> dict | None:
    """A point's stored result, or None when it has not finished."""
    return storage.read_json_or(config.uri(layout.CURVE_POINT_RESULT))


def _write_point_splits(point: RunConfig, parent: RunConfig, fraction: float, scratch: Path) -> None:
    for name in ("validation", "test", "train"):  # train last: its presence means the splits are complete
        local = storage.download(parent.uri(layout.split_file(name)), scratch / f"{name}.jsonl")
        if name == "train":
            pairs = list(zip(*read_pairs(local, parent.source_lang, parent.target_lang)))
            subset = nested_subset(pairs, fraction, parent.seed)
            log.info("learning-curve point %g: %d of %d training pairs", fraction, len(subset), len(pairs))
            local = write_pairs(scratch / "train-subset.jsonl", subset, parent.source_lang, parent.target_lang)
        storage.upload_file(local, point.uri(layout.split_file(name)))


def score_model(model_dir: str, sources: list[str], references: list[str], config: RunConfig) -> dict:
    """BLEU, chrF and TER with the evaluate step's decoding settings, so points compare with the run's scores."""
    with tempfile.TemporaryDirectory() as scratch:
        decoder = engines.open_decoder(model_dir, decoding.DecodeSettings.from_config(config), config.source_lang,
                                        config.target_lang, work_dir=Path(scratch), probe=(sources, references))
        hypotheses = decoder.translate(sources)
    return scoring.corpus_scores(hypotheses, references, config.target_lang)


def run(config: RunConfig) -> dict:
    """Train and score one learning-curve point; `config` is the point's own (see `plan`)."""
    if (done := result(config)) is not None:
        log.info("learning-curve point already done: %s", config.run_dir)
        return done
    spec = storage.read_json_or(config.uri(layout.CURVE_POINT_SPEC))
    if spec is None:
        raise FileNotFoundError(f"{config.run_dir} is not a learning-curve point: no {layout.CURVE_POINT_SPEC} "
                                "(see curve.plan)")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if not storage.exists(config.uri(layout.split_file("train"))):
            _write_point_splits(config, run_config.load(spec["run_dir"]), spec["fraction"], scratch)
        trained = train.run(config)
        test = storage.download(config.uri(layout.split_file("test")), scratch / "test.jsonl")
        sources, references = read_pairs(test, config.source_lang, config.target_lang)
        model_dir = str(storage.local_dir_for(config.uri(layout.MODEL), scratch / "model"))
        scores = score_model(model_dir, sources, references, config)
    point = {"fraction": spec["fraction"], "domain_train_pairs": trained["domain_train_pairs"],
             "train_pairs": trained["train_pairs"], "test_sentences": len(sources), **scores,
             "steps": trained["steps"], "best_validation_loss": trained["best_validation_loss"],
             "train_seconds": trained["seconds_total"], "training": cost.training_time(trained)}
    log.info("learning-curve point %g: %d domain pairs → BLEU %.2f, chrF %.2f", point["fraction"],
             point["domain_train_pairs"], point["bleu"], point["chrf"])
    storage.write_json(config.uri(layout.CURVE_POINT_RESULT), point)
    return point


def _end_points(config: RunConfig) -> list[dict]:
    """The base model (no domain data) and the candidate (all of it), when the run has scored them."""
    scores, trained = storage.read_json_or(config.uri(layout.SCORES)), train.result(config)
    if not scores:
        return []
    rows = [{"fraction": 0.0, "domain_train_pairs": 0, "model": "base", **_metrics(scores.get("base"))}]
    if trained and scores.get("candidate"):
        pairs = trained.get("domain_train_pairs", trained.get("train_pairs"))
        rows.append({"fraction": 1.0, "domain_train_pairs": pairs, "model": "candidate",
                     **_metrics(scores["candidate"]), "training": _training(config.run_dir, "train")})
    return rows


def _training(run_dir: str, step: str) -> str | None:
    """What a point's (or the candidate's) training cost: its step from launch to end over every try, where the
    launcher recorded them (a point's launch scores its model too), or the training loop's time."""
    trained = storage.read_json_or(storage.join(run_dir, layout.TRAIN_REPORT)) or {}
    return cost.training_time(trained, cost.tries(storage.read_record(storage.join(run_dir, layout.LAUNCHES)), step))


def _metrics(scored: dict | None) -> dict:
    return {"bleu": (scored or {}).get("bleu"), "chrf": (scored or {}).get("chrf")}


def summarize(config: RunConfig) -> dict:
    """Write learning_curve.json, .md and .png to the run directory from the finished points."""
    if not config.learning_curve_fractions or not storage.exists(config.uri(layout.split_file("train"))):
        return {"points": 0}
    rows = []
    for fraction in config.learning_curve_fractions:
        point = storage.join(point_dir(config, fraction), layout.CURVE_POINT_RESULT)
        if not storage.exists(point):
            raise FileNotFoundError(f"learning-curve point {fraction:g} has no result: {point}")
        rows.append({**storage.read_json(point), "model": "curve point",
                     "training": _training(point_dir(config, fraction), "curve")})
    rows = sorted(rows + _end_points(config), key=lambda r: (r["domain_train_pairs"], r["model"] != "curve point"))
    storage.write_json(config.uri(layout.CURVE_JSON), {"test_split": config.uri(layout.split_file("test")),
                                                      "points": rows})
    storage.write_text(config.uri(layout.CURVE_MD), table(rows))
    storage.write_bytes(config.uri(layout.CURVE_PNG), plot(rows))
    log.info("learning curve:\n%s", table(rows))
    return {"points": len(rows), "table": config.uri(layout.CURVE_MD), "plot": config.uri(layout.CURVE_PNG),
            "bleu_by_domain_pairs": [[r["domain_train_pairs"], r["bleu"]] for r in rows]}


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def table(rows: list[dict]) -> str:
    lines = ["| share of train split | domain pairs | BLEU | chrF | model | training |", "|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['fraction']:.0%} | {r['domain_train_pairs']} | {_number(r['bleu'])} | "
                     f"{_number(r['chrf'])} | {r['model']} | {r.get('training') or '–'} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict]) -> bytes:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend in a worker

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    for metric, label in (("bleu", "BLEU"), ("chrf", "chrF")):
        points = [(r["domain_train_pairs"], r[metric]) for r in rows if r[metric] is not None]
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=label)
    axes.set_xlabel("domain training pairs")
    axes.set_ylabel("score on the test split")
    axes.set_title("Learning curve")
    axes.grid(alpha=0.3)
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()
