"""
### Announce new translation data

Every 10 minutes, for each data prefix that a retraining pipeline watches (the main `translation_finetune` once
the deployment names its prefix in `MT_DATA_URI`, and every `dags/pipelines.yaml` entry with `watch_data: true`),
list the prefix and compare it with what was announced before (`{MT_ARTIFACT_ROOT}/_watcher/`). When data files
are new or changed, the task emits an event on the prefix's Asset with `extra = {"new_keys": [...], "data_uri":
...}`; every DAG scheduled on that Asset starts a run that trains on exactly those keys. When nothing is new the
task is **skipped** and emits nothing, so a quiet prefix starts no retraining. The weekly schedule of each
pipeline remains as a fallback. With no prefix to watch, the watcher is not scheduled at all.

A listing is cheap (one paginated LIST per prefix), so this runs on a worker slot for seconds, not a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import dag, task

from mt_airflow.pipelines import load, main_pipeline

PIPELINES_FILE = Path(__file__).with_name("pipelines.yaml")
EVERY_TEN_MINUTES = "*/10 * * * *"


def watched_prefixes(path: Path = PIPELINES_FILE) -> list[str]:
    """The main pipeline's data prefix, when the deployment names one, and those of the valid, watched
    pipelines (broken entries are shown by translation_finetune.py, not here)."""
    good, _ = load(path)
    main = main_pipeline().data_uri
    prefixes = ([main] if main else []) + [p.data_uri for p in good if p.watch_data]
    return list(dict.fromkeys(prefixes))


PREFIXES = watched_prefixes()


@dag(
    dag_id="translation_data_watcher",
    schedule=EVERY_TEN_MINUTES if PREFIXES else None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description=(f"Watches {len(PREFIXES)} data prefix(es) every 10 minutes." if PREFIXES else
                 "Not scheduled: no data prefix to watch (set MT_DATA_URI, or watch_data in pipelines.yaml)."),
    doc_md=__doc__,
    tags=["mlops", "translation", "data"],
    default_args={"owner": "mlops", "retries": 1},
)
def translation_data_watcher():
    from mt_airflow.watch import data_asset

    for index, data_uri in enumerate(PREFIXES):
        asset = data_asset(data_uri)

        @task(task_id=f"watch_{index}", outlets=[asset], doc_md=f"Watches `{data_uri}`.")
        def watch(data_uri: str, outlet_events=None) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from mt_airflow import artifact_root, watch

            state = watch.state_uri(artifact_root(), data_uri)
            new = watch.find_new(data_uri, state)
            if not new:
                raise AirflowSkipException(f"nothing new under {data_uri}")
            outlet_events[watch.data_asset(data_uri)].extra = {"new_keys": sorted(new), "data_uri": data_uri}
            total = watch.remember(state, new)
            return {"data_uri": data_uri, "new": len(new), "announced_total": total}

        watch(data_uri)


translation_data_watcher()
