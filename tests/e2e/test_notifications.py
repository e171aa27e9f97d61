"""A failed run is reported to the webhook connection and noted on the run; the receiver is a real HTTP
server on 127.0.0.1 and the callback is the DAG's own on_failure_callback, run by dag.test()."""

import json

from support.corpora import digit_pairs, write_jsonl
from support.webhook import WebhookReceiver


def test_a_failed_run_posts_to_the_webhook_and_notes_the_failed_step(dag, tmp_path, monkeypatch):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    write_jsonl(tmp_path / "data" / "part.jsonl", digit_pairs(30, seed=3))
    monkeypatch.setenv("MT_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("MT_WEBHOOK_CONN_ID", "team_alerts")
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_TEAM_ALERTS", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": receiver.server.server_port,
             "schema": "hooks/mt", "password": "s3cret"}))
        # 30 clean pairs where the run demands 500: validate fails the batch; its report stored, it is not retried.
        dag_run = dag.test(run_conf={"data_uri": str(tmp_path / "data"), "min_clean_pairs": 500,
                                     "alignment_screen": False})  # its default base is a Hub id: not here

    assert dag_run.state == "failed"
    (failure,) = receiver.events("failure")
    assert failure["dag_id"] == "translation_finetune" and failure["run_id"] == dag_run.run_id
    assert failure["task_id"] == "language.validate"
    (request,) = receiver.received
    assert request["path"] == "/hooks/mt" and request["headers"]["Authorization"] == "Bearer s3cret"
    with create_session() as session:
        note = DagRun.find(dag_id="translation_finetune", run_id=dag_run.run_id, session=session)[0].note
    assert note == "failed in validate; see the task log"

