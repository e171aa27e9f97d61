"""The cleaned copies of consumed objects, kept in a bounded number of shards in the pipeline's state area.

A shard (`shards/<name>.jsonl`) holds the cleaned copies of many objects, each a run of consecutive lines. A
consumed entry (tasks/data/consumed.py) names its shard (`cache`) and its lines (`lines`: [first, count]); an entry
written before shards has no `lines` and owns its whole file (`objects/<name>.jsonl`).

- Validate writes the run's copies (new objects, carried copies it screened again) into one file of the run
  directory, `cleaned/copies.jsonl`, and their line ranges into `cleaned/index.json` (`concatenate`).
- Commit copies that file into the state as one shard, named after the run (`adopt`): one request, whatever the
  number of objects.
- A run reads the carried copies shard by shard (`read`): one download per shard, not a request per object.
- When the corpus spans more than MAX_SHARDS files, commit merges the smallest of them, counted by the lines still
  in use (an object rewritten or screened again leaves its old lines behind), into one (`compact`), until
  MERGED_DOWN_TO are left. So a run reads at most MAX_SHARDS + 1 files however long the history, and each line
  is rewritten only when its shard is among the smallest: the cost of merging stays near the size of what is new.
- A file that holds the rows of a retracted object (consumed.json's `erase`, set by the retraction) is merged
  at the next commit like the smallest ones: the merge copies only the lines entries still use, so the retracted
  rows leave the state when the old file is deleted, RETIRED_DAYS later.
- A merged shard is not deleted at once: a run that pulled before the merge may still read it. It is recorded
  as retired and deleted by the first commit RETIRED_DAYS later that finds it still unused (`collect`). So is a
  file that a commit leaves unnamed (every object in it consumed again in a newer version, or screened again
  under new rules: `retire_unused`), which no merge would pick.

Every change to consumed.json goes through compare-and-swap, and a merge moves an entry only if it still names
the lines that were merged: a run committing meanwhile never loses its update to a merge, nor a merge to it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tasks import layout
from tasks.config import RunConfig
from tasks.io import storage

log = logging.getLogger(__name__)

SHARDS = "shards"
OBJECTS = "objects"  # one file per object, as copies were kept before shards
MAX_SHARDS = 16
MERGED_DOWN_TO = 8
RETIRED_DAYS = 7
ERASE = "erase"  # in consumed.json: file → when it was found to hold rows of a retracted object
ERASED = "erased"  # in a retracted object's `dropped` entry: when the file that held its rows was merged away


class MissingCopyError(FileNotFoundError):
    """A shard that consumed entries name is not in the state area (deleted by hand, lost with a bucket)."""


def place(entry: dict) -> tuple[str, tuple[int, int] | None]:
    """Where an entry's rows are: (file, (first line, count)), or (file, None) for a whole-file copy."""
    lines = entry.get("lines")
    return entry.get("cache"), (tuple(lines) if lines is not None else None)  # no cache: consumed before copies


def _digest(*parts) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()


def run_shard(config: RunConfig) -> str:
    """The name of the shard a run's commit adds to the state."""
    return f"{SHARDS}/{_digest(config.run_id)}.jsonl"


def concatenate(copies: dict[str, Path], out: Path) -> dict[str, list[int]]:
    """Write the copies, one after another, into `out`; returns key → [first line, count]. A copy that was never
    written (an object without a kept row) gets an empty range."""
    index, line = {}, 0
    with out.open("w", encoding="utf-8") as shard:
        for key, path in copies.items():
            count = 0
            if path.exists():
                with path.open(encoding="utf-8") as copy:
                    for row in copy:
                        shard.write(row)
                        count += 1
            index[key], line = [line, count], line + count
    return index


def adopt(config: RunConfig) -> str:
    """Make the run's cleaned copies (validate's cleaned/copies.jsonl) a shard of the pipeline's; returns its name.
    Done before consumed.json names it, so a reader never finds a name without its file."""
    source, name = config.uri(layout.CLEANED_COPIES), run_shard(config)
    if storage.exists(source):
        storage.copy(source, config.state_uri(name))
    elif not storage.exists(config.state_uri(name)):
        raise FileNotFoundError(f"{source}: the cleaned copies that validate wrote are missing, so nothing can be "
                                "marked consumed; run validate again for this run")
    return name


def read(config: RunConfig, entries: dict[str, dict], scratch: Path) -> dict[str, Path]:
    """Each entry's rows (name → entry) as a local file, each shard downloaded once. MissingCopyError names the
    objects whose shard is gone."""
    by_file: dict[str, list[tuple[str, tuple | None]]] = {}
    for name, entry in entries.items():
        cache, lines = place(entry)
        by_file.setdefault(cache, []).append((name, lines))
    found = {}
    for number, (cache, parts) in enumerate(sorted(by_file.items())):
        local = _fetch(config, cache, scratch / SHARDS / f"{number}.jsonl", [name for name, _ in parts])
        found.update(_split(local, parts, scratch / "copies" / str(number)))
        if local.is_relative_to(scratch):
            local.unlink()
    return found


def _fetch(config: RunConfig, cache: str, local: Path, names: list[str]) -> Path:
    uri = config.state_uri(cache)
    try:
        path = storage.local_file_for(uri, local)
        if not path.is_file():
            raise FileNotFoundError(uri)
        return path
    except FileNotFoundError:
        listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise MissingCopyError(f"{uri}: the cleaned copies of {listed} are gone from the pipeline's state") from None


def _split(shard: Path, parts: list[tuple[str, tuple | None]], folder: Path) -> dict[str, Path]:
    """Cut a shard into one file per part, in one pass over it."""
    folder.mkdir(parents=True, exist_ok=True)
    found, at = {}, 0
    with shard.open(encoding="utf-8") as rows:
        for number, (name, lines) in enumerate(sorted(parts, key=lambda p: p[1] or (0, 0))):
            first, count = lines or (0, None)
            if first < at:
                raise ValueError(f"{shard}: the line ranges of its objects overlap at {name}")
            for _ in itertools.islice(rows, first - at):
                pass
            found[name] = folder / f"{number}.jsonl"
            written = 0
            with found[name].open("w", encoding="utf-8") as copy:
                for row in itertools.islice(rows, count):
                    copy.write(row)
                    written += 1
            if count is not None and written != count:
                raise ValueError(f"{shard}: {name} should have {count} lines from line {first}, found {written}: "
                                 "the shard is truncated")
            at = first + written
    return found


def compact(config: RunConfig, state: dict | None = None) -> dict:
    """Merge the smallest shards when the corpus spans more than MAX_SHARDS files; delete retired shards nobody
    uses any more. `state` is consumed.json as the caller just wrote it (read when not given); the merge itself
    applies by compare-and-swap. Returns what was done."""
    if state is None:
        state = storage.read_json_or(config.state_uri(layout.CONSUMED)) or {"objects": {}}
    live = _live_lines(state["objects"])
    done = {"shards": len(live)}
    # Retracted rows, whatever the count: also those of a retraction recorded before `erase` was (no file named).
    chosen = set(state.get(ERASE, {})) | {entry["cache"] for entry in _retracted(state.get("dropped", {})).values()
                                          if ERASED not in entry}
    if len(live) > MAX_SHARDS:
        chosen |= set(sorted(live, key=lambda cache: (live[cache], cache))[:len(live) - MERGED_DOWN_TO + 1])
    if chosen:
        done |= _merge(config, state["objects"], chosen)
    # Shards this merge retired are not due for a week: the state from before it names every shard that is.
    done["deleted"] = collect(config, state=state)
    return done


def _retracted(dropped: dict[str, dict]) -> dict[str, dict]:
    """The dropped entries of retracted objects whose rows were in a file of the state."""
    return {uri: entry for uri, entry in dropped.items()
            if entry.get("cache") and str(entry.get("reason", "")).startswith("retracted (")}


def _live_lines(objects: dict[str, dict]) -> dict[str, int]:
    """file → the lines consumed entries still use in it (a whole-file copy counts its kept rows)."""
    live: dict[str, int] = {}
    for entry in objects.values():
        if entry.get("cache"):
            cache, lines = place(entry)
            live[cache] = live.get(cache, 0) + (lines[1] if lines else entry.get("kept", 0))
    return live


def _merge(config: RunConfig, objects: dict[str, dict], chosen: set[str]) -> dict:
    moving = {uri: entry for uri, entry in sorted(objects.items()) if entry.get("cache") in chosen}
    name = f"{SHARDS}/m-{_digest(config.run_id, sorted((u, place(e)) for u, e in moving.items()))}.jsonl"
    with tempfile.TemporaryDirectory() as scratch:
        copies = read(config, moving, Path(scratch))
        index = concatenate({uri: copies[uri] for uri in moving}, Path(scratch) / "merged.jsonl")
        storage.upload_file(Path(scratch) / "merged.jsonl", config.state_uri(name))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    moved = []

    def change(current: dict) -> dict:
        objects, retired = dict(current["objects"]), dict(current.get("retired", {}))
        erase = {cache: at for cache, at in current.get(ERASE, {}).items() if cache not in chosen}
        moved.clear()
        for uri, entry in moving.items():
            if uri in objects and place(objects[uri]) == place(entry):  # not replaced meanwhile
                objects[uri] = {**objects[uri], "cache": name, "lines": index[uri]}
                moved.append(uri)
        still_used = {o.get("cache") for o in objects.values()}
        # The merged-away shards; and the new one, when another merge of the same shards got there first.
        retired.update({cache: now for cache in chosen | {name} if cache not in still_used})
        if len(moved) < len(moving) and name in still_used:  # rows no entry names (a retraction meanwhile?)
            erase.setdefault(name, now)
        rest = {key: value for key, value in current.items() if key != ERASE}
        dropped = dict(current.get("dropped", {}))
        dropped.update({uri: {**entry, ERASED: now} for uri, entry in _retracted(dropped).items()
                        if entry["cache"] in chosen and ERASED not in entry})
        return {**rest, "objects": objects, "retired": retired, **({ERASE: erase} if erase else {}),
                **({"dropped": dropped} if dropped else {})}

    storage.update_json(config.state_uri(layout.CONSUMED), change)
    log.info("merged %d shard(s) holding %d consumed object(s) into %s", len(chosen), len(moved), name)
    return {"merged": len(chosen), "merged_objects": len(moved), "into": name}


def retire_unused(current: dict | None, objects: dict[str, dict], adopted: str, now: str) -> dict[str, str]:
    """`retired` of consumed.json `current`, plus the files its entries named (and `adopted`, the committing run's
    own shard) that no entry of `objects`, the entries after a commit, names: their objects were consumed again in a
    newer version or screened again into another file. Retired, they are deleted RETIRED_DAYS later, like a merged
    shard; else no merge would ever pick them (it counts the lines entries use) and they would stay for good."""
    before = {entry.get("cache") for entry in (current or {}).get("objects", {}).values()} | {adopted}
    after = {entry.get("cache") for entry in objects.values()}
    retired = dict((current or {}).get("retired", {}))
    retired.update({cache: now for cache in before - after if cache})
    return retired


def replacing(before: dict, after: dict) -> dict:
    """Consumed entry `after` in place of `before` (a newer version of the object, or its copy screened again), with
    `earlier`: the files that may still hold rows of the object's earlier copies. A merge copies only the lines
    entries name, so those rows stay in a file other objects keep alive; a retraction of the object rewrites
    these files too (`retract`), or the rows of an earlier version of a retracted object would stay for good."""
    earlier = [*before.get("earlier", []), *([before["cache"]] if before.get("cache") else [])]
    earlier = [cache for cache in dict.fromkeys(earlier) if cache != after.get("cache")]
    return {**after, **({"earlier": earlier} if earlier else {})}


def prune_earlier(objects: dict[str, dict]) -> None:
    """Keep in each entry's `earlier` only the files entries still name: the others are retired, deleted within
    RETIRED_DAYS with every row in them, so a retraction need not rewrite them (and the list stays short)."""
    live = {entry.get("cache") for entry in objects.values()}
    for uri, entry in objects.items():
        if "earlier" in entry and (kept := [c for c in entry["earlier"] if c in live]) != entry["earlier"]:
            objects[uri] = {k: v for k, v in entry.items() if k != "earlier"} | ({"earlier": kept} if kept else {})


def collect(config: RunConfig, now: datetime | None = None, state: dict | None = None) -> list[str]:
    """Delete the shards retired more than RETIRED_DAYS ago that no consumed entry names; returns them."""
    now = now or datetime.now(timezone.utc)
    uri = config.state_uri(layout.CONSUMED)
    state = (storage.read_json_or(uri) or {}) if state is None else state
    used = {entry.get("cache") for entry in state.get("objects", {}).values()}
    due = sorted(cache for cache, at in state.get("retired", {}).items()
                 if cache not in used and datetime.fromisoformat(at) < now - timedelta(days=RETIRED_DAYS))
    if not due:
        return []
    for cache in due:
        storage.delete(config.state_uri(cache))

    def forget(current: dict) -> dict:
        retired = {c: at for c, at in current.get("retired", {}).items() if c not in due}
        return {**current, "retired": retired}

    storage.update_json(uri, forget)
    log.info("deleted %d retired shard(s) no run uses any more: %s", len(due), due)
    return due
