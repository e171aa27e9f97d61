"""Read and write run artifacts on a local disk or on S3 through one set of functions.

A URI is either a local path or `s3://bucket/key`. Writes are atomic: a temp file renamed into place
locally, a single PUT on S3, so a reader never sees half a file and a retried step can trust what exists.
State that several runs update (`update_json`) is changed by compare-and-swap: a conditional PUT on the object's
ETag on S3, a file lock and an atomic rename locally. `join` refuses parts that could leave the base ('..',
absolute paths), so no name built from data can place a file elsewhere.

boto3 is imported on first S3 use, not at the top: DAG files import this module through the run config, and
parsing them must stay fast.

S3 goes through boto3 with its standard configuration, so `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`)
points the same code at MinIO, moto or real S3, and credentials come from the usual chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any, BinaryIO, Callable, Iterator


@dataclass(frozen=True)
class StoredObject:
    uri: str
    relpath: str  # relative to the listed prefix, '/'-separated
    size: int
    s3_etag: str | None = None  # S3's ETag; None for a local file
    link: bool = False  # a local symbolic link (pull refuses them: a link can point outside the data folder)
    version: str | None = None  # an S3 VersionId when an older version than the current one is meant

    @functools.cached_property
    def etag(self) -> str:
        """S3's ETag; for a local file a digest of its content, read when first asked for (a listing reads no
        file: the files pull ignores, and the model files under a run folder, are never read for it)."""
        if self.s3_etag is not None:
            return self.s3_etag
        if self.link:
            return ""
        with open(self.uri, "rb") as fh:
            return _digest(fh)

    @property
    def hidden(self) -> bool:
        return any(part.startswith(".") for part in self.relpath.split("/"))


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(base: str, *parts: str) -> str:
    for part in parts:
        if part.startswith("/") or any(segment in (".", "..") for segment in part.split("/")):
            raise ValueError(f"{part!r} could name a place outside {base}")
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base).joinpath(*parts))


def safe_name(text: str) -> str:
    """A path segment for run ids such as 'manual__2026-11-27T06:51:49+00:00'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri}: no bucket in S3 URI")
    return bucket, key


@functools.lru_cache(maxsize=None)
def _s3_client(endpoint_url: str | None):
    import boto3
    from botocore.config import Config

    # Adaptive retries back off on throttling and 5xx, as S3 and MinIO ask clients to do.
    config = Config(retries={"max_attempts": 8, "mode": "adaptive"})
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def s3_client():
    return _s3_client(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None)


def exists(uri: str) -> bool:
    if not is_s3(uri):
        return Path(uri).exists()
    from botocore.exceptions import ClientError

    bucket, key = _split_s3(uri)
    try:
        s3_client().head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as err:
        if _missing(err):
            return False
        raise


def read_bytes(uri: str) -> bytes:
    """The object's bytes; FileNotFoundError when it is not there, on S3 as on a disk."""
    if not is_s3(uri):
        return Path(uri).read_bytes()
    from botocore.exceptions import ClientError

    bucket, key = _split_s3(uri)
    try:
        return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if _missing(err):
            raise FileNotFoundError(f"{uri}: no such object") from None
        raise


def _missing(err) -> bool:
    return err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def read_json_or(uri: str, default: Any = None) -> Any:
    """The JSON document at `uri`, or `default` when there is none: one request on S3, not a HEAD and a GET."""
    try:
        return read_json(uri)
    except FileNotFoundError:
        return default


def read_record(uri: str) -> dict:
    """The JSON object at `uri`, or {} when there is none or what is there is no object (half-written, garbled or
    hand-edited: a list, a number): for readers that show what a run left and must not fail on one bad file."""
    try:
        record = read_json_or(uri, {})
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A new file beside `path`, open for writing, that replaces `path` whole when the block ends and is removed
    when it raises. Its name is this writer's own: two writers of one file (a retry that overlaps the attempt it
    replaces) never share a temporary file, where one could truncate the other's half-written bytes or rename them
    away. Its mode follows the umask (mkstemp's 0600 kept the local registry's index from its readers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_PART = re.compile(r"\..+\.[0-9a-f]{12}\.part")  # `replacing`'s temporary files
STALE_PART_S = 86_400  # a writer's temporary file this old was left by a killed one: no write takes a day


def _remove_stale_parts(path: Path) -> None:
    """What killed writers of `path` left (a process killed mid-write never removes its temporary file, and each
    writer's has a name of its own): a retry would otherwise add a full-size copy of a model beside it every time."""
    now = time.time()
    for left in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        with contextlib.suppress(FileNotFoundError):  # another writer removed or renamed it meanwhile
            if now - left.stat().st_mtime > STALE_PART_S:
                left.unlink()


def write_bytes(uri: str, data: bytes) -> str:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return uri
    with replacing(Path(uri)) as fh:
        fh.write(data)
    return uri


def write_text(uri: str, text: str) -> str:
    return write_bytes(uri, text.encode("utf-8"))


def write_json(uri: str, obj: Any) -> str:
    return write_text(uri, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def _encoded(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


class ConcurrentUpdateError(RuntimeError):
    """Other writers kept changing a document while this one tried to update it."""


def update_json(uri: str, change: Callable[[Any], Any], attempts: int = 20) -> Any:
    """Replace the JSON document at `uri` by `change(current)` (current is None when there is none), safely
    when several processes do it at once: no update is lost, and `change` may be called again on newer data."""
    if not is_s3(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            updated = change(read_json_or(uri))
            write_bytes(uri, _encoded(updated))
            return updated
    from botocore.exceptions import ClientError

    bucket, key = _split_s3(uri)
    for _ in range(attempts):
        try:
            got = s3_client().get_object(Bucket=bucket, Key=key)
            current, condition = json.loads(got["Body"].read()), {"IfMatch": got["ETag"]}
        except ClientError as err:
            if not _missing(err):
                raise
            current, condition = None, {"IfNoneMatch": "*"}
        updated = change(current)
        try:
            s3_client().put_object(Bucket=bucket, Key=key, Body=_encoded(updated), **condition)
            return updated
        except ClientError as err:  # another writer got there first: read theirs and apply the change again
            if err.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
    raise ConcurrentUpdateError(f"{uri} kept changing during {attempts} attempts to update it")


def list_objects(prefix: str, hidden: bool = False) -> list[StoredObject]:
    """Every file under a folder or S3 prefix, sorted by relative path. Hidden ones (a segment starting with
    '.': temp files) are left out unless `hidden`; local symbolic links are listed, flagged `link`."""
    if is_s3(prefix):
        bucket, key_prefix = _split_s3(prefix)
        if key_prefix and not key_prefix.endswith("/"):
            key_prefix += "/"
        found = []
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(key_prefix):]
                if rel and not rel.endswith("/"):
                    found.append(StoredObject(f"s3://{bucket}/{obj['Key']}", rel, obj["Size"],
                                              obj["ETag"].strip('"')))
    else:
        root = Path(prefix)
        if not root.is_dir():
            raise FileNotFoundError(f"{prefix}: no such folder")
        found = [_local_object(path, path.relative_to(root).as_posix()) for path in root.rglob("*")
                 if path.is_symlink() or path.is_file()]
    return sorted((o for o in found if hidden or not o.hidden), key=lambda o: o.relpath)


def list_folders(prefix: str) -> list[str]:
    """The names of the folders (S3: common prefixes) right below a folder or prefix; [] when there is none."""
    if not is_s3(prefix):
        root = Path(prefix)
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    bucket, key_prefix = _split_s3(prefix)
    key_prefix = key_prefix.rstrip("/") + "/" if key_prefix.strip("/") else ""
    found = []
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix,
                                                                     Delimiter="/"):
        found += [common["Prefix"][len(key_prefix):].rstrip("/") for common in page.get("CommonPrefixes", [])]
    return sorted(found)


def stat(uri: str, version: str | None = None) -> StoredObject:
    """One object's size and ETag (a local file's fingerprint), of its current version or of S3 VersionId
    `version`; FileNotFoundError when it is not there."""
    if is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = _split_s3(uri)
        try:
            head = s3_client().head_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
        except ClientError as err:
            if _missing(err) or err.response.get("Error", {}).get("Code") in ("400", "InvalidArgument"):
                raise FileNotFoundError(f"{uri}: no such object" + (f" version {version}" if version else "")) \
                    from None
            raise
        return StoredObject(uri, key.rsplit("/", 1)[-1], head["ContentLength"], head["ETag"].strip('"'),
                            version=version)
    if version:
        raise FileNotFoundError(f"{uri}: a local file has no versions")
    path = Path(uri)
    if not path.is_file():
        raise FileNotFoundError(f"{uri}: no such file")
    obj = _local_object(path, path.name)
    obj.etag  # one file asked for by name: its digest is read now, as of this call
    return obj


def _local_object(path: Path, relpath: str) -> StoredObject:
    if path.is_symlink():
        return StoredObject(str(path), relpath, 0, link=True)
    return StoredObject(str(path), relpath, path.stat().st_size)


def _digest(fh, copy_to=None) -> str:
    """A local file's ETag: the content decides, as on S3 (a file rewritten with the same size and time is
    still new). With `copy_to`, the bytes read are also written there."""
    digest = hashlib.blake2b()
    while chunk := fh.read(1 << 20):
        digest.update(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return digest.hexdigest()[:32]


def copy_regular_file(source: Path, target: Path) -> str:
    """Copy a local file that must still be a regular file, atomically, and return the digest of the bytes
    copied: the ETag of what was really taken. A file swapped for a symbolic link since it was listed is
    refused, not followed; one rewritten since gets the ETag of its new content."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        if os.path.islink(source):
            raise ValueError(f"{source}: became a symbolic link after it was listed; only regular files are "
                             "pulled") from None
        raise err
    with os.fdopen(fd, "rb") as fh:
        if not S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError(f"{source}: not a regular file")
        with replacing(target) as out:
            digest = _digest(fh, out)
    return digest


def version_with_etag(uri: str, etag: str) -> str | None:
    """The VersionId of the newest version of S3 object `uri` whose ETag is `etag`, or None (no such version,
    a bucket without versioning, or a local file)."""
    if not is_s3(uri):
        return None
    bucket, key = _split_s3(uri)
    for page in s3_client().get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for version in page.get("Versions", []):  # newest first
            if version["Key"] == key and version["ETag"].strip('"') == etag and version["VersionId"] != "null":
                return version["VersionId"]
    return None


def download(uri: str, local_path: Path, version: str | None = None) -> Path:
    """Copy the object to `local_path`; FileNotFoundError when it is not there, on S3 as on a disk."""
    download_object(uri, local_path, version)
    return local_path


def download_object(uri: str, local_path: Path, version: str | None = None) -> StoredObject:
    """Copy the object to `local_path` and say what was copied: the ETag and size of the bytes written, not of an
    earlier listing (an object rewritten since is taken, and described, as it is now). FileNotFoundError when it is
    not there, on S3 as on a disk."""
    local_path.parent.mkdir(parents=True, exist_ok=True)
    if not is_s3(uri):
        shutil.copyfile(uri, local_path)
        return _local_object(local_path, Path(uri).name)
    # boto3's classic transfer manager (not CRT's): its future tells the ETag of what it downloaded.
    from boto3.s3.transfer import TransferConfig, TransferManager
    from botocore.exceptions import ClientError

    bucket, key = _split_s3(uri)
    tmp = local_path.with_name(f".{local_path.name}.{secrets.token_hex(6)}.part")
    try:
        # The transfer's HEAD gives the ETag that every GET of it is conditional on (IfMatch): what lands is that.
        with TransferManager(s3_client(), TransferConfig()) as transfers:
            future = transfers.download(bucket, key, str(tmp), {"VersionId": version} if version else None)
            future.result()
        os.replace(tmp, local_path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, ClientError) and _missing(err):
            raise FileNotFoundError(f"{uri}: no such object") from None
        raise
    return StoredObject(uri, key.rsplit("/", 1)[-1], future.meta.size, future.meta.etag.strip('"'), version=version)


def upload_file(local_path: Path, uri: str) -> str:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        s3_client().upload_file(str(local_path), bucket, key)
        return uri
    if Path(uri).resolve() != Path(local_path).resolve():
        with open(local_path, "rb") as source, replacing(Path(uri)) as target:
            shutil.copyfileobj(source, target, 1 << 20)
    return uri


def copy(source_uri: str, target_uri: str) -> str:
    """Copy one file or object; S3 to S3 stays on the server (a managed copy, multipart past 5 GB)."""
    if is_s3(source_uri) and is_s3(target_uri):
        (bucket, key), (target_bucket, target_key) = _split_s3(source_uri), _split_s3(target_uri)
        s3_client().copy({"Bucket": bucket, "Key": key}, target_bucket, target_key)
        return target_uri
    with tempfile.TemporaryDirectory() as scratch:
        return upload_file(local_file_for(source_uri, Path(scratch) / "copy"), target_uri)


def delete(uri: str) -> None:
    """Remove one file or object; nothing happens when it is not there."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        s3_client().delete_object(Bucket=bucket, Key=key)
    else:
        Path(uri).unlink(missing_ok=True)


def _files_under(local_dir: Path) -> Iterator[Path]:
    """The files below `local_dir`, less the temporary files of writes that never finished (`replacing`)."""
    return (p for p in local_dir.rglob("*") if p.is_file() and not _PART.fullmatch(p.name))


def upload_tree(local_dir: Path, uri: str, last: str | None = None) -> str:
    """Upload every file below `local_dir`; the file named `last` goes up after all others (a done-marker)."""
    files = sorted(_files_under(local_dir), key=lambda p: (p.name == last, p.as_posix()))
    for path in files:
        upload_file(path, join(uri, path.relative_to(local_dir).as_posix()))
    return uri


def local_path(local_dir: Path, relpath: str) -> Path:
    """Where the object listed as `relpath` goes below `local_dir`. An S3 key is data: `prefix//etc/x` lists as
    `/etc/x`, which `local_dir / relpath` would make an absolute path anywhere on the machine; such a key (an
    empty, '.' or '..' segment) is refused, naming it."""
    if any(segment in ("", ".", "..") for segment in relpath.split("/")):
        raise ValueError(f"{relpath!r}: an object key with an empty, '.' or '..' segment cannot name a file "
                         f"below {local_dir}")
    return local_dir / relpath


def download_tree(uri: str, local_dir: Path) -> Path:
    for obj in list_objects(uri):
        download(obj.uri, local_path(local_dir, obj.relpath))
    return local_dir


def local_file_for(uri: str, scratch_path: Path) -> Path:
    """A local path holding the file at `uri`: the file itself, or a download of the S3 object."""
    return download(uri, scratch_path) if is_s3(uri) else Path(uri)


def local_dir_for(uri: str, scratch: Path) -> Path:
    """A local folder holding the contents of `uri`: the folder itself, or a download of an S3 prefix."""
    if not is_s3(uri):
        return Path(uri)
    return download_tree(uri, scratch)
