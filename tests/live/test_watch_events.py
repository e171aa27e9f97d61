"""Against the live `airflow standalone`: a data file landing on S3 starts its pipeline through S3 notifications
on an SQS queue (moto's, as AWS sends them), read by the standalone's own triggerer (mt_airflow.events), with no
listing of the prefix."""

from __future__ import annotations

import json

import boto3
import pytest

from support.corpora import write_jsonl
from support.live import EVENTS_DATA, EVENTS_PIPELINE, wait_until
from support.multilingual import digit_pairs_to
from support.notifications import messages_in

pytestmark = [pytest.mark.live, pytest.mark.timeout(1800)]


def _asset(live) -> dict:
    with live.api() as api:
        assets = api.get("/api/v2/assets", params={"uri_pattern": "events/en-de"}).json()["assets"]
    (asset,) = assets
    return asset


def _runs(live, run_type: str) -> list[dict]:
    with live.api() as api:
        runs = api.get(f"/api/v2/dags/{EVENTS_PIPELINE}/dagRuns").json()["dag_runs"]
    return [run for run in runs if run["run_type"] == run_type]


def test_a_file_landing_on_s3_starts_its_pipeline_through_the_triggerer(live_airflow, s3_server, tmp_path):
    live = live_airflow
    with live.api() as api:
        assert api.patch(f"/api/v2/dags/{EVENTS_PIPELINE}", json={"is_paused": False}).status_code == 200
        # Airflow registers an Asset's watcher when it parses the file of an unpaused DAG scheduled on it: parse
        # it now rather than at the next interval.
        token = api.get(f"/api/v2/dags/{EVENTS_PIPELINE}/details").json()["file_token"]
        assert api.put(f"/api/v2/parseDagFile/{token}").status_code < 300
    watcher = wait_until(lambda: _asset(live)["watchers"], 180, "the events Asset to get its watcher", every=2)
    assert [w["name"] for w in watcher] == ["s3-notifications"]

    key = "events/en-de/2026-12/part.jsonl"
    part = write_jsonl(tmp_path / "part.jsonl", digit_pairs_to("de", 1200, seed=7), "en", "de")
    boto3.client("s3", endpoint_url=s3_server).upload_file(str(part), "translation-data", key)

    run = wait_until(lambda: (runs := _runs(live, "asset_triggered")) and runs[0], 300,
                     f"S3's notification to start {EVENTS_PIPELINE}", every=2)
    with live.api() as api:
        events = api.get("/api/v2/assets/events", params={"asset_id": _asset(live)["id"]}).json()["asset_events"]
    assert [e["extra"] for e in events if e["extra"].get("from_trigger")] == [
        {"from_trigger": True, "payload": {"new_keys": [f"s3://translation-data/{key}"], "data_uri": EVENTS_DATA}}]

    finished = live.wait_for_run(EVENTS_PIPELINE, run["dag_run_id"])
    assert finished["state"] == "success", finished
    manifest = json.loads((live.run_dir(EVENTS_PIPELINE, run["dag_run_id"]) / "pull_manifest.json").read_text())
    assert [o["uri"] for o in manifest["objects"]] == [f"s3://translation-data/{key}"]
    # The triggerer deleted the notification (and S3's test event) once the Asset event was stored.
    url = boto3.client("sqs", endpoint_url=s3_server).get_queue_url(QueueName="translation-data-events")["QueueUrl"]
    assert messages_in(url, endpoint_url=s3_server) == 0
