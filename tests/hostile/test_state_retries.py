"""A task killed mid-way and retried, and state that outlives the runs that stopped using it: the pipeline's consumed
state (consumed.json and its shards) ends as one clean run leaves it, a file no entry names any more is deleted
after the grace period instead of staying in the state for good, and a retraction reaches every copy's rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from support.corpora import digit_pairs, write_jsonl
from support.runs import make_run
from tasks import layout
from tasks.data import consumed, pull, shards, validate
from tasks.io import storage


class Killed(BaseException):
    """The worker died here: nothing after this point ran, no cleanup either."""


def _week(root: Path, number: int, **params):
    """Week `number` lands two objects and runs pull and validate; returns the run's config, not yet committed."""
    for part in ("a", "b"):
        pairs = digit_pairs(12, seed=number * 10 + ord(part))
        write_jsonl(root / "incoming" / f"week{number}" / f"{part}.jsonl", pairs)
    cfg = make_run(root / "runs", run_id=f"week-{number}", data_uri=str(root / "incoming"), min_clean_pairs=1,
                   max_reject_rate=1.0, **params)
    pull.run(cfg)
    validate.run(cfg)
    return cfg


def _every_copy_is_the_one_validated(cfg, runs) -> None:
    for uri, entry in consumed.load(cfg).items():
        key = uri[len(cfg.data_uri.rstrip("/")) + 1:]
        assert consumed.copy_rows(cfg, entry) == consumed.run_copy_rows(runs[entry["consumed_by"]], key), uri


def _shard_files(cfg) -> set[str]:
    return {f"{shards.SHARDS}/{o.relpath}" for o in storage.list_objects(cfg.state_uri(shards.SHARDS))}


def test_copies_replaced_by_a_commit_leave_the_state_after_the_grace_period(tmp_path):
    """A tightened rule screens every carried copy again into the committing run's shard, and a rewritten object's
    new version replaces its old copy: the files that held the old copies are named by no entry any more. They are
    retired like merged shards and deleted RETIRED_DAYS later; before, no merge ever picked them (a merge counts the
    lines entries use), so every rule change left the whole corpus behind in the state for good."""
    runs = {}
    for number in (1, 2, 3):
        runs[f"week-{number}"] = cfg = _week(tmp_path, number, **({"max_chars": 900} if number == 3 else {}))
        if number == 2:
            write_jsonl(tmp_path / "incoming" / "week1" / "a.jsonl", digit_pairs(9, seed=99))  # a new version
        consumed.commit(cfg)
    state = storage.read_json(cfg.state_uri(layout.CONSUMED))
    named = {entry["cache"] for entry in state["objects"].values()}
    assert named == {shards.run_shard(cfg)}  # week 3 screened everything again into its own shard
    unnamed = _shard_files(cfg) - named
    assert len(unnamed) == 2 and unnamed <= set(state.get("retired", {}))
    assert shards.collect(cfg) == []  # a run that pulled before week 3 committed may still read them
    later = datetime.now(timezone.utc) + timedelta(days=shards.RETIRED_DAYS + 1)
    assert shards.collect(cfg, now=later) == sorted(unnamed)
    assert _shard_files(cfg) == named
    _every_copy_is_the_one_validated(cfg, runs)


def test_a_run_whose_every_object_was_consumed_newer_leaves_no_shard_for_good(tmp_path):
    """An old run's mark_consumed cleared and run again after a newer version of its object was consumed keeps
    nothing (`newer_kept`), so the shard it adopted again is named by no entry: retired, not left behind."""
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", digit_pairs(10, seed=1))
    old = make_run(tmp_path / "runs", run_id="old", data_uri=str(incoming), min_clean_pairs=1, max_reject_rate=1.0)
    pull.run(old)
    validate.run(old)
    write_jsonl(incoming / "a.jsonl", digit_pairs(12, seed=1))
    new = make_run(tmp_path / "runs", run_id="new", data_uri=str(incoming), min_clean_pairs=1, max_reject_rate=1.0)
    pull.run(new)
    validate.run(new)
    consumed.commit(new)
    assert consumed.commit(old)["newer_kept"] == [str(incoming / "a.jsonl")]
    later = datetime.now(timezone.utc) + timedelta(days=shards.RETIRED_DAYS + 1)
    shards.collect(new, now=later)
    assert _shard_files(new) == {shards.run_shard(new)}


def test_a_retraction_takes_the_rows_of_the_objects_earlier_versions_out_of_the_state_too(tmp_path):
    """A re-exported file (a new version of a consumed object) leaves its earlier copy's rows in the shard of the run
    that consumed it, alive with the other objects in it. When the object is retracted (personal data found in it),
    those rows must leave the state as its current copy's do: the file holding them is rewritten without them and
    deleted a week later. Before, only the current copy's file was rewritten: the first version's rows stayed."""
    incoming = tmp_path / "incoming"

    def week(number: int, **params):
        cfg = make_run(tmp_path / "runs", run_id=f"week-{number}", data_uri=str(incoming), min_clean_pairs=1,
                       max_reject_rate=1.0, **params)
        pull.run(cfg)
        validate.run(cfg)
        consumed.commit(cfg)
        return cfg

    write_jsonl(incoming / "export.jsonl", digit_pairs(10, seed=1))
    write_jsonl(incoming / "other.jsonl", digit_pairs(10, seed=2))
    first = week(1)
    write_jsonl(incoming / "export.jsonl", digit_pairs(10, seed=1) + digit_pairs(4, seed=3))  # re-exported
    week(2)
    write_jsonl(incoming / "more.jsonl", digit_pairs(10, seed=4))
    week(3, retract_data=[str(incoming / "export.jsonl")])
    write_jsonl(incoming / "last.jsonl", digit_pairs(10, seed=5))
    cfg = week(4)
    shards.collect(cfg, now=datetime.now(timezone.utc) + timedelta(days=shards.RETIRED_DAYS + 1))
    live = {row for entry in consumed.load(cfg).values() for row in consumed.copy_rows(cfg, entry)}
    retracted = set(consumed.run_copy_rows(first, "export.jsonl")) - live
    assert retracted and str(incoming / "other.jsonl") in consumed.load(cfg)
    for shard in _shard_files(cfg):
        kept = set(storage.read_text(cfg.state_uri(shard)).splitlines()) & retracted
        assert not kept, f"{shard} still holds {len(kept)} row(s) of the retracted object"


WRITES = ("write_bytes", "upload_file", "delete", "update_json")


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_a_commit_killed_at_any_write_and_retried_ends_as_one_clean_commit(tmp_path, monkeypatch, after):
    """mark_consumed's worker dies before (or right after) each write of a commit that also merges shards; Airflow
    retries it. Whatever the point, a later run reading the state in between never finds a copy torn or mixed up,
    and after the retry the state holds what one clean commit leaves: no object lost or consumed twice."""
    monkeypatch.setattr(shards, "MAX_SHARDS", 3)
    monkeypatch.setattr(shards, "MERGED_DOWN_TO", 2)

    def history(root: Path, kill_at: int | None) -> tuple[dict, bool]:
        runs, killed = {}, False
        for number in range(1, 5):
            runs[f"week-{number}"] = cfg = _week(root, number)
            if number == 4 and kill_at is not None:
                killed = _killed_at(cfg, kill_at, after, monkeypatch)
                _every_copy_is_the_one_validated(cfg, runs)
            consumed.commit(cfg)
            _every_copy_is_the_one_validated(cfg, runs)
        entries = consumed.load(cfg)
        return {uri[len(cfg.data_uri) + 1:]: (e["etag"], e["consumed_by"], e["kept"]) for uri, e in entries.items()}, \
            killed

    clean, _ = history(tmp_path / "clean", None)
    point, killed = 0, True
    while killed:
        point += 1
        got, killed = history(tmp_path / f"killed-{point}", point)
        assert got == clean, f"killed at write {point}"
    assert point > 3  # the commit, its merge and the merge's commit were each cut short


def _killed_at(cfg, point: int, after: bool, monkeypatch) -> bool:
    """Run the commit with its `point`-th write cut short; whether it was (False: the commit has fewer writes)."""
    seen = [0]
    with monkeypatch.context() as patch:
        for name in WRITES:
            real = getattr(storage, name)

            def cut(*args, _real=real, **kwargs):
                seen[0] += 1
                this = seen[0]  # a write may make others (update_json writes the file): count each once
                if this == point and not after:
                    raise Killed
                done = _real(*args, **kwargs)
                if this == point:
                    raise Killed
                return done

            patch.setattr(storage, name, cut)
        try:
            consumed.commit(cfg)
        except Killed:
            return True
    return False
