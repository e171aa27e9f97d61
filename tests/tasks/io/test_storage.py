import os

import pytest

from support.runs import folder_or_s3
from tasks.io import storage


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    return folder_or_s3(request, tmp_path, request.param, "artifacts", "store")


def test_write_read_exists_and_list(root):
    uri = storage.join(root, "a", "b.json")
    assert not storage.exists(uri)
    storage.write_json(uri, {"x": 1})
    storage.write_text(storage.join(root, "c.txt"), "hello")
    assert storage.exists(uri)
    assert storage.read_json(uri) == {"x": 1}
    listed = storage.list_objects(root)
    assert [o.relpath for o in listed] == ["a/b.json", "c.txt"]
    assert listed[1].size == 5 and listed[1].etag


def test_trees_round_trip_with_a_done_marker_last(root, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("z.bin", "done.json", "sub/a.txt"):
        (src / name).write_text(name)
    storage.upload_tree(src, storage.join(root, "tree"), last="done.json")
    back = storage.download_tree(storage.join(root, "tree"), tmp_path / "back")
    assert sorted(p.relative_to(back).as_posix() for p in back.rglob("*") if p.is_file()) == \
        ["done.json", "sub/a.txt", "z.bin"]


def test_local_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    target = tmp_path / "out.json"
    storage.write_json(str(target), {"v": 1})
    storage.write_json(str(target), {"v": 2})
    assert storage.read_json(str(target)) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_listing_a_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope: no such folder"):
        storage.list_objects(str(tmp_path / "nope"))


def test_s3_uri_without_bucket_is_rejected():
    with pytest.raises(ValueError, match="no bucket"):
        storage.read_bytes("s3:///key")


def test_stat_gives_size_and_an_etag_that_changes_with_the_content(root):
    uri = storage.join(root, "data.jsonl")
    storage.write_text(uri, "one")
    first = storage.stat(uri)
    assert (first.uri, first.size) == (uri, 3)
    storage.write_text(uri, "three")
    assert storage.stat(uri).etag != first.etag
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        storage.stat(storage.join(root, "missing.jsonl"))


def test_s3_client_retries_adaptively(s3):
    # Adaptive mode: client-side rate limiting plus backoff on throttling and 5xx, as S3 and MinIO ask.
    retries = storage.s3_client().meta.config.retries
    assert retries["mode"] == "adaptive" and retries["total_max_attempts"] == 9  # botocore counts the first try


def test_an_s3_listing_goes_past_one_page_of_a_thousand_keys(s3):
    """list_objects_v2 answers at most 1,000 keys a request: every page is read, as a folder's files all are."""
    from concurrent.futures import ThreadPoolExecutor

    s3.create_bucket(Bucket="many")
    keys = [f"en-de/week{n % 3}/part-{n:04d}.jsonl" for n in range(1005)] + ["en-de/.tmp/x.jsonl", "other/a.jsonl"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket="many", Key=key, Body=key.encode()), keys))
    listed = storage.list_objects("s3://many/en-de")
    assert [o.relpath for o in listed] == sorted(k[len("en-de/"):] for k in keys[:1005])
    assert all(o.size == len(o.uri[len("s3://many/"):]) and o.etag for o in listed)
    assert len(storage.list_objects("s3://many/en-de/", hidden=True)) == 1006
    for start in range(0, len(keys), 1000):  # the s3 fixture empties one page of a bucket
        s3.delete_objects(Bucket="many", Delete={"Objects": [{"Key": key} for key in keys[start:start + 1000]]})


@pytest.mark.parametrize("key", ["tree//{target}", "tree/sub//{target}"])
def test_a_downloaded_tree_never_writes_outside_its_folder(s3, tmp_path, key):
    # S3 lists `tree//tmp/x` as `/tmp/x` relative to the prefix: joined to a folder, that is an absolute path.
    s3.create_bucket(Bucket="store")
    target = tmp_path / "elsewhere" / "planted.py"
    s3.put_object(Bucket="store", Key=key.format(target=str(target).lstrip("/")), Body=b"planted")
    s3.put_object(Bucket="store", Key="tree/ok.bin", Body=b"ok")
    with pytest.raises(ValueError, match="cannot name a file below"):
        storage.download_tree("s3://store/tree/", tmp_path / "scratch")
    assert not target.exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "scratch" not in p.parts] == []


def test_two_writers_of_one_file_never_share_a_temporary_file(tmp_path):
    """A retry that overlaps the attempt it replaces writes the same file: with one temporary name for both, the
    second truncated the first one's half-written bytes, or renamed them away under it."""
    import threading

    target, fifo = tmp_path / "registry" / "model.safetensors", tmp_path / "slow-source"
    os.mkfifo(fifo)
    first_half, second_half = os.urandom(1 << 20), os.urandom(1 << 20)
    failures = []

    def slow_writer():
        try:
            storage.upload_file(fifo, str(target))
        except BaseException as err:  # noqa: BLE001 - the test reports it
            failures.append(err)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    with open(fifo, "wb") as feed:
        feed.write(first_half)
        feed.flush()
        (tmp_path / "retry").write_bytes(b"the retry's model")
        storage.upload_file(tmp_path / "retry", str(target))  # the other writer, whole, in the middle
        assert target.read_bytes() == b"the retry's model"
        feed.write(second_half)
    writer.join(timeout=30)
    assert not failures and target.read_bytes() == first_half + second_half  # the last writer's file, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.safetensors"]


def test_a_file_written_whole_or_not_at_all_and_readable_as_the_umask_says(tmp_path):
    target = tmp_path / "index.json"
    storage.write_text(str(target), "first")
    with pytest.raises(RuntimeError):
        with storage.replacing(target) as fh:
            fh.write(b"half")
            raise RuntimeError("killed")
    assert target.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["index.json"]
    umask = os.umask(0o022)
    os.umask(umask)
    # mkstemp's 0600 kept a local registry's index.json and release.json from the people and services reading it.
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_what_a_killed_writer_left_is_never_uploaded_and_goes_after_a_day(tmp_path):
    """A writer killed mid-write never removes its temporary file, and each writer's has a name of its own: every
    retry left another full-size copy of a model beside it, and upload_tree sent them along."""
    import time

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    old, fresh = model / ".model.safetensors.0123456789ab.part", model / ".model.safetensors.ba9876543210.part"
    for left in (old, fresh):
        left.write_bytes(b"half of the weights")
    os.utime(old, (time.time() - 2 * storage.STALE_PART_S,) * 2)
    storage.upload_tree(model, str(tmp_path / "registry"))
    assert [p.name for p in (tmp_path / "registry").iterdir()] == ["model.safetensors"]
    storage.write_bytes(str(model / "model.safetensors"), b"weights again")
    # The old one is gone; the fresh one may be another writer's, still at work.
    assert sorted(p.name for p in model.iterdir()) == [fresh.name, "model.safetensors"]
