"""Object keys are data, never paths: hostile or careless keys in a real S3 API (moto's server) cannot place a
file outside the run's raw/ folder, overwrite one another, crash pull, or be consumed without being read."""

from __future__ import annotations

import pytest

from support.corpora import digit_pairs, write_jsonl
from support.runs import make_run
from tasks import layout
from tasks.data import consumed, pull, validate
from tasks.io import storage

GOOD = {
    "in/c.jsonl": 20,
    "in/x.jsonl": 20,
    "in/x.jsonl/y.jsonl": 20,  # a file and a folder of the same name
    "in/" + "a" * 300 + ".jsonl": 20,  # longer than a file name may be
    "in/week 2/ü.jsonl.gz": 0,  # gzip-compressed: read decompressed
}
HOSTILE = {  # key → why it is ignored (a part of the reason)
    "in/../config.json": "'..' segment",
    "in/../gate.jsonl": "'..' segment",
    "in/../../../x.jsonl": "'..' segment",
    "in//abs/path/x.jsonl": "empty segment",
    "in/./c.jsonl": "'..' segment",  # '.' and '..' segments are refused alike
    "in/sub/../c.jsonl": "'..' segment",
    "in/.hidden.jsonl": "hidden name",
    "in/tab\x01name.jsonl": "control character",
    "in/notes.txt": "not a data file",
}


@pytest.fixture
def hostile_bucket(s3, tmp_path):
    import gzip

    s3.create_bucket(Bucket="incoming")
    s3.create_bucket(Bucket="artifacts")
    for n, key in enumerate([*GOOD, *HOSTILE]):
        path = write_jsonl(tmp_path / f"{n}.jsonl", digit_pairs(20, seed=n))
        body = gzip.compress(path.read_bytes()) if key.endswith(".gz") else path.read_bytes()
        s3.put_object(Bucket="incoming", Key=key, Body=body)
    return "s3://incoming/in/"


def _everything(prefix: str) -> set[str]:
    return {o.relpath for o in storage.list_objects(prefix, hidden=True)}


def test_hostile_keys_are_ignored_with_their_reason_and_nothing_lands_outside_raw(hostile_bucket):
    cfg = make_run("s3://artifacts/runs", run_id="run-1", data_uri=hostile_bucket, min_clean_pairs=1)
    before = _everything("s3://artifacts/runs/")
    pull.run(cfg)
    manifest = storage.read_json(cfg.uri(layout.PULL_MANIFEST))
    assert {o["key"] for o in manifest["objects"]} == {k[len("in/"):] for k in GOOD}
    ignored = {i["key"]: i["reason"] for i in manifest["ignored"]}
    assert set(ignored) == {k[len("in/"):] for k in HOSTILE}
    for key, why in HOSTILE.items():
        assert why in ignored[key[len("in/"):]], (key, ignored[key[len("in/"):]])
    # Only raw/ files (flat, bounded names) and the manifest were added; config.json is the one prepare wrote.
    added = _everything("s3://artifacts/runs/") - before
    run_prefix = cfg.run_dir[len("s3://artifacts/runs/"):] + "/"
    assert all(a.startswith(run_prefix) for a in added)
    inside = {a[len(run_prefix):] for a in added}
    assert inside - {layout.PULL_MANIFEST} == {f"{layout.RAW}/{o['local']}" for o in manifest["objects"]}
    assert all("/" not in o["local"] and len(o["local"]) <= 100 for o in manifest["objects"])
    assert storage.read_json(cfg.uri(layout.CONFIG))["hub_repo_id"] == cfg.hub_repo_id
    assert not storage.exists(cfg.uri(layout.GATE))


def test_what_was_pulled_is_read_accounted_and_consumed_and_nothing_else(hostile_bucket):
    cfg = make_run("s3://artifacts/runs", run_id="run-1", data_uri=hostile_bucket, min_clean_pairs=1)
    pull.run(cfg)
    validate.run(cfg)
    report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    assert set(report["files"]) == {k[len("in/"):] for k in GOOD}
    assert report["files"]["week 2/ü.jsonl.gz"]["compression"] == "gzip"
    assert all(c["rows"] == 20 and c["rows"] == c["kept"] + c["rejected"] + c["deduplicated"]
               for c in report["files"].values())
    consumed.commit(cfg)
    assert set(consumed.load(cfg)) == {f"s3://incoming/{k}" for k in GOOD}  # no ignored object consumed
    again = make_run("s3://artifacts/runs", run_id="run-2", data_uri=hostile_bucket)
    assert pull.run(again)["nothing_new"]  # and the ignored ones are not "new" either


@pytest.mark.parametrize("key, problem", [
    ("a.jsonl", None),
    ("deep/folder/a.tsv", None),
    ("a.jsonl.zst", None),
    ("../a.jsonl", "'..' segment"),
    ("./a.jsonl", "'..' segment"),
    ("/a.jsonl", "empty segment"),
    ("a//b.jsonl", "empty segment"),
    (".a.jsonl", "hidden name"),
    ("x/.git/config.jsonl", "hidden name"),
    ("a\nb.jsonl", "control character"),
    ("a.exe", "not a data file"),
    ("a", "not a data file"),
])
def test_key_rules(key, problem):
    found = pull.key_problem(key)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize("key", ["a.jsonl", "x" * 500 + ".tsv.gz", "ü é/../ ; rm -rf .jsonl", "a/b/c.jsonl"])
def test_raw_names_are_flat_bounded_and_distinct(key):
    name = pull.raw_name(f"s3://b/{key}", key)
    assert "/" not in name and not name.startswith(".") and len(name) <= 100
    assert name != pull.raw_name(f"s3://b/other/{key}", key)  # same base name elsewhere: another name
    assert storage.join("/runs/r/raw", name).startswith("/runs/r/raw/")


def test_join_refuses_parts_that_leave_the_base():
    for part in ("../x", "/etc/passwd", "a/../../b", "./a"):
        with pytest.raises(ValueError, match="outside"):
            storage.join("s3://artifacts/runs/r", part)
        with pytest.raises(ValueError, match="outside"):
            storage.join("/runs/r", part)
