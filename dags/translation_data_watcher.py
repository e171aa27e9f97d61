"""
### Announce new translation data

Every 10 minutes, for each data prefix that a retraining pipeline watches (the main `translation_finetune` once
the deployment names its prefix in `MT_DATA_URI`, and every `dags/pipelines.yaml` entry with `watch_data: true`),
list the prefix (each language's `{data_uri}/{src}-{tgt}/` for a pipeline with several target languages) and
compare it with what was announced before (`{MT_ARTIFACT_ROOT}/_watcher/`). When data files are new or changed,
the task emits an event on the prefix's Asset with `extra = {"new_keys": [...], "data_uri": ...}`; every DAG
scheduled on that Asset starts a run that trains on what it has not consumed, those keys included. A key that
some pipeline on the prefix still has not consumed (its run failed) is announced again a day later, then after
two, four, and at most every seven days (`announced_again` in the extra). When nothing is due the task is
**skipped** and emits nothing, so a quiet prefix starts no retraining. The weekly schedule of each pipeline
remains as a fallback. With no prefix to watch, the watcher is not scheduled at all.

A listing is cheap (one paginated LIST per prefix) and the pipelines' state is read only when a key is new or an
unconsumed one is due (a new key every pipeline consumed already is recorded, not announced), so this runs on a
worker slot for seconds, not a GPU. With `MT_DATA_EVENTS_QUEUE` (an SQS queue receiving the data bucket's S3
notifications), the triggerer announces new files under S3 prefixes as they land (`mt_airflow.events`), and this
DAG lists those prefixes only at its first tick of the day, as a safety net; when every watched prefix is such,
it is scheduled daily (00:00 UTC) instead of every 10 minutes.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import dag, task

from mt_airflow.pairs import data_prefixes
from mt_airflow.pipelines import MAIN_DAG_ID, load, main_pipeline
from tasks.config import PipelineParams

PIPELINES_FILE = Path(__file__).with_name("pipelines.yaml")
EVERY_TEN_MINUTES = "*/10 * * * *"
EVERY_DAY = "0 0 * * *"  # its tick is the one plugins/mt_airflow/watch.listed_now lets list an evented prefix


def watched_prefixes(path: Path = PIPELINES_FILE) -> dict[str, list[tuple[str, str, str, str]]]:
    """Each watched data prefix → the pipelines that retrain on its announcements, one (dag_id, source, target,
    the prefix its runs pull) per language: a pair of a multi-language pipeline pulls `{data_uri}/{src}-{tgt}/`
    (mt_airflow.pairs). The main pipeline's, when the deployment names its prefix, and those of the valid,
    watched entries (broken entries are shown by translation_finetune.py, not here)."""
    good, _ = load(path)
    main, defaults = main_pipeline(), PipelineParams()
    prefixes: dict[str, list[tuple[str, str, str, str]]] = {}
    # One key per prefix, however its pipelines spell it (`s3://b/p` and `s3://b/p/` are one Asset and one state
    # file): two watch tasks would share that file, each settling keys that only its own pipelines consumed.
    if main.data_uri:
        prefixes[_prefix(main.data_uri)] = [(MAIN_DAG_ID, defaults.source_lang, defaults.target_lang, main.data_uri)]
    for pipeline in (p for p in good if p.watch_data):
        source, params = pipeline.params["source_lang"], pipeline.params
        pulled = data_prefixes(pipeline.data_uri, source, params.get("target_lang"), params.get("target_langs"))
        prefixes.setdefault(_prefix(pipeline.data_uri), []).extend(
            (pipeline.dag_id, source, target, prefix) for target, prefix in pulled.items())
    return prefixes


def _prefix(data_uri: str) -> str:
    return data_uri.rstrip("/") + "/"


PREFIXES = watched_prefixes()


def _schedule(prefixes) -> tuple[str | None, str]:
    """Every 10 minutes; once a day when S3 notifications announce every watched prefix (the triggerer does the
    watching, the listing is a safety net); not at all without a prefix. With the description that says so."""
    from mt_airflow.watch import evented

    if not prefixes:
        return None, "Not scheduled: no data prefix to watch (set MT_DATA_URI, or watch_data in pipelines.yaml)."
    if all(evented(uri) for uri in prefixes):
        return EVERY_DAY, f"Lists {len(prefixes)} data prefix(es) daily; S3 notifications announce new files."
    return EVERY_TEN_MINUTES, f"Watches {len(prefixes)} data prefix(es) every 10 minutes."


SCHEDULE, DESCRIPTION = _schedule(PREFIXES)


@dag(
    dag_id="translation_data_watcher",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    description=DESCRIPTION,
    doc_md=__doc__,
    tags=["mlops", "translation", "data"],
    default_args={"owner": "mlops", "retries": 1},
)
def translation_data_watcher():
    from mt_airflow.watch import data_asset

    for index, (data_uri, pipelines) in enumerate(PREFIXES.items()):
        asset = data_asset(data_uri)

        @task(task_id=f"watch_{index}", outlets=[asset], doc_md=f"Watches `{data_uri}`.")
        def watch(data_uri: str, pipelines: list, outlet_events=None, dag_run=None) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from mt_airflow import artifact_root, watch

            if not watch.listed_now(data_uri, dag_run.run_type, dag_run.logical_date):
                raise AirflowSkipException(f"S3 notifications announce new data under {data_uri}: listed daily")
            state = watch.state_uri(artifact_root(), data_uri)
            found = watch.find(data_uri, state, watch.consumed_states(artifact_root(), pipelines))
            if not found.due:
                watch.remember(state, found)  # the keys every pipeline has consumed since: never looked up again
                raise AirflowSkipException(f"nothing new under {data_uri}")
            outlet_events[watch.data_asset(data_uri)].extra = {
                "new_keys": sorted(found.due), "announced_again": sorted(found.again), "data_uri": data_uri}
            total = watch.remember(state, found)
            return {"data_uri": data_uri, "new": len(found.new), "again": len(found.again), "announced_total": total}

        watch(data_uri, [list(p) for p in pipelines])


translation_data_watcher()
