"""Retraining week after week: a run trains on the pipeline's whole corpus (every consumed object's cleaned copy
plus the new objects), deduplicated across all of them, the frozen test set excluded; a deleted source object
still trains; new_only trains on the new objects alone."""

from __future__ import annotations

import json

import pytest

from support.corpora import digit_pairs, write_jsonl
from support.runs import accounted, make_run
from tasks import layout
from tasks.data import consumed, pull, screening, shards, split, validate
from tasks.io import storage

WEEK_1 = digit_pairs(400, seed=1)
WEEK_2 = [p for p in digit_pairs(300, seed=2) if p not in WEEK_1]


def _week(root, incoming, run_id, **params):
    cfg = make_run(root, run_id=run_id, data_uri=str(incoming), min_clean_pairs=50, min_test_pairs=10, **params)
    pull.run(cfg)
    validate.run(cfg)
    split.run(cfg)
    consumed.commit(cfg)
    return cfg


def _clean_sources(cfg) -> list[str]:
    return [json.loads(line)["translation"]["en"] for line in storage.read_text(cfg.uri(layout.CLEAN)).splitlines()]


@pytest.fixture
def two_weeks(tmp_path):
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "week1.jsonl", WEEK_1)
    first = _week(tmp_path / "runs", incoming, "week-1")
    frozen = {json.loads(line)["translation"]["en"]
              for line in storage.read_text(first.state_uri(layout.TEST_SET)).splitlines()}
    # Week 2: new pairs, one pair that week 1 already had, and one whose source is in the frozen test set.
    repeated, leaking = WEEK_1[0], next(p for p in WEEK_1 if p[0] in frozen)
    write_jsonl(incoming / "week2.jsonl", WEEK_2 + [repeated, leaking])
    (incoming / "week1.jsonl").unlink()  # the data team cleaned up: week 1's object is gone from the prefix
    return tmp_path, incoming, first, frozen


def test_week_two_trains_on_both_weeks_without_duplicates_or_test_sentences(two_weeks):
    tmp_path, incoming, first, frozen = two_weeks
    second = _week(tmp_path / "runs", incoming, "week-2")
    report, clean, rejects = accounted(second)
    manifest = storage.read_json(second.uri(layout.PULL_MANIFEST))
    assert [o["key"] for o in manifest["objects"]] == ["week2.jsonl"]
    assert [c["key"] for c in manifest["carried"]] == ["week1.jsonl"]  # carried although deleted at the source
    carried = report["carried"]["week1.jsonl"]
    week_1_kept = carried["kept"]
    # Week 1's test pairs were in its cleaned copy: now that the test set is frozen, they are leakage.
    assert carried["leakage"] > 0 and week_1_kept + carried["leakage"] == len(_clean_sources(first))
    sources = _clean_sources(second)
    assert set(sources) == ({s for s, _ in WEEK_1} | {s for s, _ in WEEK_2}) - frozen
    assert len(sources) == len(set(sources)) == report["clean_pairs"] == week_1_kept + report["kept"]
    reasons = {r["line"]: r["reasons"][0]["reason"] for r in rejects if r["file"] == "week2.jsonl"}
    assert sorted(reasons.values()) == ["duplicate", "leakage"]
    # The frozen test set is never trained on, and week 2's training split holds week 1's pairs too.
    train_sources = {json.loads(line)["translation"]["en"]
                     for line in storage.read_text(second.uri(layout.split_file("train"))).splitlines()}
    assert not train_sources & frozen and train_sources & {s for s, _ in WEEK_1}


def test_new_only_trains_on_the_new_objects_alone(two_weeks):
    tmp_path, incoming, _, frozen = two_weeks
    second = _week(tmp_path / "runs", incoming, "week-2", training_data="new_only")
    report, _, _ = accounted(second)
    assert report["carried"] == {} and report["carried_kept"] == 0
    assert set(_clean_sources(second)) == ({s for s, _ in WEEK_2} | {WEEK_1[0][0]}) - frozen  # week 1 unknown


def test_a_missing_cleaned_copy_is_pulled_again_while_its_source_is_there(two_weeks):
    tmp_path, incoming, first, _ = two_weeks
    ((uri, entry),) = consumed.load(first).items()
    write_jsonl(incoming / "week1.jsonl", WEEK_1)  # still (again) at the source
    storage.local_file_for(first.state_uri(entry["cache"]), tmp_path).unlink()
    second = _week(tmp_path / "runs", incoming, "week-2")
    manifest = storage.read_json(second.uri(layout.PULL_MANIFEST))
    assert manifest["recopied"] == ["week1.jsonl"] and manifest["carried"] == [] and manifest["lost"] == []
    assert "1 consumed object(s) pulled again (their cleaned copy was missing)" in manifest["message"]
    assert "week1.jsonl" in accounted(second)[0]["files"]  # validated again, from the source
    again = consumed.load(second)[uri]
    assert again["consumed_by"] == "week-2" and storage.exists(second.state_uri(again["cache"]))


def test_a_missing_cleaned_copy_whose_source_is_gone_is_dropped_and_recorded(two_weeks):
    """Before, one lost copy blocked the pipeline for good and advised force_full_retrain, which cannot bring
    a deleted source back. Now the run trains on the rest and the state records what was dropped and why."""
    tmp_path, incoming, first, _ = two_weeks
    ((uri, entry),) = consumed.load(first).items()
    storage.local_file_for(first.state_uri(entry["cache"]), tmp_path).unlink()  # week 1's source is gone too
    second = _week(tmp_path / "runs", incoming, "week-2")
    manifest = storage.read_json(second.uri(layout.PULL_MANIFEST))
    (lost,) = manifest["lost"]
    assert (lost["key"], lost["dropped"], lost["consumed_by"]) == ("week1.jsonl", True, "week-1")
    assert manifest["carried"] == [] and "not trained on (cleaned copy missing" in manifest["message"]
    assert set(_clean_sources(second)) <= {s for s, _ in WEEK_2} | {WEEK_1[0][0]}
    state = storage.read_json(second.state_uri(layout.CONSUMED))
    assert uri not in state["objects"]
    assert state["dropped"][uri]["dropped_by"] == "week-2" and "no longer at the source" in \
        state["dropped"][uri]["reason"]


def test_a_cleaned_copy_lost_between_pull_and_validate_fails_with_what_to_do(two_weeks):
    tmp_path, incoming, first, _ = two_weeks
    (entry,) = consumed.load(first).values()
    second = make_run(tmp_path / "runs", run_id="week-2", data_uri=str(incoming), min_clean_pairs=1)
    pull.run(second)
    storage.local_file_for(first.state_uri(entry["cache"]), tmp_path).unlink()
    with pytest.raises(validate.BadBatchError, match="cleaned copies of week1.jsonl are gone .* Trigger a new run"):
        validate.run(second)


def test_only_a_run_that_commits_changes_the_copies_later_runs_train_on(two_weeks):
    """A run that validates the consumed objects again (force_full_retrain, perhaps with looser filters) and then
    fails or is refused must not leave its copies for every later run: they stay in its run directory until it
    commits, and committing adds a copy under a name of its own instead of overwriting the one in use."""
    tmp_path, incoming, first, _ = two_weeks
    write_jsonl(incoming / "week1.jsonl", WEEK_1)  # back at the source, as it was consumed
    state_before = storage.read_text(first.state_uri(layout.CONSUMED))
    ((uri, entry),) = consumed.load(first).items()
    copy_before = consumed.copy_rows(first, entry)

    forced = make_run(tmp_path / "runs", run_id="forced", data_uri=str(incoming), min_clean_pairs=50,
                      min_test_pairs=10, force_full_retrain=True)
    pull.run(forced)
    validate.run(forced)
    new = storage.read_json(forced.uri(layout.PULL_MANIFEST))["objects"]
    assert {o["uri"] for o in new} >= {uri}
    # ...and then the gate refuses it: mark_consumed never runs. Nothing the pipeline trains on has changed.
    assert storage.read_text(first.state_uri(layout.CONSUMED)) == state_before
    assert consumed.copy_rows(first, entry) == copy_before
    assert all(consumed.run_copy_rows(forced, o["key"]) for o in new)  # in the run directory
    assert not storage.exists(forced.state_uri(shards.run_shard(forced)))  # not in the state

    # Had it been promoted, committing would adopt its copy under a new name; the old file stays as it was.
    split.run(forced)
    consumed.commit(forced)
    adopted = consumed.load(forced)[uri]
    assert adopted["consumed_by"] == "forced" and adopted["cache"] != entry["cache"]
    assert consumed.copy_rows(forced, adopted) == consumed.run_copy_rows(forced, "week1.jsonl")
    assert consumed.copy_rows(first, entry) == copy_before


def _long(pairs, limit: int) -> set[str]:
    return {s for s, t in pairs if len(s) > limit or len(t) > limit}


def test_a_tightened_filter_screens_the_carried_copies_again_once(two_weeks):
    """Before, a copy was never screened again: tightening a threshold affected new rows only, while the report's
    thresholds suggested otherwise. Now each copy carries the fingerprint of the rules that cleaned it."""
    tmp_path, incoming, first, frozen = two_weeks
    ((uri, entry),) = consumed.load(first).items()
    assert entry["rules"] == storage.read_json(first.uri(layout.VALIDATION_REPORT))["rules"]["fingerprint"]
    old_copy = "\n".join(consumed.copy_rows(first, entry))
    limit = 30  # max_chars tightened mid-year: week 1 has longer pairs, which its copy kept
    assert _long(WEEK_1, limit) - frozen

    second = _week(tmp_path / "runs", incoming, "week-2", max_chars=limit)
    report, clean, rejects = accounted(second)
    again = report["rescreened"]["week1.jsonl"]
    assert report["carried"] == {} and again["rejected"] > 0
    assert report["rules"]["max_chars"] == limit and report["rules"]["fingerprint"] != entry["rules"]
    assert "screened again" in report["accounting"]
    too_long = {r["source"] for r in rejects if r["file"] == "week1.jsonl" and r["reasons"][0]["reason"] == "too_long"}
    assert too_long == _long(WEEK_1, limit) & {json.loads(line)["translation"]["en"] for line in old_copy.splitlines()}
    assert not _long([(c["translation"]["en"], c["translation"]["de"]) for c in clean], limit)
    # Week 2's own figures (its reject rate, which can fail a batch) count week 2's rows only.
    assert report["rows_in"] == sum(c["rows"] for c in report["files"].values())
    assert report["reject_rate"] == round((report["rejected"] - report["leakage"]) / report["rows_in"], 4)
    assert report["leakage"] == sum(1 for r in rejects if r["file"] == "week2.jsonl"
                                    and r["reasons"][0]["reason"] == "leakage")

    # Committed: the new copy (its own name; the old one untouched) and the new rules are the pipeline's.
    now = consumed.load(second)[uri]
    assert now["cache"] != entry["cache"] and now["rescreened_by"] == "week-2"
    assert now["rules"] == report["rules"]["fingerprint"] and now["consumed_by"] == "week-1"
    assert "\n".join(consumed.copy_rows(first, entry)) == old_copy
    assert not _long([(json.loads(line)["translation"]["en"], json.loads(line)["translation"]["de"])
                      for line in consumed.copy_rows(second, now)], limit)

    # Once: the next run with the same rules carries the new copy as it is.
    write_jsonl(incoming / "week3.jsonl", [p for p in digit_pairs(100, seed=3) if p not in WEEK_1 + WEEK_2])
    third = _week(tmp_path / "runs", incoming, "week-3", max_chars=limit)
    report3, _, _ = accounted(third)
    assert report3["rescreened"] == {} and set(report3["carried"]) == {"week1.jsonl", "week2.jsonl"}


def test_a_run_that_screened_a_copy_again_but_never_committed_changes_nothing(two_weeks):
    tmp_path, incoming, first, _ = two_weeks
    state_before = storage.read_text(first.state_uri(layout.CONSUMED))
    refused = make_run(tmp_path / "runs", run_id="refused", data_uri=str(incoming), min_clean_pairs=50,
                       min_test_pairs=10, max_chars=30)
    pull.run(refused)
    validate.run(refused)
    assert accounted(refused)[0]["rescreened"]["week1.jsonl"]["rejected"] > 0
    # ...and the gate refuses it: mark_consumed never runs, so the next run screens the copy again itself.
    assert storage.read_text(first.state_uri(layout.CONSUMED)) == state_before
    again = _week(tmp_path / "runs", incoming, "week-2", max_chars=30)
    assert "week1.jsonl" in accounted(again)[0]["rescreened"]


def test_retracted_data_is_forgotten_for_good(two_weeks):
    """A team must be able to take data back (a licence withdrawn, personal data found): from the retracting run
    on, the object is neither carried nor pulled again, even when it reappears at the source."""
    tmp_path, incoming, first, _ = two_weeks
    ((uri, _),) = consumed.load(first).items()
    second = _week(tmp_path / "runs", incoming, "week-2", retract_data=[uri])
    manifest = storage.read_json(second.uri(layout.PULL_MANIFEST))
    assert manifest["retracted_consumed"] == [uri] and manifest["carried"] == []
    assert "1 consumed object(s) retracted from the corpus" in manifest["message"]
    week_2_sources = {s for s, _ in WEEK_2} | {WEEK_1[0][0]}
    assert set(_clean_sources(second)) <= week_2_sources  # week 1's pairs only where week 2 has them too
    state = storage.read_json(second.state_uri(layout.CONSUMED))
    assert uri not in state["objects"] and state["dropped"][uri]["reason"] == f"retracted (retract_data {uri})"
    assert state["retracted"][uri]["by"] == "week-2"

    # The data team uploads week 1 again; a run that does not mention the retraction still keeps it out.
    write_jsonl(incoming / "week1.jsonl", WEEK_1)
    write_jsonl(incoming / "week3.jsonl", [p for p in digit_pairs(100, seed=3) if p not in WEEK_1 + WEEK_2])
    third = _week(tmp_path / "runs", incoming, "week-3")
    manifest = storage.read_json(third.uri(layout.PULL_MANIFEST))
    assert [o["key"] for o in manifest["objects"]] == ["week3.jsonl"]
    assert manifest["retracted"] == [{"key": "week1.jsonl", "uri": uri, "retracted": uri}]
    assert [c["key"] for c in manifest["carried"]] == ["week2.jsonl"] and uri in manifest["retractions"]


def test_a_retraction_retrains_on_what_is_left_even_with_nothing_new(two_weeks):
    tmp_path, incoming, first, _ = two_weeks
    second = _week(tmp_path / "runs", incoming, "week-2")
    summary_before = pull.run(make_run(tmp_path / "runs", run_id="idle", data_uri=str(incoming)))
    assert summary_before["nothing_new"]  # without a retraction, nothing to do
    third = make_run(tmp_path / "runs", run_id="week-3", data_uri=str(incoming), min_clean_pairs=50,
                     min_test_pairs=10, retract_data=[str(incoming / "week2.jsonl")])
    summary = pull.run(third)
    assert not summary["nothing_new"] and summary["files"] == 0
    assert "retraining on the corpus left" in summary["message"]
    validate.run(third)
    split.run(third)
    report, clean, _ = accounted(third)
    assert set(report["carried"]) == {"week1.jsonl"} and report["rows_in"] == 0 and clean
    week_2_only = {s for s, _ in WEEK_2} - {s for s, _ in WEEK_1}
    assert not week_2_only & set(_clean_sources(third))


def test_reading_pairs_both_ways_is_a_rule_of_the_cleaned_copies(tmp_path):
    """The alignment screen's reverse model decides which rows a copy keeps, as its other settings do: switched on,
    the copies screened one way were carried unscreened both ways, for good."""
    def fingerprint(**params):
        run_id = f"run-{len(list(tmp_path.rglob('config.json')))}"
        return screening.rules_fingerprint(make_run(tmp_path, run_id=run_id, alignment_screen=True, **params))

    one_way = fingerprint()
    assert fingerprint(alignment_reverse_models={"de": "Helsinki-NLP/opus-mt-de-en"}) != one_way
    assert fingerprint(alignment_reverse_models={}) == one_way  # none named: the fingerprint copies carry already
