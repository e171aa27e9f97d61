"""Incremental pulls: only what no successful run has consumed, from moto's S3 server or a local folder."""

import pytest

from support.corpora import digit_pairs, write_jsonl, write_tsv
from support.runs import make_run
from tasks import layout
from tasks.data import consumed, pull, validate
from tasks.io import storage


@pytest.fixture
def bucket(s3, tmp_path):
    """s3://incoming/en-de/ with a JSONL and a TSV file and a README that is not data."""
    s3.create_bucket(Bucket="incoming")
    s3.create_bucket(Bucket="artifacts")
    pairs = digit_pairs(40, seed=3)
    s3.upload_file(str(write_jsonl(tmp_path / "a.jsonl", pairs[:20])), "incoming", "en-de/a.jsonl")
    s3.upload_file(str(write_tsv(tmp_path / "b.tsv", pairs[20:])), "incoming", "en-de/week1/b.tsv")
    s3.put_object(Bucket="incoming", Key="en-de/README.txt", Body=b"not data")
    return "s3://incoming/en-de/"


def _run(run_id, data_uri, **params):
    return make_run("s3://artifacts/runs", run_id=run_id, data_uri=data_uri, **params)


def _keys(cfg):
    """The keys of the objects a run pulled (raw/ holds them under flat names of their own)."""
    return [o["key"] for o in storage.read_json(cfg.uri(layout.PULL_MANIFEST))["objects"]]


def _pulled_and_read(cfg) -> dict:
    """Pull, then validate what was pulled (consumption is only for objects whose rows were read)."""
    summary = pull.run(cfg)
    if not summary["nothing_new"]:
        validate.run(cfg)
    return summary


def test_incremental_pulls_across_runs_on_s3(bucket, s3, tmp_path):
    # Week 1: everything is new.
    first = _run("run-1", bucket, min_clean_pairs=1, max_reject_rate=1.0)
    summary = _pulled_and_read(first)
    assert (summary["files"], summary["nothing_new"], summary["mode"]) == (2, False, "incremental")
    assert _keys(first) == ["a.jsonl", "week1/b.tsv"]
    manifest = storage.read_json(first.uri(layout.PULL_MANIFEST))
    assert [(i["key"], i["reason"].split(":")[0]) for i in manifest["ignored"]] == [("README.txt", "not a data file")]
    assert consumed.commit(first)["committed"] == 2

    # Week 2: nothing new. The run ends early and says why.
    second = _run("run-2", bucket)
    summary = pull.run(second)
    assert summary["nothing_new"] is True and summary["files"] == 0
    assert "nothing new under s3://incoming/en-de/: all 2 data object(s) were consumed" in summary["message"]
    assert "force_full_retrain" in summary["message"]
    assert consumed.commit(second) == {"committed": 0, "reason": "nothing new was pulled"}

    # Week 3: one new object and one rewritten under the same key. The run fails after pulling.
    s3.upload_file(str(write_jsonl(tmp_path / "c.jsonl", digit_pairs(5, seed=4))), "incoming", "en-de/c.jsonl")
    s3.upload_file(str(write_tsv(tmp_path / "b2.tsv", digit_pairs(7, seed=5))), "incoming", "en-de/week1/b.tsv")
    failed = _run("run-3", bucket)
    assert pull.run(failed)["files"] == 2
    # ... and its gate never ran, so nothing is committed for it.

    # Week 3, again: the failed run consumed nothing, so the same two objects are new; the first week's
    # object is carried into training from its cleaned copy.
    retry = _run("run-4", bucket, min_clean_pairs=1, max_reject_rate=1.0)
    summary = _pulled_and_read(retry)
    assert (summary["files"], summary["carried"]) == (2, 1)
    assert summary["message"] == ("1 new and 1 changed object(s) under s3://incoming/en-de/; 1 already consumed; "
                                  "1 consumed object(s) carried into training")
    manifest = storage.read_json(retry.uri(layout.PULL_MANIFEST))
    assert manifest["changed"] == ["week1/b.tsv"] and [c["key"] for c in manifest["carried"]] == ["a.jsonl"]
    local = {o["key"]: o["local"] for o in manifest["objects"]}
    assert storage.read_text(retry.uri(layout.RAW, local["week1/b.tsv"])).count("\n") == 8  # the new content
    assert consumed.commit(retry)["consumed_total"] == 3

    # A re-run of the same DAG run is idempotent: the same answer, nothing pulled again.
    assert pull.run(retry) == summary
    assert consumed.commit(retry)["consumed_total"] == 3
    assert pull.run(_run("run-5", bucket))["nothing_new"] is True

    state = consumed.load(retry)
    assert state["s3://incoming/en-de/week1/b.tsv"]["consumed_by"] == "run-4"
    assert state["s3://incoming/en-de/a.jsonl"]["consumed_by"] == "run-1"


def test_a_local_file_rewritten_with_the_same_size_and_time_is_new_again(tmp_path):
    import os

    incoming = tmp_path / "incoming"
    path = write_jsonl(incoming / "a.jsonl", digit_pairs(5, seed=1))
    first = make_run(tmp_path / "artifacts", run_id="run-1", data_uri=str(incoming), min_clean_pairs=1)
    assert _pulled_and_read(first)["files"] == 1
    consumed.commit(first)
    assert pull.run(make_run(tmp_path / "artifacts", run_id="run-2", data_uri=str(incoming)))["nothing_new"]
    before = path.stat()
    text = path.read_text().replace("eins", "ein ")  # same length
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    third = make_run(tmp_path / "artifacts", run_id="run-3", data_uri=str(incoming))
    assert pull.run(third)["files"] == 1
    assert storage.read_json(third.uri(layout.PULL_MANIFEST))["changed"] == ["a.jsonl"]


def test_force_full_retrain_pulls_what_was_consumed(bucket):
    first = _run("run-1", bucket, min_clean_pairs=1, max_reject_rate=1.0)
    _pulled_and_read(first)
    consumed.commit(first)
    full = _run("run-2", bucket, force_full_retrain=True)
    summary = pull.run(full)
    assert (summary["files"], summary["mode"], summary["nothing_new"], summary["carried"]) == (2, "full", False, 0)
    assert summary["message"] == ("0 new object(s) under s3://incoming/en-de/; 2 consumed object(s) pulled again "
                                  "(force_full_retrain)")  # none changed: nothing is called changed
    assert storage.read_json(full.uri(layout.PULL_MANIFEST))["changed"] == []


def test_objects_consumed_before_cleaned_copies_were_kept_are_pulled_again_not_dropped(bucket):
    first = _run("run-1", bucket, min_clean_pairs=1, max_reject_rate=1.0)
    _pulled_and_read(first)
    consumed.commit(first)

    def as_an_older_version_wrote_it(state):  # consumed.json entries had no "cache" then
        return {"objects": {uri: {k: v for k, v in e.items() if k != "cache"} for uri, e in state["objects"].items()}}

    storage.update_json(first.state_uri(layout.CONSUMED), as_an_older_version_wrote_it)
    week = _run("run-2", bucket)
    summary = pull.run(week)
    assert (summary["files"], summary["nothing_new"]) == (2, False)  # trained on, not silently left out
    assert "2 consumed object(s) pulled again (consumed before cleaned copies were kept)" in summary["message"]
    assert pull.run(_run("run-3", bucket, training_data="new_only"))["nothing_new"]  # new_only: still consumed


def test_objects_consumed_before_cleaned_copies_were_kept_and_gone_from_the_source_are_dropped_saying_so(bucket,
                                                                                                         s3):
    """No copy to carry, nothing to pull again: they left every later run's training without a word."""
    first = _run("run-1", bucket, min_clean_pairs=1, max_reject_rate=1.0)
    _pulled_and_read(first)
    consumed.commit(first)
    storage.update_json(first.state_uri(layout.CONSUMED), lambda state: {"objects": {
        uri: {k: v for k, v in e.items() if k not in ("cache", "lines")} for uri, e in state["objects"].items()}})
    gone = sorted(consumed.load(first))[0]
    s3.delete_object(Bucket="incoming", Key=gone.split("incoming/", 1)[1])
    week = _run("run-2", bucket, min_clean_pairs=1, max_reject_rate=1.0)
    pull.run(week)
    (lost,) = storage.read_json(week.uri(layout.PULL_MANIFEST))["lost"]
    assert lost["uri"] == gone and lost["dropped"] and "consumed before cleaned copies were kept" in lost["reason"]
    _pulled_and_read(week)
    consumed.commit(week)
    state = storage.read_json(week.state_uri(layout.CONSUMED))
    assert gone not in state["objects"] and "no longer at the source" in state["dropped"][gone]["reason"]


def test_new_only_carries_nothing_and_all_carries_every_consumed_object(bucket, s3, tmp_path):
    first = _run("run-1", bucket, min_clean_pairs=1, max_reject_rate=1.0)
    _pulled_and_read(first)
    consumed.commit(first)
    s3.upload_file(str(write_jsonl(tmp_path / "c.jsonl", digit_pairs(5, seed=4))), "incoming", "en-de/c.jsonl")
    assert pull.run(_run("only", bucket, training_data="new_only"))["carried"] == 0
    everything = _run("all", bucket)
    assert pull.run(everything)["carried"] == 2
    carried = storage.read_json(everything.uri(layout.PULL_MANIFEST))["carried"]
    assert [(c["key"], c["consumed_by"]) for c in carried] == [("a.jsonl", "run-1"), ("week1/b.tsv", "run-1")]
    assert all(storage.exists(everything.state_uri(c["cache"])) for c in carried)  # adopted by commit
    (first, second) = sorted(c["lines"] for c in carried)  # one shard, one object's lines after the other's
    assert len({c["cache"] for c in carried}) == 1 and first[0] == 0 and second[0] == sum(first) and second[1]


def test_a_snapshot_pulls_exactly_the_listed_objects_and_consumes_nothing(bucket, s3, tmp_path):
    first = _run("run-1", bucket, min_clean_pairs=1, max_reject_rate=1.0)
    _pulled_and_read(first)
    consumed.commit(first)
    old = [o["uri"] for o in storage.read_json(first.uri(layout.PULL_MANIFEST))["objects"]]
    s3.upload_file(str(write_jsonl(tmp_path / "a2.jsonl", digit_pairs(3, seed=9))), "incoming",
                   "en-de/week2/a.jsonl")  # same name, elsewhere under the data URI

    replay = _run("replay", bucket, data_snapshot=old + ["s3://incoming/en-de/week2/a.jsonl"],
                  training_data="new_only", min_clean_pairs=1, max_reject_rate=1.0)
    summary = _pulled_and_read(replay)
    assert (summary["files"], summary["mode"]) == (3, "snapshot")
    manifest = storage.read_json(replay.uri(layout.PULL_MANIFEST))
    assert _keys(replay) == ["a.jsonl", "week1/b.tsv", "week2/a.jsonl"]
    assert len({o["local"] for o in manifest["objects"]}) == 3  # two files named a.jsonl do not collide
    # A reproduction leaves the pipeline as it was: week 2's object is still new for the next run.
    assert consumed.commit(replay) == {"committed": 0, "reason": consumed.SNAPSHOT_CONSUMES_NOTHING}
    assert set(consumed.load(replay)) == set(old)


def test_a_snapshot_that_names_no_data_file_fails_even_after_earlier_runs(bucket):
    first = _run("run-1", bucket, min_clean_pairs=1, max_reject_rate=1.0)
    _pulled_and_read(first)
    consumed.commit(first)
    cfg = _run("run-2", bucket, data_snapshot=["s3://incoming/en-de/README.txt"])
    with pytest.raises(pull.NoDataError, match=r"data_snapshot \['s3://incoming/en-de/README.txt'\]: no data "
                                               r"files found .*README.txt: not a data file"):
        pull.run(cfg)


def test_a_file_named_twice_in_a_snapshot_is_pulled_once(bucket):
    cfg = _run("run-1", bucket, data_snapshot=["s3://incoming/en-de/", "s3://incoming/en-de/a.jsonl"])
    assert pull.run(cfg)["files"] == 2
    assert _keys(cfg) == ["a.jsonl", "week1/b.tsv"]


@pytest.mark.parametrize("params, message", [
    ({"data_snapshot": ["s3://incoming/en-de/gone.jsonl"]}, r"data_snapshot: s3://incoming/en-de/gone.jsonl does not exist"),
    ({"data_uri": "s3://incoming/empty/"}, r"s3://incoming/empty/: no data files found"),
])
def test_missing_data_fails_with_the_place_named(bucket, params, message):
    cfg = _run("run-1", params.pop("data_uri", bucket), **params)
    with pytest.raises(pull.NoDataError, match=message):
        pull.run(cfg)


def _raw_text(cfg, key: str) -> str:
    (obj,) = [o for o in storage.read_json(cfg.uri(layout.PULL_MANIFEST))["objects"] if o["key"] == key]
    return storage.read_text(cfg.uri(layout.RAW, obj["local"]))


@pytest.fixture
def versioned(s3, tmp_path):
    """s3://versioned/en-de/ on a bucket that keeps every version of its objects."""
    s3.create_bucket(Bucket="versioned")
    s3.create_bucket(Bucket="artifacts")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    s3.upload_file(str(write_jsonl(tmp_path / "a1.jsonl", digit_pairs(10, seed=1))), "versioned", "en-de/a.jsonl")
    s3.upload_file(str(write_jsonl(tmp_path / "b1.jsonl", digit_pairs(10, seed=2))), "versioned", "en-de/b.jsonl")
    return "s3://versioned/en-de/"


def test_a_run_reproduced_from_its_manifest_gets_the_versions_it_trained_on(versioned, s3, tmp_path):
    """Before, data_snapshot named URIs only: a rewritten object was reproduced at its new content, silently."""
    first = _run("run-1", versioned, min_clean_pairs=1, max_reject_rate=1.0)
    _pulled_and_read(first)
    consumed.commit(first)
    week1 = {key: _raw_text(first, key) for key in ("a.jsonl", "b.jsonl")}
    s3.upload_file(str(write_jsonl(tmp_path / "c.jsonl", digit_pairs(10, seed=3))), "versioned", "en-de/c.jsonl")
    second = _run("run-2", versioned, min_clean_pairs=1, max_reject_rate=1.0)
    _pulled_and_read(second)
    reproduce = storage.read_json(second.uri(layout.PULL_MANIFEST))["reproduce"]
    # run 2 trained on c (new) and a, b (carried): all three, pinned.
    assert sorted(e.rsplit("#", 1)[0] for e in reproduce["data_snapshot"]) == \
        [f"{versioned}{k}.jsonl" for k in "abc"] and all("#etag=" in e for e in reproduce["data_snapshot"])

    # The data team rewrites a.jsonl and deletes b.jsonl afterwards.
    s3.upload_file(str(write_jsonl(tmp_path / "a2.jsonl", digit_pairs(10, seed=9))), "versioned", "en-de/a.jsonl")
    s3.delete_object(Bucket="versioned", Key="en-de/b.jsonl")
    again = _run("again", versioned, **reproduce)
    summary = pull.run(again)
    manifest = storage.read_json(again.uri(layout.PULL_MANIFEST))
    assert summary["mode"] == "snapshot" and manifest["carried"] == []  # exactly the objects listed
    assert {o["key"]: _raw_text(again, o["key"]) for o in manifest["objects"] if o["key"] != "c.jsonl"} == week1
    assert all(o.get("version") for o in manifest["objects"] if o["key"] != "c.jsonl")

    # A VersionId pins as well; one the bucket does not have is named.
    (a,) = [o for o in manifest["objects"] if o["key"] == "a.jsonl"]
    by_version = _run("by-version", versioned, data_snapshot=[f"{versioned}a.jsonl#version={a['version']}"])
    pull.run(by_version)
    assert _raw_text(by_version, "a.jsonl") == week1["a.jsonl"]
    with pytest.raises(pull.NoDataError, match=r"a.jsonl#version=nope: .*no such object version nope"):
        pull.run(_run("bad-version", versioned, data_snapshot=[f"{versioned}a.jsonl#version=nope"]))


def test_a_pin_that_no_kept_version_matches_is_refused_in_words(bucket, s3, tmp_path):
    cfg = _run("run-1", bucket, data_snapshot=["s3://incoming/en-de/a.jsonl"])
    pull.run(cfg)
    pinned = storage.read_json(cfg.uri(layout.PULL_MANIFEST))["reproduce"]["data_snapshot"]
    s3.upload_file(str(write_jsonl(tmp_path / "new.jsonl", digit_pairs(5, seed=8))), "incoming", "en-de/a.jsonl")
    with pytest.raises(pull.NoDataError, match=r"s3://incoming/en-de/a.jsonl is no longer the object pinned "
                                               r"\(ETag .*\): its ETag is now .*only a versioned S3 bucket keeps them"):
        pull.run(_run("run-2", bucket, data_snapshot=pinned))
    with pytest.raises(pull.NoDataError, match="a folder cannot be pinned"):
        pull.run(_run("run-3", bucket, data_snapshot=["s3://incoming/en-de/#etag=abc"]))


def test_a_pinned_local_file_is_taken_while_unchanged_and_refused_once_rewritten(tmp_path):
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", digit_pairs(5, seed=1))
    cfg = make_run(tmp_path / "runs", run_id="run-1", data_uri=str(incoming),
                   data_snapshot=[str(incoming / "a.jsonl")])
    pull.run(cfg)
    pinned = storage.read_json(cfg.uri(layout.PULL_MANIFEST))["reproduce"]["data_snapshot"]
    same = make_run(tmp_path / "runs", run_id="run-2", data_uri=str(incoming), data_snapshot=pinned)
    assert pull.run(same)["files"] == 1
    write_jsonl(incoming / "a.jsonl", digit_pairs(5, seed=2))
    with pytest.raises(pull.NoDataError, match="no longer the object pinned"):
        pull.run(make_run(tmp_path / "runs", run_id="run-3", data_uri=str(incoming), data_snapshot=pinned))


def _languages(tmp_path, target_langs, **params):
    """A run's pairs as prepare saves them (mt_airflow.pairs), by target language; data under tmp_path/data/."""
    from mt_airflow import pairs
    from tasks import config

    run = make_run(tmp_path / "artifacts", data_uri=f"{tmp_path / 'data'}/", target_langs=target_langs, **params)
    for pair in pairs.expand(run):
        config.save(pair)
    return {pair.target_lang: pair for pair in pairs.expand(run)}


@pytest.mark.parametrize("folder", ["empty", "missing", "no data file"])
def test_a_language_of_several_with_no_data_yet_has_nothing_new(tmp_path, folder):
    """Before, it failed the pull (NoDataError; FileNotFoundError, retried as transient, for a missing local
    folder), and release_gate never let the run's other, promoted languages publish."""
    write_jsonl(tmp_path / "data" / "en-de" / "part.jsonl", digit_pairs(20))
    if folder != "missing":
        (tmp_path / "data" / "en-nl").mkdir()
    if folder == "no data file":
        (tmp_path / "data" / "en-nl" / "README.txt").write_text("data lands here")
    languages = _languages(tmp_path, ["de", "nl"])
    assert pull.run(languages["de"])["files"] == 1
    summary = pull.run(languages["nl"])
    assert summary["nothing_new"] is True and summary["files"] == 0
    manifest = storage.read_json(languages["nl"].uri(layout.PULL_MANIFEST))
    assert manifest["no_data"] == summary["message"]
    assert manifest["no_data"].startswith(f"nothing new for en-nl: {languages['nl'].data_uri}: no data files found")
    assert "no earlier run consumed any" in manifest["no_data"]


@pytest.mark.parametrize("folder, error", [("empty", pull.NoDataError), ("missing", FileNotFoundError)])
def test_a_single_pair_with_no_data_still_fails(tmp_path, folder, error):
    if folder == "empty":
        (tmp_path / "data" / "en-nl").mkdir(parents=True)
    with pytest.raises(error):
        pull.run(make_run(tmp_path / "artifacts", data_uri=f"{tmp_path / 'data' / 'en-nl'}/"))
    with pytest.raises(error):  # a run of one target language is a single pair too
        pull.run(_languages(tmp_path, ["nl"], run_id="run-2")["nl"])


@pytest.mark.parametrize("misnamed", ["EN-NL", "en_nl", "En.Nl/week1"])
def test_a_pair_folder_named_otherwise_fails_naming_it_instead_of_skipping_the_pair(tmp_path, misnamed):
    # The data team wrote `en_nl/`: read from `en-nl/` only, the pair had no data and was skipped every week,
    # its files never read, and no error said so.
    write_jsonl(tmp_path / "data" / "en-de" / "part.jsonl", digit_pairs(20))
    write_jsonl(tmp_path / "data" / misnamed / "part.jsonl", digit_pairs(20, seed=5))
    languages = _languages(tmp_path, ["de", "nl"])
    assert pull.run(languages["de"])["files"] == 1
    with pytest.raises(pull.NoDataError, match=f"holds \\['{misnamed.split('/')[0]}'\\].*/en-nl/ exactly"):
        pull.run(languages["nl"])


def test_a_misnamed_pair_folder_on_s3_is_named_too(s3, tmp_path):
    from mt_airflow import pairs
    from tasks import config

    s3.create_bucket(Bucket="incoming")
    s3.upload_file(str(write_jsonl(tmp_path / "a.jsonl", digit_pairs(20))), "incoming", "all/en-de/a.jsonl")
    s3.upload_file(str(write_jsonl(tmp_path / "b.jsonl", digit_pairs(20))), "incoming", "all/EN-NL/b.jsonl")
    run = make_run(tmp_path / "artifacts", data_uri="s3://incoming/all/", target_langs=["de", "nl"])
    nl = next(pair for pair in pairs.expand(run) if pair.target_lang == "nl")
    config.save(nl)
    with pytest.raises(pull.NoDataError, match=r"holds \['EN-NL'\]"):
        pull.run(nl)
