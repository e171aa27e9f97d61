"""A retraction is for good, also in the pipeline's state: no run commits a retracted object back into the
corpus (not even one that pulled it before the retraction and is re-run after it), and the retracted rows leave
the state's files once the grace period for readers has passed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from support.corpora import digit_pairs, write_jsonl
from support.runs import make_run
from tasks import layout
from tasks.data import consumed, pull, shards, split, validate
from tasks.io import storage

WEEK_1 = digit_pairs(400, seed=1)
PERSONAL = [p for p in digit_pairs(300, seed=2) if p not in WEEK_1]
LATER = [p for p in digit_pairs(100, seed=3) if p not in WEEK_1 + PERSONAL]


def _run(root, incoming, run_id, *steps, **params):
    cfg = make_run(root, run_id=run_id, data_uri=str(incoming), min_clean_pairs=50, min_test_pairs=10, **params)
    for step in steps:
        step(cfg)
    return cfg


def _state_rows(cfg) -> set[str]:
    """The source side of every row the cleaned copies' files of the pipeline's state hold."""
    found = set()
    for path in (Path(cfg.state_dir) / shards.SHARDS).rglob("*.jsonl"):
        found |= {json.loads(line)["translation"]["en"] for line in path.read_text().splitlines()}
    return found


def test_a_run_re_run_after_a_retraction_does_not_consume_what_it_pulled_before_it(tmp_path):
    """Before, week 2 (it pulled personal.jsonl, then failed to publish) was cleared and re-run after the data team
    retracted the file: its commit put the object back into consumed.json, and every later run trained on it."""
    incoming, runs = tmp_path / "incoming", tmp_path / "runs"
    write_jsonl(incoming / "week1.jsonl", WEEK_1)
    _run(runs, incoming, "week-1", pull.run, validate.run, split.run, consumed.commit)
    write_jsonl(incoming / "personal.jsonl", PERSONAL)
    stalled = _run(runs, incoming, "week-2", pull.run, validate.run, split.run)  # publish fails: not committed
    uri = str(incoming / "personal.jsonl")
    _run(runs, incoming, "retract", pull.run, retract_data=[uri])

    done = consumed.commit(stalled)  # week 2's publish and mark_consumed, cleared and run again
    assert done["committed"] == 0 and done["retracted"] == [uri]
    assert uri not in consumed.load(stalled)
    write_jsonl(incoming / "week4.jsonl", LATER)
    week_4 = _run(runs, incoming, "week-4", pull.run)
    manifest = storage.read_json(week_4.uri(layout.PULL_MANIFEST))
    assert [c["key"] for c in manifest["carried"]] == ["week1.jsonl"]
    assert [o["key"] for o in manifest["objects"]] == ["week4.jsonl"]
    # The rows week 2 adopted into the state leave it too, after the grace period.
    later = datetime.now(timezone.utc) + timedelta(days=shards.RETIRED_DAYS + 1)
    assert shards.run_shard(stalled) in shards.collect(stalled, now=later)
    assert not _state_rows(stalled) & {s for s, _ in PERSONAL}


def test_retracted_rows_leave_the_files_of_the_state_and_the_others_stay_intact(tmp_path):
    """Before, a retracted object's cleaned copy stayed in its shard for good (a shard no entry uses any more was
    never merged, retired nor deleted), although its rows were the very thing to forget."""
    incoming, runs = tmp_path / "incoming", tmp_path / "runs"
    write_jsonl(incoming / "week1.jsonl", WEEK_1)
    write_jsonl(incoming / "personal.jsonl", PERSONAL)  # one commit: both copies in one shard
    first = _run(runs, incoming, "week-1", pull.run, validate.run, split.run, consumed.commit)
    kept = {u: consumed.copy_rows(first, e) for u, e in consumed.load(first).items() if u.endswith("week1.jsonl")}
    uri = str(incoming / "personal.jsonl")
    personal = {json.loads(row)["translation"]["en"] for row in consumed.copy_rows(first, consumed.load(first)[uri])}
    assert personal and personal <= _state_rows(first)

    # The retraction run has nothing new: it retrains on what is left, and its commit rewrites the shard.
    _run(runs, incoming, "retract", pull.run, validate.run, split.run, consumed.commit, retract_data=[uri])
    assert {u: consumed.copy_rows(first, e) for u, e in consumed.load(first).items()} == kept
    state = storage.read_json(first.state_uri(layout.CONSUMED))
    assert shards.run_shard(first) in state["retired"] and not state.get(shards.ERASE)
    assert shards.collect(first) == []  # a run that pulled before may still read it for a while
    later = datetime.now(timezone.utc) + timedelta(days=shards.RETIRED_DAYS + 1)
    assert shards.run_shard(first) in shards.collect(first, now=later)
    assert not _state_rows(first) & personal
    assert {u: consumed.copy_rows(first, e) for u, e in consumed.load(first).items()} == kept


def test_rows_of_a_retraction_recorded_before_the_upgrade_leave_the_state_at_the_next_commit(tmp_path):
    """A retraction recorded by the version before `erase` (consumed.json without it): its rows stayed in a file
    no entry used, never merged, retired nor deleted, though the README says they leave at the next commit."""
    incoming, runs = tmp_path / "incoming", tmp_path / "runs"
    write_jsonl(incoming / "week1.jsonl", WEEK_1)
    write_jsonl(incoming / "personal.jsonl", PERSONAL)
    first = _run(runs, incoming, "week-1", pull.run, validate.run, split.run, consumed.commit)
    uri = str(incoming / "personal.jsonl")
    _run(runs, incoming, "retract", pull.run, retract_data=[uri])
    state = storage.read_json(first.state_uri(layout.CONSUMED))
    del state[shards.ERASE]  # as the older version's retraction left it
    storage.write_json(first.state_uri(layout.CONSUMED), state)

    write_jsonl(incoming / "week3.jsonl", LATER)
    _run(runs, incoming, "week-3", pull.run, validate.run, split.run, consumed.commit)
    later = datetime.now(timezone.utc) + timedelta(days=shards.RETIRED_DAYS + 1)
    assert shards.run_shard(first) in shards.collect(first, now=later)
    assert not _state_rows(first) & {s for s, _ in PERSONAL}
    assert set(consumed.load(first)) == {str(incoming / f"week{n}.jsonl") for n in (1, 3)}
    # Once merged away, a later commit does not merge for it again.
    assert shards.ERASED in storage.read_json(first.state_uri(layout.CONSUMED))["dropped"][uri]
    assert "merged" not in shards.compact(first)
