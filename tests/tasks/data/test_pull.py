"""Incremental pulls: only what no successful run has consumed, from moto's S3 server or a local folder."""

import pytest

from support.corpora import digit_pairs, write_jsonl, write_tsv
from support.runs import make_run
from tasks import layout
from tasks.data import pull
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


def _raw(cfg):
    return [o.relpath for o in storage.list_objects(cfg.uri(layout.RAW))]


def test_incremental_pulls_across_runs_on_s3(bucket, s3, tmp_path):
    # Week 1: everything is new.
    first = _run("run-1", bucket)
    summary = pull.run(first)
    assert (summary["files"], summary["nothing_new"], summary["mode"]) == (2, False, "incremental")
    assert _raw(first) == ["a.jsonl", "week1/b.tsv"]
    manifest = storage.read_json(first.uri(layout.PULL_MANIFEST))
    assert manifest["ignored"] == ["README.txt"]
    assert pull.commit_consumed(first) == {"committed": 2, "consumed_total": 2}

    # Week 2: nothing new. The run ends early and says why.
    second = _run("run-2", bucket)
    summary = pull.run(second)
    assert summary["nothing_new"] is True and summary["files"] == 0
    assert "nothing new under s3://incoming/en-de/: all 2 data object(s) were consumed" in summary["message"]
    assert "force_full_retrain" in summary["message"]
    assert _raw(second) == []
    assert pull.commit_consumed(second) == {"committed": 0, "reason": "nothing new was pulled"}

    # Week 3: one new object and one rewritten under the same key. The run fails after pulling.
    s3.upload_file(str(write_jsonl(tmp_path / "c.jsonl", digit_pairs(5, seed=4))), "incoming", "en-de/c.jsonl")
    s3.upload_file(str(write_tsv(tmp_path / "b2.tsv", digit_pairs(7, seed=5))), "incoming", "en-de/week1/b.tsv")
    failed = _run("run-3", bucket)
    assert pull.run(failed)["files"] == 2
    # ... and commit_consumed is never called for a failed run.

    # Week 3, again: the failed run consumed nothing, so the same two objects are new.
    retry = _run("run-4", bucket)
    summary = pull.run(retry)
    assert summary["files"] == 2
    assert summary["message"] == "1 new and 1 changed object(s) under s3://incoming/en-de/; 1 already consumed"
    assert _raw(retry) == ["c.jsonl", "week1/b.tsv"]
    assert storage.read_json(retry.uri(layout.PULL_MANIFEST))["changed"] == ["week1/b.tsv"]
    assert storage.read_text(retry.uri(layout.RAW, "week1/b.tsv")).count("\n") == 8  # the rewritten content
    assert pull.commit_consumed(retry)["consumed_total"] == 3

    # A re-run of the same DAG run is idempotent: the same answer, nothing pulled again.
    assert pull.run(retry) == summary
    assert pull.commit_consumed(retry)["consumed_total"] == 3
    assert pull.run(_run("run-5", bucket))["nothing_new"] is True

    consumed = pull.load_consumed(retry)
    assert consumed["s3://incoming/en-de/week1/b.tsv"]["consumed_by"] == "run-4"
    assert consumed["s3://incoming/en-de/a.jsonl"]["consumed_by"] == "run-1"


def test_a_local_folder_is_pulled_incrementally_too(tmp_path):
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", digit_pairs(5, seed=1))
    first = make_run(tmp_path / "artifacts", run_id="run-1", data_uri=str(incoming))
    assert pull.run(first)["files"] == 1
    pull.commit_consumed(first)
    assert pull.run(make_run(tmp_path / "artifacts", run_id="run-2", data_uri=str(incoming)))["nothing_new"]
    write_jsonl(incoming / "a.jsonl", digit_pairs(6, seed=1))  # rewritten: another size, another mtime
    third = make_run(tmp_path / "artifacts", run_id="run-3", data_uri=str(incoming))
    assert pull.run(third)["files"] == 1
    assert storage.read_json(third.uri(layout.PULL_MANIFEST))["changed"] == ["a.jsonl"]


def test_force_full_retrain_pulls_what_was_consumed(bucket):
    first = _run("run-1", bucket)
    pull.run(first)
    pull.commit_consumed(first)
    full = _run("run-2", bucket, force_full_retrain=True)
    summary = pull.run(full)
    assert (summary["files"], summary["mode"], summary["nothing_new"]) == (2, "full", False)
    assert "force_full_retrain" in summary["message"]


def test_a_snapshot_pulls_exactly_the_listed_objects_and_consumes_them(bucket, s3, tmp_path):
    first = _run("run-1", bucket)
    pull.run(first)
    pull.commit_consumed(first)
    old = [o["uri"] for o in storage.read_json(first.uri(layout.PULL_MANIFEST))["objects"]]
    s3.upload_file(str(write_jsonl(tmp_path / "a2.jsonl", digit_pairs(3, seed=9))), "incoming",
                   "en-de/week2/a.jsonl")  # same name, elsewhere under the data URI

    replay = _run("replay", bucket, data_snapshot=old + ["s3://incoming/en-de/week2/a.jsonl"])
    summary = pull.run(replay)
    assert (summary["files"], summary["mode"]) == (3, "snapshot")
    raw = _raw(replay)
    assert "incoming/en-de/a.jsonl" in raw and "incoming/en-de/week1/b.tsv" in raw
    assert "incoming/en-de/week2/a.jsonl" in raw  # two files named a.jsonl do not collide
    assert pull.commit_consumed(replay)["committed"] == 3
    assert set(pull.load_consumed(replay)) == set(old) | {"s3://incoming/en-de/week2/a.jsonl"}


@pytest.mark.parametrize("params, message", [
    ({"data_snapshot": ["s3://incoming/en-de/gone.jsonl"]}, r"data_snapshot: s3://incoming/en-de/gone.jsonl does not exist"),
    ({"data_uri": "s3://incoming/empty/"}, r"s3://incoming/empty/: no data files found"),
])
def test_missing_data_fails_with_the_place_named(bucket, params, message):
    cfg = _run("run-1", params.pop("data_uri", bucket), **params)
    with pytest.raises(pull.NoDataError, match=message):
        pull.run(cfg)
