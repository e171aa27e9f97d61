"""The cleaned copies of a long history live in a bounded number of shards, and nothing is lost or mixed up on the
way: weeks of real pull → validate → commit, merges, a merge racing a commit, retired shards, copies written
before shards, a shard lost or cut short. On S3 (moto's server) and on a local disk."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from support.corpora import digit_pairs, write_jsonl
from support.runs import accounted, folder_or_s3, make_run
from tasks import layout
from tasks.data import consumed, pull, shards, validate
from tasks.io import storage


@pytest.fixture(params=["local", "s3"])
def weekly(request, tmp_path, monkeypatch):
    """week(n) lands two new objects and runs pull → validate → commit as week n; returns the run's config."""
    monkeypatch.setattr(shards, "MAX_SHARDS", 3)
    monkeypatch.setattr(shards, "MERGED_DOWN_TO", 2)
    incoming = folder_or_s3(request, tmp_path, request.param, "incoming", "incoming/en-de")
    root = folder_or_s3(request, tmp_path, request.param, "artifacts", "artifacts/runs")
    runs = {}

    def week(number: int, **params):
        for part in ("a", "b"):
            local = write_jsonl(tmp_path / "out" / f"w{number}{part}.jsonl", digit_pairs(12, seed=number * 10 + ord(part)))
            storage.upload_file(local, storage.join(incoming, f"week{number}/{part}.jsonl"))
        cfg = make_run(root, run_id=f"week-{number}", data_uri=incoming, min_clean_pairs=1, max_reject_rate=1.0,
                       **params)
        pull.run(cfg)
        validate.run(cfg)
        consumed.commit(cfg)
        runs[cfg.run_id] = cfg
        return cfg

    return week, runs


def _copies_are_the_ones_validated(cfg, runs) -> None:
    """Every consumed entry's copy, wherever merges moved it, holds exactly the rows its run's validation wrote."""
    for uri, entry in consumed.load(cfg).items():
        key = uri[len(cfg.data_uri.rstrip("/")) + 1:]
        assert consumed.copy_rows(cfg, entry) == consumed.run_copy_rows(runs[entry["consumed_by"]], key), uri


def test_weeks_of_history_stay_within_the_shard_limit_and_every_copy_is_intact(weekly):
    week, runs = weekly
    for number in range(1, 8):
        cfg = week(number)
        entries = consumed.load(cfg)
        assert len(entries) == 2 * number
        assert len({e["cache"] for e in entries.values()}) <= shards.MAX_SHARDS
        _copies_are_the_ones_validated(cfg, runs)
    state = storage.read_json(cfg.state_uri(layout.CONSUMED))
    assert state["retired"] and not set(state["retired"]) & {e["cache"] for e in entries.values()}
    # The next run carries all fourteen objects, reading a handful of files, and accounts for every row.
    nxt = week(8)
    report, _, _ = accounted(nxt)
    assert len(report["carried"]) == 14
    carried = storage.read_json(nxt.uri(layout.PULL_MANIFEST))["carried"]
    assert report["carried_rows"] == sum(c["lines"][1] for c in carried)


def test_retired_shards_are_deleted_only_after_the_grace_period_and_only_when_unused(weekly):
    week, runs = weekly
    for number in range(1, 6):
        cfg = week(number)
    retired = storage.read_json(cfg.state_uri(layout.CONSUMED))["retired"]
    assert retired and all(storage.exists(cfg.state_uri(c)) for c in retired)  # a run pulled before may read them
    assert shards.collect(cfg) == []
    later = datetime.now(timezone.utc) + timedelta(days=shards.RETIRED_DAYS + 1)
    assert shards.collect(cfg, now=later) == sorted(retired)
    assert not any(storage.exists(cfg.state_uri(c)) for c in retired)
    assert storage.read_json(cfg.state_uri(layout.CONSUMED))["retired"] == {}
    _copies_are_the_ones_validated(cfg, runs)
    week(6)


def test_a_merge_never_moves_an_entry_that_a_commit_changed_meanwhile(weekly, monkeypatch):
    week, runs = weekly
    monkeypatch.setattr(shards, "MAX_SHARDS", 10)  # no merge of the commits' own: this test merges by hand
    for number in range(1, 4):
        cfg = week(number)
    stale = consumed.load(cfg)
    # Meanwhile week 4 rewrites week1/a.jsonl: its entry now names week 4's shard.
    rewritten = next(uri for uri in stale if uri.endswith("week1/a.jsonl"))
    storage.write_text(rewritten, "\n".join(json.dumps({"translation": {"en": s, "de": t}})
                                            for s, t in digit_pairs(9, seed=99)) + "\n")
    week(4)
    fresh = consumed.load(cfg)[rewritten]
    assert fresh["consumed_by"] == "week-4"
    chosen = {e["cache"] for e in stale.values()}
    shards._merge(cfg, stale, chosen)  # planned on the stale state, applied by compare-and-swap
    now = consumed.load(cfg)
    assert shards.place(now[rewritten]) == shards.place(fresh)
    moved = {u for u, e in now.items() if e["cache"].startswith(f"{shards.SHARDS}/m-")}
    assert moved == set(stale) - {rewritten}
    assert set(storage.read_json(cfg.state_uri(layout.CONSUMED))["retired"]) == chosen
    # Another run's merge of the same plan, finishing second: it moves nothing, and its shard is retired too.
    late = shards._merge(runs["week-2"], stale, chosen)
    assert late["merged_objects"] == 0 and late["into"] in storage.read_json(cfg.state_uri(layout.CONSUMED))["retired"]
    assert consumed.load(cfg) == now
    _copies_are_the_ones_validated(cfg, runs)


def test_copies_kept_before_shards_are_read_and_merged_like_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "MAX_SHARDS", 2)
    monkeypatch.setattr(shards, "MERGED_DOWN_TO", 1)
    cfg = make_run(tmp_path / "runs", data_uri=str(tmp_path / "incoming"))
    rows = {f"s3://b/{n}.jsonl": [json.dumps({"translation": {"en": f"row {n}.{i}", "de": f"Zeile {n}.{i}"}})
                                  for i in range(n + 1)] for n in range(3)}
    objects = {}
    for number, (uri, lines) in enumerate(rows.items()):  # one file per object, no `lines`: the old layout
        storage.write_text(cfg.state_uri(f"{shards.OBJECTS}/{number}.jsonl"), "\n".join(lines) + "\n")
        objects[uri] = {"etag": "e", "cache": f"{shards.OBJECTS}/{number}.jsonl", "kept": len(lines),
                        "consumed_by": "old"}
    storage.write_json(cfg.state_uri(layout.CONSUMED), {"objects": objects})
    assert {u: consumed.copy_rows(cfg, e) for u, e in objects.items()} == rows
    assert shards.compact(cfg)["merged"] == 3
    merged = consumed.load(cfg)
    assert len({e["cache"] for e in merged.values()}) == 1
    assert {u: consumed.copy_rows(cfg, e) for u, e in merged.items()} == rows


def test_a_lost_or_truncated_shard_is_named_never_read_as_less_data(tmp_path):
    cfg = make_run(tmp_path / "runs", data_uri=str(tmp_path / "incoming"))
    storage.write_text(cfg.state_uri("shards/s.jsonl"), "1\n2\n3\n")
    entries = {"a.jsonl": {"cache": "shards/s.jsonl", "lines": [0, 2]},
               "b.jsonl": {"cache": "shards/s.jsonl", "lines": [2, 2]}}
    with pytest.raises(ValueError, match=r"s.jsonl: b.jsonl should have 2 lines from line 2, found 1: .* truncated"):
        shards.read(cfg, entries, tmp_path / "scratch")
    gone = {"c.jsonl": {"cache": "shards/gone.jsonl", "lines": [0, 1]}}
    with pytest.raises(shards.MissingCopyError, match="gone.jsonl: the cleaned copies of c.jsonl are gone"):
        shards.read(cfg, gone, tmp_path / "scratch")


def test_a_commit_with_nothing_new_to_keep_adopts_no_shard(weekly):
    """A run that only carries the history (a quiet week, retrained all the same) consumes nothing new: no shard of
    it may lie in the state that no entry names."""
    week, runs = weekly
    first = week(1)
    cfg = make_run(first.run_dir.rsplit("/", 2)[0], run_id="week-2", data_uri=first.data_uri, min_clean_pairs=1,
                   max_reject_rate=1.0)
    pull.run(cfg)
    validate.run(cfg)
    assert storage.read_json(cfg.uri(layout.CLEANED_INDEX)) == {}
    done = consumed.commit(cfg)
    assert done["committed"] == 0
    assert not storage.exists(cfg.state_uri(shards.run_shard(cfg)))
    assert {e["cache"] for e in consumed.load(cfg).values()} == {shards.run_shard(first)}
