"""Nothing is consumed that was not read, two runs finishing at once both land, and an old run re-run cannot roll
the pipeline's state back; on S3 (moto's server, conditional writes) and on a local disk."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from support.corpora import digit_pairs, write_jsonl
from support.runs import folder_or_s3, make_run
from tasks import layout
from tasks.data import consumed, pull, validate
from tasks.io import storage


def _pulled_validated(root, data_uri, run_id, **params):
    cfg = make_run(root, run_id=run_id, data_uri=data_uri, min_clean_pairs=1, max_reject_rate=1.0, **params)
    pull.run(cfg)
    validate.run(cfg)
    return cfg


def test_local_dot_files_and_links_are_listed_as_ignored_and_never_consumed(tmp_path):
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", digit_pairs(10, seed=1))
    write_jsonl(incoming / ".b.jsonl", digit_pairs(10, seed=2))
    write_jsonl(incoming / ".cache" / "c.jsonl", digit_pairs(10, seed=3))
    (incoming / "d.jsonl").symlink_to(incoming / "a.jsonl")
    cfg = _pulled_validated(tmp_path / "runs", str(incoming), "run-1")
    ignored = {i["key"]: i["reason"] for i in storage.read_json(cfg.uri(layout.PULL_MANIFEST))["ignored"]}
    assert set(ignored) == {".b.jsonl", ".cache/c.jsonl", "d.jsonl"}
    assert "symbolic link" in ignored["d.jsonl"] and "hidden" in ignored[".b.jsonl"]
    consumed.commit(cfg)
    assert set(consumed.load(cfg)) == {str(incoming / "a.jsonl")}


def test_a_listing_reads_only_the_files_pull_takes(tmp_path, monkeypatch):
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", digit_pairs(10, seed=1))
    (incoming / "notes.txt").write_text("not data")
    (incoming / ".git" / "objects").mkdir(parents=True)
    (incoming / ".git" / "objects" / "pack").write_bytes(b"x" * 1000)
    read = []
    real = storage._digest
    opened = lambda fh: Path(os.readlink(f"/proc/self/fd/{fh.fileno()}")).name  # noqa: E731
    monkeypatch.setattr(storage, "_digest", lambda fh, *a: read.append(opened(fh)) or real(fh, *a))
    cfg = make_run(tmp_path / "runs", run_id="run-1", data_uri=str(incoming), min_clean_pairs=1)
    pull.run(cfg)
    assert read == ["a.jsonl"]  # copied and digested in one pass; the ignored files were never opened


def test_a_file_swapped_for_a_link_after_listing_is_refused_not_followed(tmp_path, monkeypatch):
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", digit_pairs(10, seed=1))
    secret = tmp_path / "secret.jsonl"
    write_jsonl(secret, [("private", "privat")])
    listed = storage.list_objects(str(incoming), hidden=True)

    def swapped(prefix, hidden=False):
        (incoming / "a.jsonl").unlink()
        (incoming / "a.jsonl").symlink_to(secret)
        return listed

    monkeypatch.setattr(storage, "list_objects", swapped)
    cfg = make_run(tmp_path / "runs", run_id="run-1", data_uri=str(incoming), min_clean_pairs=1)
    with pytest.raises(ValueError, match="a.jsonl: became a symbolic link after it was listed"):
        pull.run(cfg)
    assert not any((tmp_path / "runs").rglob("*private*")) and not storage.exists(cfg.uri(layout.PULL_MANIFEST))


def test_a_file_rewritten_while_pulled_is_recorded_as_what_was_copied(tmp_path, monkeypatch):
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", digit_pairs(10, seed=1))
    listed = storage.list_objects(str(incoming), hidden=True)
    listed_etag = listed[0].etag
    monkeypatch.setattr(storage, "list_objects", lambda prefix, hidden=False: listed)
    write_jsonl(incoming / "a.jsonl", digit_pairs(12, seed=2))  # rewritten after the listing
    cfg = make_run(tmp_path / "runs", run_id="run-1", data_uri=str(incoming), min_clean_pairs=1)
    pull.run(cfg)
    (entry,) = storage.read_json(cfg.uri(layout.PULL_MANIFEST))["objects"]
    assert entry["etag"] != listed_etag and entry["etag"] == storage.stat(str(incoming / "a.jsonl")).etag


def test_an_s3_object_rewritten_while_pulled_is_recorded_as_what_was_copied(s3, tmp_path, monkeypatch):
    """On S3 the manifest took the listing's ETag and size for the bytes of the newer version it downloaded: its
    `reproduce` pinned the listed version (on a versioned bucket a reproduction trained on other data), and the
    next run took the object for changed and retrained on it."""
    s3.create_bucket(Bucket="incoming")
    s3.create_bucket(Bucket="artifacts")
    s3.put_bucket_versioning(Bucket="incoming", VersioningConfiguration={"Status": "Enabled"})
    s3.upload_file(str(write_jsonl(tmp_path / "a.jsonl", digit_pairs(10, seed=1))), "incoming", "en-de/a.jsonl")
    listed = storage.list_objects("s3://incoming/en-de/", hidden=True)
    monkeypatch.setattr(storage, "list_objects", lambda prefix, hidden=False: listed)
    newer = write_jsonl(tmp_path / "b.jsonl", digit_pairs(12, seed=2))
    s3.upload_file(str(newer), "incoming", "en-de/a.jsonl")  # rewritten after the listing
    cfg = make_run("s3://artifacts/runs", run_id="run-1", data_uri="s3://incoming/en-de/", min_clean_pairs=1)
    pull.run(cfg)
    manifest = storage.read_json(cfg.uri(layout.PULL_MANIFEST))
    (entry,) = manifest["objects"]
    now = storage.stat("s3://incoming/en-de/a.jsonl")
    assert entry["etag"] == now.etag != listed[0].etag and entry["size"] == now.size == newer.stat().st_size
    assert storage.read_bytes(cfg.uri(layout.RAW, entry["local"])) == newer.read_bytes()
    assert manifest["reproduce"]["data_snapshot"] == [f"s3://incoming/en-de/a.jsonl#etag={now.etag}"]


def test_an_unreadable_object_is_not_consumed(tmp_path):
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", digit_pairs(10, seed=1))
    (incoming / "b.jsonl").write_bytes(b"")
    cfg = make_run(tmp_path / "runs", run_id="run-1", data_uri=str(incoming), min_clean_pairs=1)
    pull.run(cfg)
    with pytest.raises(validate.BadBatchError, match="b.jsonl: empty file"):
        validate.run(cfg)
    assert consumed.commit(cfg)["not_read"] == ["b.jsonl"]
    assert set(consumed.load(cfg)) == {str(incoming / "a.jsonl")}


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_two_runs_committing_at_once_both_land(request, tmp_path, kind, monkeypatch):
    root = folder_or_s3(request, tmp_path, kind, "artifacts", "artifacts/runs")
    incoming = tmp_path / "incoming"
    runs = []
    for n in range(4):  # four runs of one pipeline, each started by its own new object
        path = write_jsonl(incoming / f"{n}.jsonl", digit_pairs(10, seed=n))
        runs.append(_pulled_validated(root, str(incoming), f"run-{n}"))
        path.unlink()  # read and copied: the next run's pull sees only its own object
    if kind == "s3":  # make the race certain: all four read the same state before any of them writes
        everyone_read, first_try, real_update = threading.Barrier(len(runs), timeout=60), threading.local(), \
            storage.update_json

        def racing(uri, change, attempts=20):
            def change_after_all_read(current):
                if not getattr(first_try, "done", False):
                    first_try.done = True
                    everyone_read.wait()
                return change(current)
            return real_update(uri, change_after_all_read, attempts)

        monkeypatch.setattr(storage, "update_json", racing)
    threads = [threading.Thread(target=consumed.commit, args=(cfg,)) for cfg in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = consumed.load(runs[0])
    assert sorted(entry["consumed_by"] for entry in state.values()) == ["run-0", "run-1", "run-2", "run-3"]


def test_re_running_an_old_run_does_not_roll_the_state_back(tmp_path):
    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", digit_pairs(10, seed=1))
    old = _pulled_validated(tmp_path / "runs", str(incoming), "old")
    write_jsonl(incoming / "a.jsonl", digit_pairs(12, seed=1))  # rewritten: a new version
    new = _pulled_validated(tmp_path / "runs", str(incoming), "new")
    consumed.commit(new)
    outcome = consumed.commit(old)  # the old run's mark_consumed, cleared and run again
    assert outcome["newer_kept"] == [str(incoming / "a.jsonl")]
    entry = consumed.load(new)[str(incoming / "a.jsonl")]
    assert entry["consumed_by"] == "new" and entry["etag"] == storage.stat(str(incoming / "a.jsonl")).etag
