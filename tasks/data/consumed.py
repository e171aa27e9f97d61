"""What a pipeline has consumed: every object a successful run trained on, with its ETag and a cleaned copy.

The pipeline's state area holds `consumed.json`: object URI → {etag, size, pulled_at, consumed_by, consumed_at,
cache, lines, rows, kept, rules, earlier}. `cache` and `lines` say where the object's cleaned copy is, the rows that
passed the pair filters when the object was validated: a run of lines in one of the pipeline's shards (tasks/data/
shards.py); `earlier`, the shards that may still hold rows of its earlier copies (shards.replacing), which its
retraction rewrites too. `rules` is the fingerprint of the rules that cleaned it (tasks/data/screening.rules). A
run whose rules differ screens the copy again and, when it commits, replaces it (`rescreened_by`). Later runs
train on those copies (training_data = all) without validating old objects again, and they still can when the
source object has been deleted.

Validate writes the run's copies into its own run directory (`cleaned/`); `commit` copies them into the state
area as a shard of its own before consumed.json points to it. So only a run that commits changes what later runs
train on: a run that fails after validating leaves the pipeline's copies as they were, a refused one (a
force_full_retrain with stricter filters, say) adds the objects that were new to the pipeline but keeps its copies
of consumed ones (and its re-screened ones) out, and a copy in use is never overwritten. A retraction is final
here too: a run that pulled a retracted object before the retraction does not consume it, and the files that
hold retracted rows are rewritten without them at the next commit (shards.ERASE). After it, commit merges shards when
there are too many (shards.compact), so what a run reads stays bounded however long the history.

`commit` marks consumed only the objects whose rows were read (the validation report says so), and only when
the run's gate ran. It merges into consumed.json by compare-and-swap (tasks/io/storage.update_json), so two
runs finishing at once both land, and an entry pulled later is never replaced by one pulled earlier: re-running
an old run cannot roll the state back.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tasks import layout
from tasks.config import RunConfig
from tasks.data import shards
from tasks.io import storage

log = logging.getLogger(__name__)

RETRACTED = "retracted"
SNAPSHOT_CONSUMES_NOTHING = ("a data_snapshot run reproduces chosen objects and consumes nothing: the pipeline's "
                             "next run sees them as it would have")


def load(config: RunConfig) -> dict[str, dict]:
    """uri → its entry, for every object consumed by a successful run of this pipeline."""
    return (storage.read_json_or(config.state_uri(layout.CONSUMED)) or {"objects": {}})["objects"]


def commit(config: RunConfig) -> dict:
    """Mark consumed what this run pulled and read; idempotent, and safe beside other runs doing the same."""
    manifest = storage.read_json_or(config.uri(layout.PULL_MANIFEST))
    if manifest is None:
        return {"committed": 0, "reason": "this run pulled nothing"}
    report = storage.read_json_or(config.uri(layout.VALIDATION_REPORT))
    if not manifest["objects"] and not (report or {}).get("rescreened"):
        # A retraction with nothing new still takes the retracted rows out of the state's files.
        return {"committed": 0, "reason": "nothing new was pulled",
                **({"shards": shards.compact(config)} if manifest.get("retracted_consumed") else {})}
    if report is None:
        return {"committed": 0, "reason": "the pulled objects were never validated, so nothing was read"}
    if manifest["mode"] == "snapshot":
        return {"committed": 0, "reason": SNAPSHOT_CONSUMES_NOTHING}
    index, shard = _adopt(config)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entries = _entries(config, manifest, report, index, shard, now)
    # A refused run consumes what was new to the pipeline, but its rules (an experiment's, perhaps) never replace
    # the copies later runs train on: rows a stricter rule dropped could not come back by screening again.
    refused = (storage.read_json_or(config.uri(layout.GATE)) or {}).get("promote") is False
    recopied = {o["uri"] for o in manifest["objects"] if o["key"] in manifest.get("recopied", [])}  # copy lost
    rescreened = {} if refused else _rescreened(config, manifest, report, index, shard, now)
    kept: dict[str, list[str]] = {}
    # Consumed objects whose cleaned copy was lost and whose source is gone: out of the corpus, on record.
    lost = {item["uri"]: item for item in manifest.get("lost", []) if item["dropped"]}

    def merge(current: dict | None) -> dict:
        objects = dict((current or {}).get("objects", {}))
        dropped = dict((current or {}).get("dropped", {}))
        kept.update(_merge_entries(objects, entries, (current or {}).get(RETRACTED, {}), refused, recopied))
        for uri, (before, update) in rescreened.items():
            if uri in objects and shards.place(objects[uri]) == before:
                objects[uri] = shards.replacing(objects[uri], {**objects[uri], **update})
        for uri, item in lost.items():
            if uri in objects and shards.place(objects[uri]) == shards.place(item):  # not consumed again meanwhile
                dropped[uri] = {**objects.pop(uri), "dropped_by": config.run_id, "dropped_at": now,
                                "reason": item["reason"]}
        erase = dict((current or {}).get(shards.ERASE, {}))
        if kept["retracted"] or kept["held"]:  # rows in the run's shard that no entry names: rewritten without
            erase.setdefault(shard, now)
        retired = shards.retire_unused(current, objects, shard, now)
        shards.prune_earlier(objects)
        return {**(current or {}), "objects": objects, **({"dropped": dropped} if dropped else {}),
                **({shards.ERASE: erase} if erase else {}), **({"retired": retired} if retired else {})}

    state = storage.update_json(config.state_uri(layout.CONSUMED), merge)
    skipped = [o["key"] for o in manifest["objects"] if o["uri"] not in entries]
    committed = len(entries) - sum(len(uris) for uris in kept.values())
    log.info("marked %d object(s) consumed in %s%s%s%s%s", committed,
             config.state_uri(layout.CONSUMED), f"; not read, so not consumed: {skipped}" if skipped else "",
             f"; already consumed in a newer version: {kept['newer']}" if kept["newer"] else "",
             f"; refused: their copies stay as they were: {kept['held']}" if kept["held"] else "",
             f"; retracted since pulled, so not consumed: {kept['retracted']}" if kept["retracted"] else "")
    return {"committed": committed, "consumed_total": len(state["objects"]), "not_read": skipped,
            "newer_kept": kept["newer"], "held": kept["held"], "retracted": kept["retracted"],
            "rescreened": len(rescreened), "shards": shards.compact(config, state)}


def _merge_entries(objects: dict, entries: dict, retractions: dict, refused: bool,
                   recopied: set[str]) -> dict[str, list[str]]:
    """Put this run's entries into `objects`, except those kept out, returned by why: `retracted` since this run
    pulled them (a run cleared and re-run later: they must not come back), `newer` (a later run consumed a newer
    version), `held` (the run was refused, and the pipeline has a copy of that very version, not a lost one)."""
    kept: dict[str, list[str]] = {"retracted": [], "newer": [], "held": []}
    for uri, entry in entries.items():
        held = objects.get(uri, {})
        if retracted_by(uri, retractions) is not None:
            kept["retracted"].append(uri)
        elif held.get("pulled_at", "") > entry["pulled_at"]:
            kept["newer"].append(uri)
        elif refused and held.get("cache") and held.get("etag") == entry["etag"] and uri not in recopied:
            kept["held"].append(uri)
        else:
            objects[uri] = shards.replacing(held, entry)
    return kept


def _entries(config: RunConfig, manifest: dict, report: dict, index: dict, shard: str, now: str) -> dict[str, dict]:
    """uri → the consumed entry of each object this run pulled and read, its copy in the run's shard."""
    read = {name: counts for name, counts in report["files"].items() if name not in report["unreadable_files"]}
    rules = report.get("rules", {}).get("fingerprint")
    return {obj["uri"]: {"etag": obj["etag"], "size": obj["size"], "pulled_at": manifest["pulled_at"],
                         "consumed_by": config.run_id, "consumed_at": now, "cache": shard,
                         "lines": index[obj["key"]], "rows": counts["rows"], "kept": counts["kept"], "rules": rules}
            for obj in manifest["objects"] if (counts := read.get(obj["key"])) is not None}


def _rescreened(config: RunConfig, manifest: dict, report: dict, index: dict, shard: str,
                now: str) -> dict[str, tuple]:
    """Carried objects this run screened again (their copy was cleaned by other rules), their new copies in the
    run's shard: uri → (where the copy it replaces is, the entry's new fields). The new copy replaces the old one,
    stamped with this run's rules, unless another run replaced the old one meanwhile (the caller's merge checks)."""
    rules = report.get("rules", {}).get("fingerprint")
    updates = {}
    for carried in manifest.get("carried", []):
        counts = report.get("rescreened", {}).get(carried["key"])
        if counts is not None:
            updates[carried["uri"]] = (shards.place(carried), {
                "cache": shard, "lines": index[carried["key"]], "kept": counts["kept"], "rules": rules,
                "rescreened_by": config.run_id, "rescreened_at": now})
    return updates


def retracted_by(uri: str, retractions) -> str | None:
    """The retraction (an object URI, or a prefix ending in '/') that covers `uri`, or None."""
    return next((r for r in retractions if uri == r or (r.endswith("/") and uri.startswith(r))), None)


def retract(config: RunConfig) -> tuple[dict[str, dict], list[str]]:
    """Record the run's `retract_data` in the pipeline's state, for good: consumed objects it covers move from
    `objects` to `dropped`, with the reason. Unlike consumption this does not wait for the run to commit: a
    retraction is an order, and a failed run must not bring the data back. Returns every retraction the state
    holds (retraction → {by, at}) and the URIs of the consumed objects this run dropped."""
    uri = config.state_uri(layout.CONSUMED)
    if not config.retract_data:
        return (storage.read_json_or(uri) or {}).get("retracted", {}), []
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def change(current: dict | None) -> dict:
        current = current or {"objects": {}}
        objects, dropped = dict(current.get("objects", {})), dict(current.get("dropped", {}))
        retracted, erase = dict(current.get("retracted", {})), dict(current.get(shards.ERASE, {}))
        for retraction in config.retract_data:
            retracted.setdefault(retraction, {"by": config.run_id, "at": now})
        for object_uri in sorted(objects):
            if (retraction := retracted_by(object_uri, config.retract_data)) is not None:
                dropped[object_uri] = {**objects.pop(object_uri), "dropped_by": config.run_id, "dropped_at": now,
                                       "reason": f"{RETRACTED} (retract_data {retraction})"}
                # Its rows leave the state: commit rewrites the file of its copy, and those of its earlier ones.
                for cache in [dropped[object_uri].get("cache"), *dropped[object_uri].get("earlier", [])]:
                    if cache:
                        erase.setdefault(cache, now)
        return {**current, "objects": objects, "dropped": dropped, "retracted": retracted,
                **({shards.ERASE: erase} if erase else {})}

    state = storage.update_json(uri, change)
    # This run's drops, also when a retried pull finds them done already.
    dropped_now = sorted(u for u, d in state["dropped"].items()
                         if d.get("dropped_by") == config.run_id and d.get("reason", "").startswith(RETRACTED))
    log.info("retracted %s: %d consumed object(s) dropped from the corpus", config.retract_data, len(dropped_now))
    return state["retracted"], dropped_now


def _adopt(config: RunConfig) -> tuple[dict[str, list[int]], str]:
    """The run's cleaned copies made a shard of the pipeline's: (object key → its lines in it, the shard's name)."""
    index = storage.read_json_or(config.uri(layout.CLEANED_INDEX))
    if index is None:
        raise FileNotFoundError(f"{config.uri(layout.CLEANED_INDEX)}: validate left no index of the cleaned copies "
                                "(a run validated by a version from before 2026-12-04 keeps its copies elsewhere), "
                                "so nothing can be marked consumed. Delete the run's validation_report.json and clear "
                                "its validate task (validate then runs again; its result is kept otherwise), then "
                                "clear mark_consumed; or let the next run pull these objects again as new")
    if not index:  # nothing read (a batch of unreadable files fails before commit; this is a second guard)
        return index, ""
    return index, shards.adopt(config)


def copy_rows(config: RunConfig, entry: dict) -> list[str]:
    """The rows of a consumed entry's cleaned copy, as they are stored (JSON records)."""
    with tempfile.TemporaryDirectory() as scratch:
        (path,) = shards.read(config, {"entry": entry}, Path(scratch)).values()
        return path.read_text(encoding="utf-8").splitlines()


def run_copy_rows(config: RunConfig, key: str) -> list[str]:
    """The rows of the cleaned copy that this run's validation wrote for object `key` (not yet the pipeline's)."""
    (first, count) = storage.read_json(config.uri(layout.CLEANED_INDEX))[key]
    return storage.read_text(config.uri(layout.CLEANED_COPIES)).splitlines()[first:first + count]
