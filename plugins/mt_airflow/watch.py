"""New-data detection: list a data prefix, compare it with what was announced, announce the rest.

The watcher DAG (dags/translation_data_watcher.py) calls `find` for each watched data URI, emits an Asset event
whose extra is `{"new_keys": [...]}` when something is due, and then `remember`s what it announced. A retrain
triggered by that event logs the keys (`new_keys(triggering_asset_events)`) and pulls incrementally: every object
of the prefix that no successful run consumed, so the announced keys plus any that a failed earlier run left
unconsumed, and never one consumed since.

What was announced is kept next to the runs, in `{artifact_root}/_watcher/<data URI>.json`: key → its ETag, when
it was last announced, how often, and whether every pipeline retraining on the prefix has consumed it. So:

- a rewritten object (new ETag) is announced again;
- a key whose triggered run failed is not forgotten: while some pipeline has not consumed it, it is announced
  again, a day after the last announcement, then two, four, and at most weekly. A pipeline with `schedule: null`
  retrains on it without waiting for new data, and a key that fails every time cannot start a run every tick;
- once every pipeline consumed it (or retracted it) it is settled and never looked up again, so in a quiet
  prefix a tick costs the listing and one read of this file, whatever the history. The pipelines' consumed
  state is read only when a key is new or an unsettled one is due;
- a new key that every pipeline has consumed already (a scheduled run took it first, or S3's notification
  announced it) is recorded as settled, not announced: its run would pull nothing.

A pipeline with several target languages pulls each pair's own prefix, `{data_uri}/{src}-{tgt}/`, and keeps
each pair's consumed state under it (mt_airflow.pairs builds both for the runs and for `consumed_states`): the
watcher lists those prefixes and settles a key once every pair that pulls it has consumed it.

The state is written after the event is set and before the task succeeds: a failure in between announces the
keys once more rather than losing them.

With `MT_DATA_EVENTS_QUEUE` (an SQS queue receiving S3's object-created notifications), an S3 prefix's Asset is
also watched by the triggerer (mt_airflow.events), whose events carry the same `new_keys` in their `payload`; the
polling watcher then lists that prefix once a day (`listed_now`), so its cost no longer follows each tick.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from tasks import config, layout
from tasks.data import consumed, pull
from tasks.io import storage

EVENTS_QUEUE_ENV = "MT_DATA_EVENTS_QUEUE"
DAILY_LISTING_WITHIN = time(0, 10)  # the watcher's schedule is every 10 minutes: one tick a day falls before this
STATE_DIR = "_watcher"
AGAIN_AFTER = timedelta(days=1)  # the first time an unconsumed key is announced again; then doubling
AGAIN_AT_MOST_EVERY = timedelta(days=7)


def data_asset(data_uri: str):
    """The Asset that stands for "new data under `data_uri`"; its URI is the data prefix itself. With an events
    queue (`MT_DATA_EVENTS_QUEUE`), an S3 prefix's Asset is also watched by the triggerer (mt_airflow.events)."""
    from airflow.sdk import Asset, AssetWatcher

    uri = data_uri if "://" in data_uri else f"file://{Path(data_uri).absolute()}"
    watchers = []
    if evented(data_uri):
        from mt_airflow.events import NewDataTrigger

        watchers.append(AssetWatcher(name="s3-notifications", trigger=NewDataTrigger(events_queue(), data_uri)))
    return Asset(uri=uri.rstrip("/") + "/", group="translation-data", watchers=watchers)


def events_queue() -> str | None:
    """The SQS queue URL that receives the data buckets' object-created notifications, if the deployment set one."""
    return os.environ.get(EVENTS_QUEUE_ENV, "").strip() or None


def evented(data_uri: str) -> bool:
    """Whether S3 notifications announce new data under `data_uri` (the polling watcher then lists it daily)."""
    return bool(events_queue()) and storage.is_s3(data_uri)


def listed_now(data_uri: str, run_type: str, logical_date: datetime | None) -> bool:
    """Whether the polling watcher lists `data_uri` in this run: always, unless S3 notifications announce its new
    data, in which case a scheduled run lists it only at its first tick of the day (00:00 UTC), as a safety net for
    a lost notification and to announce again what a failed run left. A manual run always lists."""
    if not evented(data_uri) or run_type != "scheduled" or logical_date is None:
        return True
    return logical_date.astimezone(timezone.utc).time() < DAILY_LISTING_WITHIN


def state_uri(artifact_root: str, data_uri: str) -> str:
    return storage.join(artifact_root, STATE_DIR, storage.safe_name(data_uri) + ".json")


def consumed_states(artifact_root: str, pipelines: list[tuple[str, str, str, str]]) -> dict[str, list[str]]:
    """Where the pipelines retraining on a watched prefix record what they consumed, by the prefix each pulls
    (a pair of a multi-language pipeline pulls `{data_uri}/{src}-{tgt}/` and keeps its state under that prefix,
    mt_airflow.pairs): prefix → one consumed.json per (dag_id, source language, target language, prefix)."""
    states: dict[str, list[str]] = {}
    for dag_id, source, target, prefix in pipelines:
        state_dir = config.state_dir_for(artifact_root, dag_id, prefix, source, target)
        states.setdefault(prefix, []).append(storage.join(state_dir, layout.CONSUMED))
    return states


@dataclass
class Found:
    new: dict[str, str] = field(default_factory=dict)  # uri → ETag: never announced, or changed since
    again: dict[str, str] = field(default_factory=dict)  # announced before, still unconsumed, due again
    settled: dict[str, str] = field(default_factory=dict)  # keys every pipeline has consumed (or retracted) now
    announced: dict[str, dict] = field(default_factory=dict)  # the state as `find` read it, for `remember`

    @property
    def due(self) -> dict[str, str]:
        return {**self.new, **self.again}


def _announced(state: str) -> dict[str, dict]:
    found = storage.read_json_or(state, {"announced": {}})["announced"]
    # A state written before announcements were tracked holds uri → ETag: announced long ago, never settled.
    return {uri: ({"etag": seen, "at": None, "times": 1} if isinstance(seen, str) else seen)
            for uri, seen in found.items()}


def _due(seen: dict, now: datetime) -> bool:
    if seen.get("at") is None:
        return True
    wait = min(AGAIN_AFTER * 2 ** (seen.get("times", 1) - 1), AGAIN_AT_MOST_EVERY)
    return now - datetime.fromisoformat(seen["at"]) >= wait


def _under(uri: str, prefix: str) -> bool:
    return uri.startswith(prefix.rstrip("/") + "/")


def _data_files(data_uri: str, prefixes: list[str]) -> list[storage.StoredObject]:
    """What pull would take under each prefix, once each. A pair's folder that does not exist yet holds nothing."""
    found: dict[str, storage.StoredObject] = {}
    for prefix in prefixes:
        try:
            listed = storage.list_objects(prefix, hidden=True)
        except FileNotFoundError:
            if prefix.rstrip("/") == data_uri.rstrip("/"):
                raise
            listed = []
        found.update((o.uri, o) for o in pull.classify(listed).data)
    return list(found.values())


def find(data_uri: str, state: str, consumed_by: dict[str, list[str]] | None = None,
         now: datetime | None = None) -> Found:
    """The data files to announce now, and the announced ones that have been consumed. `consumed_by` (from
    `consumed_states`): the prefixes the pipelines pull, each listed, and where they record what they consumed;
    none: `data_uri` is listed and every new key announced once."""
    now = now or datetime.now(timezone.utc)
    announced = _announced(state)
    consumed_by = consumed_by or {}
    data = _data_files(data_uri, list(consumed_by) or [data_uri])
    new = {o.uri: o.etag for o in data if announced.get(o.uri, {}).get("etag") != o.etag}
    waiting = {o.uri: o.etag for o in data if o.uri not in new and not announced[o.uri].get("settled")
               and _due(announced[o.uri], now)}
    found = Found(new=new, announced=announced)
    if (new or waiting) and consumed_by:
        # A new key that every pipeline consumed already (a scheduled or manual run took it first, or S3's
        # notification announced it) is settled, not announced: its run would pull nothing.
        states = {uri: storage.read_json_or(uri) or {} for uris in consumed_by.values() for uri in uris}
        for uri, etag in {**new, **waiting}.items():
            pulled_by = [states[s] for prefix, uris in consumed_by.items() if _under(uri, prefix) for s in uris]
            if pulled_by and all(s.get("objects", {}).get(uri, {}).get("etag") == etag
                                 or consumed.retracted_by(uri, s.get("retracted", {})) for s in pulled_by):
                found.settled[uri] = etag
                found.new.pop(uri, None)
            elif uri in waiting:
                found.again[uri] = etag
    return found


def remember(state: str, found: Found, now: datetime | None = None) -> int:
    """Record what was just announced and what is settled (into the state `find` read: the watcher runs one at a
    time); returns how many keys the state holds. Nothing to record: nothing is read or written."""
    announced = dict(found.announced)
    if not (found.due or found.settled):
        return len(announced)
    at = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    for uri, etag in found.new.items():
        announced[uri] = {"etag": etag, "at": at, "times": 1}
    for uri in found.again:
        announced[uri] = {**announced[uri], "at": at, "times": announced[uri].get("times", 1) + 1}
    for uri, etag in found.settled.items():
        announced[uri] = {**announced.get(uri, {"at": None, "times": 0}), "etag": etag, "settled": True}
    storage.write_json(state, {"announced": announced})
    return len(announced)


def new_keys(triggering_asset_events) -> list[str]:
    """The keys announced by the asset events that triggered a run (none for a scheduled or manual run)."""
    keys: set[str] = set()
    for events in (triggering_asset_events or {}).values():
        for event in events:
            extra = event.extra or {}
            keys.update(extra.get("new_keys", []))  # from the polling watcher's task
            keys.update((extra.get("payload") or {}).get("new_keys", []))  # from S3 notifications (the triggerer)
    return sorted(keys)
