"""The data watcher: a run that finds new keys under a watched prefix emits an Asset event carrying them,
and queues the pipeline scheduled on that Asset; a run that finds nothing new emits nothing."""

import pytest

from support.corpora import digit_pairs, write_jsonl

LEGAL = "s3://translation-data/legal/en-de"  # watched by dags/pipelines.yaml's `legal` pipeline


@pytest.fixture(scope="module")
def watcher(airflow_db):
    """The watcher, with the DAGs in the metadata DB and the legal pipeline unpaused: Airflow queues
    asset-triggered runs only for unpaused consumers, as the scheduler would see them."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = manager.get_bundle("dags-folder")
    bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
    sync_bag_to_db(bag, bundle.name, None)
    with create_session() as session:
        session.get(DagModel, "translation_finetune__legal_en_de").is_paused = False
    return bag.dags["translation_data_watcher"]


def _events(uri: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                               .where(AssetModel.uri == uri).order_by(AssetEvent.id)).all()
        return [dict(row.extra) for row in rows]


def test_new_keys_are_announced_once(watcher, s3, tmp_path, monkeypatch):
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    monkeypatch.setenv("MT_ARTIFACT_ROOT", "s3://artifacts/runs")
    for bucket in ("translation-data", "artifacts"):
        s3.create_bucket(Bucket=bucket)
    part = write_jsonl(tmp_path / "part.jsonl", digit_pairs(20, seed=1))
    s3.upload_file(str(part), "translation-data", "legal/en-de/2026-11/part-1.jsonl")
    s3.upload_file(str(part), "translation-data", "legal/en-de/2026-11/notes.txt")  # not data: not announced
    before = len(_events(LEGAL))

    # One task per watched prefix (the pipelines.yaml entries; the main DAG's only once MT_DATA_URI is set).
    legal = next(task.task_id for task in watcher.tasks if f"`{LEGAL}/`" in task.doc_md)
    first = watcher.test()
    states = {ti.task_id: ti.state for ti in first.get_task_instances()}
    assert first.state == "success"
    assert states == {task.task_id: "success" if task.task_id == legal else "skipped" for task in watcher.tasks}
    assert len(states) == 2  # legal and support: only legal has data
    events = _events(LEGAL)[before:]
    assert events == [{"new_keys": ["s3://translation-data/legal/en-de/2026-11/part-1.jsonl"],
                       "announced_again": [], "data_uri": "s3://translation-data/legal/en-de/"}]
    with create_session() as session:
        queued = session.scalars(select(AssetDagRunQueue.target_dag_id).join(
            AssetModel, AssetDagRunQueue.asset_id == AssetModel.id).where(AssetModel.uri == LEGAL)).all()
    assert "translation_finetune__legal_en_de" in queued

    second = watcher.test()
    assert {ti.task_id: ti.state for ti in second.get_task_instances()}[legal] == "skipped"
    assert len(_events(LEGAL)) == before + 1  # nothing new: no event

    s3.upload_file(str(part), "translation-data", "legal/en-de/2026-12/part-1.jsonl")
    third = watcher.test()
    assert {ti.task_id: ti.state for ti in third.get_task_instances()}[legal] == "success"
    assert _events(LEGAL)[-1]["new_keys"] == ["s3://translation-data/legal/en-de/2026-12/part-1.jsonl"]


def test_with_an_events_queue_the_triggerer_watches_the_prefix_and_its_events_start_the_pipeline(
        watcher, monkeypatch):
    """MT_DATA_EVENTS_QUEUE gives the watched S3 prefix's Asset a watcher: parsing the DAGs registers the trigger
    the triggerer will run, and an event it fires (stored the way the triggerer stores it) queues the pipeline
    with the announced keys, which the run reads as the polling watcher's."""
    from types import SimpleNamespace

    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.models.trigger import Trigger
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    from mt_airflow import watch

    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/data-events"
    monkeypatch.setenv("MT_DATA_EVENTS_QUEUE", queue)
    bundle = DagBundlesManager().get_bundle("dags-folder")
    sync_bag_to_db(BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name),
                   bundle.name, None)
    with create_session() as session:
        session.execute(delete(AssetDagRunQueue))
        asset = session.scalars(select(AssetModel).where(AssetModel.uri == LEGAL)).one()
        (trigger,) = asset.triggers
        assert (trigger.classpath, trigger.kwargs) == ("mt_airflow.events.NewDataTrigger",
                                                       {"queue_url": queue, "data_uri": LEGAL + "/"})
        trigger_id = trigger.id
    payload = {"new_keys": [LEGAL + "/2026-12/part-9.jsonl"], "data_uri": LEGAL + "/"}
    Trigger.submit_event(trigger_id, TriggerEvent(payload))

    stored = _events(LEGAL)[-1]
    assert stored == {"from_trigger": True, "payload": payload}
    assert watch.new_keys({LEGAL: [SimpleNamespace(extra=stored)]}) == payload["new_keys"]
    with create_session() as session:
        queued = session.scalars(select(AssetDagRunQueue.target_dag_id)).all()
    assert queued == ["translation_finetune__legal_en_de"]
