"""New-data detection: list a data prefix, compare it with what was already announced, announce the rest.

The watcher DAG (dags/translation_data_watcher.py) calls `find_new` for each watched data URI, emits an
Asset event whose extra is `{"new_keys": [...]}` when something arrived, and then `remember`s what it
announced. A retrain triggered by that event logs the keys (`new_keys(triggering_asset_events)`) and pulls
incrementally: every object of the prefix that no successful run consumed, so the announced keys plus any that a
failed earlier run left unconsumed (announced once, still trained on), and never one consumed since.

What was announced is kept next to the runs, in `{artifact_root}/_watcher/<data URI>.json` (key → ETag), so
a rewritten object (new ETag) is announced again. The state is written after the event is set and before
the task succeeds: a failure in between announces the keys once more rather than losing them.
"""

from __future__ import annotations

from pathlib import Path

from tasks.data import pull
from tasks.io import storage

STATE_DIR = "_watcher"


def data_asset(data_uri: str):
    """The Asset that stands for "new data under `data_uri`"; its URI is the data prefix itself."""
    from airflow.sdk import Asset

    uri = data_uri if "://" in data_uri else f"file://{Path(data_uri).absolute()}"
    return Asset(uri=uri.rstrip("/") + "/", group="translation-data")


def state_uri(artifact_root: str, data_uri: str) -> str:
    return storage.join(artifact_root, STATE_DIR, storage.safe_name(data_uri) + ".json")


def find_new(data_uri: str, state: str) -> dict[str, str]:
    """Data files under `data_uri` that were not announced yet (or changed since): uri → ETag."""
    announced = storage.read_json_or(state, {"announced": {}})["announced"]
    data = pull.classify(storage.list_objects(data_uri, hidden=True)).data  # what pull would take
    return {o.uri: o.etag for o in data if announced.get(o.uri) != o.etag}


def remember(state: str, announced_now: dict[str, str]) -> int:
    """Add the keys just announced to the state; returns how many keys it holds."""
    announced = storage.read_json_or(state, {"announced": {}})["announced"]
    announced.update(announced_now)
    storage.write_json(state, {"announced": announced})
    return len(announced)


def new_keys(triggering_asset_events) -> list[str]:
    """The keys announced by the asset events that triggered a run (none for a scheduled or manual run)."""
    keys: set[str] = set()
    for events in (triggering_asset_events or {}).values():
        for event in events:
            keys.update((event.extra or {}).get("new_keys", []))
    return sorted(keys)
