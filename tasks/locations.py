"""Which places a run may name: the trust boundary between the people who trigger runs and the workers.

A trigger user names places in Params: data_uri, data_snapshot, general_eval_uri, replay_data_uri, registry_uri
and (when it is not a Hub id) base_model. Each must be

- an S3 location with a valid bucket, `s3://bucket/key...`, or
- an absolute local path under one of the roots the deployment lists in `MT_LOCAL_DATA_ROOTS`
  (separated by os.pathsep); with none listed, no local path is allowed,

and never a relative path, a `.` or `..` segment, an empty segment (`a//b`), a control character or another
scheme (`file://`, `http://`). A local path is compared after resolving symbolic links, so a link inside a root
cannot lead out of it. The same rules are a regular expression in the Params' JSON schema, so the trigger form
and the REST API refuse a bad place before a run exists, and they are checked again here when a run's config
is built on a worker.

A place must also keep apart from the artifact store (`MT_ARTIFACT_ROOT`): neither inside it, where every
pipeline's runs, frozen test sets and cleaned copies live (a run could train on another pipeline's test set),
nor around it (a pull would list the store as data). That is checked when the run's config is built, where the
store is known (`overlap`).
"""

from __future__ import annotations

import os
import re
from typing import Mapping

from huggingface_hub.utils import HFValidationError, validate_repo_id

ROOTS_ENV = "MT_LOCAL_DATA_ROOTS"
_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"  # S3's naming rules
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _listed_roots(env: Mapping[str, str]) -> list[str]:
    """The roots as listed; relative entries are ignored (they would depend on the worker's cwd)."""
    return [r.strip() for r in env.get(ROOTS_ENV, "").split(os.pathsep) if os.path.isabs(r.strip())]


def local_roots(env: Mapping[str, str] = os.environ) -> list[str]:
    """The deployment's local roots, with symbolic links resolved."""
    return [os.path.realpath(r) for r in _listed_roots(env)]


def _segments_problem(path: str) -> str | None:
    parts = path.split("/")
    if any(p in (".", "..") for p in parts):
        return "it has a '.' or '..' segment, which could name a place outside the one meant"
    if any(p == "" for p in parts[:-1]):
        return "it has an empty segment ('//')"
    return None


def problem(value: str, env: Mapping[str, str] = os.environ) -> str | None:
    """Why `value` is not a place a run may name, or None when it is."""
    if _CONTROL.search(value):
        return "it contains a control character"
    if value.startswith("s3://"):
        bucket, _, key = value[len("s3://"):].partition("/")
        if not re.fullmatch(_BUCKET, bucket):
            return f"{bucket!r} is not an S3 bucket name"
        return _segments_problem(key) if key else None
    if "://" in value or value.startswith("file:"):
        return "only s3://bucket/... and absolute local paths are allowed"
    if not os.path.isabs(value):
        return "a local path must be absolute"
    if found := _segments_problem(value.rstrip("/")[1:]):
        return found
    roots = local_roots(env)
    if not roots:
        return f"local paths are not allowed here: the deployment lists no local roots in {ROOTS_ENV}"
    resolved = os.path.realpath(value)
    if not any(resolved == root or resolved.startswith(root.rstrip("/") + "/") for root in roots):
        return f"it is outside the local roots the deployment allows ({ROOTS_ENV}: {', '.join(roots)})"
    return None


def check(value: str, env: Mapping[str, str] = os.environ) -> str:
    """`value` itself, or ValueError saying why it may not be named."""
    if (found := problem(value, env)) is not None:
        raise ValueError(f"{value!r} is not allowed: {found}")
    return value


def is_hub_model(value: str) -> bool:
    """Whether a model setting names a Hub model (else a place: a local folder or the store)."""
    return not (value.startswith(("/", "s3://", ".")) or "://" in value or "\\" in value)


def check_model(value: str, env: Mapping[str, str] = os.environ) -> str:
    """A Hub model id (namespace/name or name), or a local model folder under the allowed roots."""
    if not is_hub_model(value):
        return check(value, env)
    try:
        validate_repo_id(value)
    except HFValidationError as err:
        raise ValueError(f"{value!r} is neither a Hub model id nor an absolute local path: {err}") from None
    return value


def check_repo_id(value: str) -> str:
    """A Hub repository id `namespace/name` that the Hub accepts: never '..', a leading '.' or '-', or '--'."""
    try:
        validate_repo_id(value)
    except HFValidationError as err:
        raise ValueError(f"{value!r} is not a Hub repository id: {err}") from None
    if value.count("/") != 1:
        raise ValueError(f"{value!r} is not a Hub repository id: it must be namespace/name")
    return value


# A Hub id as validate_repo_id takes it: [namespace/]name of word characters, '.' and '-', neither starting nor
# ending with '.' or '-', without '..' or '--'.
_HUB_PART = r"[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?"
HUB_REPO_PATTERN = rf"^(?!.*(?:\.\.|--)){_HUB_PART}/{_HUB_PART}$"


def pattern(env: Mapping[str, str] = os.environ) -> str:
    """The JSON-schema regular expression of an allowed place (Python's and ECMAScript's syntax alike)."""
    roots = dict.fromkeys(_listed_roots(env) + local_roots(env))  # as written, and resolved
    local = "|".join(re.escape(root.rstrip("/")) + "(?:/.*)?" for root in roots)
    bad = r"(?!.*[\x00-\x1f\x7f])(?!.*/\.\.?(?:/|$))(?!.*[^:/]//)"
    return f"^{bad}(?:s3://{_BUCKET}(?:/.*)?" + (f"|{local}" if local else "") + ")$"


def place_words(env: Mapping[str, str] = os.environ) -> str:
    """What `pattern` allows, in words that read after "... is not a": the form and the REST API answer with them."""
    roots = local_roots(env)
    local = (f"an absolute path under {ROOTS_ENV} ({', '.join(roots)})" if roots
             else f"no local path ({ROOTS_ENV} lists no local roots)")
    return (f"place this deployment allows: s3://bucket/... or {local}, without '.' or '..' segments, '//' or "
            "control characters")


HUB_REPO_WORDS = "Hub repository id namespace/name (letters, digits, '_', '.' and '-'; no '..' or '--')"


def model_words(env: Mapping[str, str] = os.environ) -> str:
    return f"Hub model id ([namespace/]name, no '..' or '--') or a {place_words(env)}"


def model_pattern(env: Mapping[str, str] = os.environ) -> str:
    """A Hub model id, or an allowed local place."""
    return rf"^(?:(?!.*(?:\.\.|--)){_HUB_PART}(?:/{_HUB_PART})?$)|(?:{pattern(env)})"


def _as_prefix(place: str) -> str:
    """A place as a comparable prefix: S3 as written, a local path resolved (links followed), ending in '/'."""
    text = place if place.startswith("s3://") else os.path.realpath(place)
    return text.rstrip("/") + "/"


def nested(place: str, other: str) -> str | None:
    """"inside" when `place` lies in `other` (or is it), "contains" when it holds `other`, else None."""
    inner, outer = _as_prefix(place), _as_prefix(other)
    return "inside" if inner.startswith(outer) else "contains" if outer.startswith(inner) else None


def overlap(place: str, store: str) -> str | None:
    """Why `place` cannot be used beside the artifact store `store`, or None when they keep apart."""
    how = nested(place, store)
    if how == "inside":
        return ("it lies inside the artifact store (MT_ARTIFACT_ROOT " + store + "), where every pipeline's runs, "
                "frozen test sets and cleaned copies are kept: name a place outside it")
    if how == "contains":
        return ("it contains the artifact store (MT_ARTIFACT_ROOT " + store + "): pulling from it would read the "
                "pipelines' own files as data; name a place that does not hold the store")
    return None


def registry_overlap(registry: str, name: str, data: str) -> str | None:
    """Why a local registry at `registry` cannot be used beside `name`'s place `data`, read as data, or None."""
    how = nested(registry, data)
    if how is None:
        return None
    where = "lies inside" if how == "inside" else "contains"
    return (f"it {where} {name} {data}: the releases published there (config.json, index.json, eval/*.json) would "
            "be pulled as data, and every later run reading it would fail on them; name a place apart")
