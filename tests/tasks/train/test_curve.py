"""Learning curves: nested subsets of the train split, one trained and scored point each, then a table and
a plot of BLEU against data size."""

from pathlib import Path

import pytest

from support.corpora import digit_pairs
from support.runs import make_run, write_splits
from tasks import config, cost, layout
from tasks.io import storage
from tasks.io.pairs import read_pairs
from tasks.train import curve
from tasks.train import step as train

PAIRS = [(f"sentence {i}", f"Satz {i}") for i in range(400)]


@pytest.mark.parametrize("pairs, fraction, kept", [
    (400, 0.25, 100),
    (400, 1.0, 400),
    (10, 0.01, 1),  # never empty
    (7, 0.5, 4),  # 3.5: rounded half to even
    (3, 0.34, 1),
])
def test_subset_size(pairs, fraction, kept):
    assert len(curve.nested_subset(PAIRS[:pairs], fraction, seed=1)) == kept


def test_subsets_are_nested_and_reproducible():
    shares = [0.1, 0.25, 0.5, 1.0]
    subsets = [set(curve.nested_subset(PAIRS, f, seed=3)) for f in shares]
    assert all(smaller < larger for smaller, larger in zip(subsets, subsets[1:]))
    assert curve.nested_subset(PAIRS, 0.25, seed=3) == curve.nested_subset(PAIRS, 0.25, seed=3)
    assert set(curve.nested_subset(PAIRS, 0.25, seed=4)) != subsets[1]


def test_a_learning_curve_fans_out_into_points_then_a_table_and_a_plot(tmp_path, tiny_model):
    cfg = make_run(tmp_path / "artifacts", base_model=str(tiny_model), learning_curve_fractions=[0.5, 0.25, 0.5],
                   max_steps=2, eval_every_steps=2, early_stopping_patience=0, max_tokens_per_batch=512,
                   max_source_length=32, max_target_length=12, num_beams=1)
    assert cfg.learning_curve_fractions == [0.25, 0.5]
    pairs = digit_pairs(440, seed=8)
    write_splits(cfg, tmp_path, train=pairs[:400], validation=pairs[400:420], test=pairs[420:])

    point_dirs = curve.plan(cfg)
    assert point_dirs == [cfg.uri("curve", "f0.25"), cfg.uri("curve", "f0.5")]
    assert curve.plan(cfg) == point_dirs  # a retried plan finds the same points
    points = [curve.run(config.load(d)) for d in point_dirs]
    assert [(p["fraction"], p["domain_train_pairs"], p["test_sentences"]) for p in points] == \
        [(0.25, 100, 20), (0.5, 200, 20)]
    subsets = [set(zip(*read_pairs(Path(config.load(d).uri(layout.split_file("train"))), "en", "de")))
               for d in point_dirs]
    assert subsets[0] < subsets[1] < set(pairs[:400])
    assert curve.run(config.load(point_dirs[0])) == points[0]  # a retried point does not train again

    # The end points come from the run's own evaluation and training, when they have finished.
    storage.write_json(cfg.uri(layout.SCORES),
                       {"base": {"bleu": 1.5, "chrf": 12.0}, "candidate": {"bleu": 48.25, "chrf": 70.0}})
    storage.write_json(cfg.uri(layout.TRAIN_REPORT), {"domain_train_pairs": 400, "train_pairs": 400, "steps": 90,
                                                      "seconds_total": 192.0, "device": "cuda:0", "world_size": 1})
    summary = curve.summarize(cfg)
    rows = storage.read_json(cfg.uri(layout.CURVE_JSON))["points"]
    assert [(r["model"], r["domain_train_pairs"]) for r in rows] == \
        [("base", 0), ("curve point", 100), ("curve point", 200), ("candidate", 400)]
    table = storage.read_text(cfg.uri(layout.CURVE_MD))
    assert "| 0% | 0 | 1.50 | 12.00 | base | – |" in table
    assert "| 100% | 400 | 48.25 | 70.00 | candidate | 3m12s on 1 × cuda |" in table
    # Each point's training, as its own train report has it: what the curve cost beside the candidate.
    for point, point_dir in zip(points, point_dirs):
        trained = train.result(config.load(point_dir))
        assert point["training"] == f"{cost.duration(trained['seconds_total'])} on 1 × cpu"
        assert point["train_seconds"] == trained["seconds_total"]  # every attempt's, as the training column's
        assert f"| {point['bleu']:.2f} | {point['chrf']:.2f} | curve point | {point['training']} |" in table
    assert f"| 25% | 100 | {points[0]['bleu']:.2f} |" in table
    assert storage.read_bytes(cfg.uri(layout.CURVE_PNG)).startswith(b"\x89PNG")
    assert summary["points"] == 4


def test_no_fractions_no_curve(tmp_path):
    cfg = make_run(tmp_path / "artifacts")
    assert curve.plan(cfg) == [] and curve.summarize(cfg) == {"points": 0}
    assert not storage.exists(cfg.uri(layout.CURVE_JSON))


@pytest.mark.parametrize("fractions, error", [
    ([0.0], "greater than 0"),
    ([1.5], "less than or equal to 1"),
])
def test_fractions_must_be_shares(tmp_path, fractions, error):
    with pytest.raises(config.ConfigError, match=error):
        make_run(tmp_path, learning_curve_fractions=fractions)
