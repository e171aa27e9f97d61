"""A refused run consumes what was new (mark_consumed commits it: tasks/publish/release.py), but it never replaces
the copies of what the pipeline had consumed already: a refused experiment with stricter filters must not shrink
the corpus every later run trains on."""

from __future__ import annotations

from support.corpora import digit_pairs, write_jsonl
from support.runs import make_run
from tasks import layout
from tasks.data import consumed, pull, shards, split, validate
from tasks.io import storage
from tasks.publish import release

WEEK_1 = digit_pairs(400, seed=1)
WEEK_2 = [p for p in digit_pairs(300, seed=2) if p not in WEEK_1]


def _run(root, incoming, run_id, *steps, **params):
    cfg = make_run(root, run_id=run_id, data_uri=str(incoming), min_clean_pairs=50, min_test_pairs=10, **params)
    for step in steps:
        step(cfg)
    return cfg


def _refused(cfg) -> None:
    storage.write_json(cfg.uri(layout.GATE), {"promote": False, "decision": "refused", "reasons": ["no gain"]})
    assert release.not_consumable(cfg) is None  # a refusal consumes: mark_consumed commits


def test_a_refused_experiment_with_stricter_filters_leaves_the_consumed_copies_as_they_were(tmp_path):
    """Before, the refused run's copies (max_chars 30) replaced week 1's: the next run with the usual rules screened
    that stricter copy again, which cannot bring back a dropped row, and trained on a third less of week 1."""
    incoming, runs = tmp_path / "incoming", tmp_path / "runs"
    write_jsonl(incoming / "week1.jsonl", WEEK_1)
    first = _run(runs, incoming, "week-1", pull.run, validate.run, split.run, consumed.commit)
    ((uri, entry),) = consumed.load(first).items()
    rows = consumed.copy_rows(first, entry)
    write_jsonl(incoming / "week2.jsonl", WEEK_2)
    experiment = _run(runs, incoming, "experiment", pull.run, validate.run, split.run, _refused,
                      force_full_retrain=True, max_chars=30)
    assert consumed.run_copy_rows(experiment, "week1.jsonl") != rows  # its own copy is stricter

    done = consumed.commit(experiment)
    assert done["held"] == [uri] and done["committed"] == 1  # week 2 was new: consumed
    now = consumed.load(experiment)
    assert {k: now[uri][k] for k in ("etag", "rules", "consumed_by")} == \
        {k: entry[k] for k in ("etag", "rules", "consumed_by")}
    assert consumed.copy_rows(first, now[uri]) == rows
    assert now[str(incoming / "week2.jsonl")]["consumed_by"] == "experiment"
    write_jsonl(incoming / "week3.jsonl", [p for p in digit_pairs(100, seed=3) if p not in WEEK_1 + WEEK_2])
    week_3 = _run(runs, incoming, "week-3", pull.run, validate.run)
    report = storage.read_json(week_3.uri(layout.VALIDATION_REPORT))
    assert report["carried"]["week1.jsonl"]["rows"] == len(rows)


def test_a_refused_run_keeps_the_copy_it_made_of_an_object_whose_copy_was_lost(tmp_path):
    incoming, runs = tmp_path / "incoming", tmp_path / "runs"
    write_jsonl(incoming / "week1.jsonl", WEEK_1)
    first = _run(runs, incoming, "week-1", pull.run, validate.run, split.run, consumed.commit)
    ((uri, entry),) = consumed.load(first).items()
    storage.delete(first.state_uri(entry["cache"]))  # lost with a bucket; the source is still there
    write_jsonl(incoming / "week2.jsonl", WEEK_2)
    refused = _run(runs, incoming, "week-2", pull.run, validate.run, split.run, _refused)
    assert storage.read_json(refused.uri(layout.PULL_MANIFEST))["recopied"] == ["week1.jsonl"]
    assert consumed.commit(refused)["held"] == []
    again = consumed.load(refused)[uri]
    assert again["cache"] == shards.run_shard(refused) and consumed.copy_rows(refused, again)
