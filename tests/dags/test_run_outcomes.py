"""How Airflow ends a run of the real DAG when a step after the gates fails: dag.test() schedules the DAG's own
tasks and trigger rules; only the heavy steps (the launcher's steps, split, champion, gate, publish) are stand-ins.

Airflow decides a run's state from its leaf tasks alone (summary, release_verdict, learning_curve). A failed step
that no leaf depends on through all_success/none_failed leaves the run `success`: the DAG's failure webhook never
fires. And summary must still run: its log is the failed run's account (what it cost, how far it got)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"


@pytest.fixture(scope="module")
def airflow_db():
    done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture
def stand_ins(monkeypatch):
    """Every step passes its gate; `failing` names the steps that fail, for which target language."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from mt_airflow.launcher import RunStepOperator
    from mt_airflow.publish import PublishModelOperator
    from tasks import config, layout
    from tasks.io import storage

    failing: dict[str, str] = {}

    def fail_if(step, cfg):
        if failing.get(step) == cfg.target_lang:
            raise AirflowFailException(f"stand-in: {step} fails for {cfg.target_lang}")

    def launched(self, context):
        fail_if(self.step, config.load(self.run_dir))

    def publish(self, context):
        cfg = config.load(self.run_dir)
        fail_if("publish", cfg)
        if not (storage.read_json_or(cfg.uri(layout.RELEASE_GATE)) or {}).get("released"):
            raise AirflowSkipException("not released")
        record = {"published": True, "revision": "abc123", "url": "u", "repo_id": cfg.hub_repo_id,
                  "endpoint": "local"}
        storage.write_json(cfg.uri(layout.PUBLISH), record)
        return record

    monkeypatch.setattr(RunStepOperator, "execute", launched)
    monkeypatch.setattr(PublishModelOperator, "execute", publish)
    return failing, fail_if


@pytest.fixture
def dag(airflow_db, stand_ins, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from tasks import config, layout
    from tasks.io import storage

    monkeypatch.setenv("MT_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    _, fail_if = stand_ins
    found = DagBag(dag_folder=str(DAGS)).dags["translation_finetune"]

    def step(name):
        def run(run_dir):
            cfg = config.load(run_dir)
            fail_if(name, cfg)
            if name == "gate":
                storage.write_json(cfg.uri(layout.GATE), {"decision": "promote", "promote": True, "reasons": [],
                                                          "bleu": {"gain": 2.0}, "p_values": {}, "checks": []})
            return {}
        return run

    for name in ("split", "champion", "gate"):
        found.task_dict[f"language.{name}"].python_callable = step(name)
    return found


def _run(dag, tmp_path, monkeypatch, webhook):
    monkeypatch.setenv("AIRFLOW_CONN_MT_WEBHOOK", json.dumps({"conn_type": "http", "extra": {"url": webhook.url}}))
    for target in ("de", "nl"):
        folder = tmp_path / "data" / f"en-{target}"
        folder.mkdir(parents=True)
        (folder / "a.jsonl").write_text("".join(json.dumps({"source": f"one {i}", "target": f"een {i}"}) + "\n"
                                                for i in range(20)))
    conf = {"data_uri": str(tmp_path / "data"), "target_langs": ["de", "nl"], "launcher": "local",
            "publish_target": "local", "registry_uri": str(tmp_path / "registry"), "min_clean_pairs": 1,
            "alignment_screen": False, "base_model": str(REPO / ".cache" / "demo" / "base-model")}
    dag_run = dag.test(run_conf=conf)
    return dag_run.state, {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}


@pytest.mark.parametrize("step, failed", [("publish", ("publish", 1)), ("release_gate", ("release_gate", -1))])
def test_a_failed_release_or_publish_fails_the_run_and_is_reported(dag, stand_ins, tmp_path, monkeypatch, step,
                                                                   failed):
    """en-nl's token cannot write, or the release gate cannot write its verdict: nothing (or only en-de) is
    released, and the run must say so as a failure, to the webhook too, not end `success`."""
    from airflow.sdk.exceptions import AirflowFailException

    from support.webhook import WebhookReceiver

    failing, _ = stand_ins
    if step == "release_gate":
        def broken(run_dirs, **context):
            raise AirflowFailException("stand-in: the release gate cannot write its verdict")
        dag.task_dict["release_gate"].python_callable = broken
    else:
        failing["publish"] = "nl"
    with WebhookReceiver() as webhook:
        state, tis = _run(dag, tmp_path, monkeypatch, webhook)
        assert tis[failed] == "failed", tis
        assert state == "failed", tis
        assert [event["message"] for event in webhook.events("failure")], webhook.received
        assert tis[("summary", -1)] == "success", tis


def test_a_language_that_fails_fails_the_run_and_is_reported(dag, stand_ins, tmp_path, monkeypatch):
    from support.webhook import WebhookReceiver

    failing, _ = stand_ins
    failing["validate"] = "nl"
    with WebhookReceiver() as webhook:
        state, tis = _run(dag, tmp_path, monkeypatch, webhook)
        assert (tis[("language.validate", 1)], tis[("release_gate", -1)]) == ("failed", "upstream_failed"), tis
        assert tis[("publish", -1)] == "upstream_failed"  # nothing of en-de is released beside a failed language
        assert state == "failed" and webhook.events("failure"), tis
        assert tis[("summary", -1)] == "success", tis  # the failed run's account is still logged
