"""The publish operator: credentials from the Airflow connection, skip on a refused gate, fail without
retries on a token that cannot write, and the extra link to the published revision or pull request."""

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from devtools.local_hub import LocalHub
from mt_airflow.publish import PublishedModelLink, PublishModelOperator
from support.runs import make_promoted_run

REPO = "mlops/digits-en-de"
TOKEN = "hf_conn_canary_8Kd3"


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub", tokens={TOKEN: "write", "hf_reader": "read"}) as running:
        yield running


def _connection(monkeypatch, hub, token=TOKEN, conn_id="huggingface_default"):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "generic", "password": token, "extra": {"endpoint": hub.url}}))


def _operator(cfg):
    return PublishModelOperator(task_id="publish", run_dir=cfg.run_dir)


def test_publish_uses_the_connection_and_links_to_the_commit(hub, tmp_path, tiny_model, monkeypatch):
    _connection(monkeypatch, hub, conn_id="hub_prod")
    monkeypatch.setenv("MT_HUB_CONN_IDS", "huggingface_default,hub_prod")  # the deployment allows it (mt_airflow.hub)
    cfg = make_promoted_run(tmp_path / "art", tiny_model, hub_repo_id=REPO, hub_conn_id="hub_prod")
    operator = _operator(cfg)
    assert PublishedModelLink().get_link(operator, ti_key=None) == ""  # nothing published yet
    record = operator.execute(context={})
    head = hub.commits(REPO)[0]
    assert record["revision"] == head["oid"] and TOKEN not in json.dumps(record)
    assert PublishedModelLink().get_link(operator, ti_key=None) == f"{hub.url}/{REPO}/commit/{head['oid']}"
    assert [link.name for link in PublishModelOperator.operator_extra_links] == ["Published model"]


def test_review_mode_links_to_the_pull_request_and_logs_it(hub, tmp_path, tiny_model, monkeypatch, capsys):
    _connection(monkeypatch, hub)
    cfg = make_promoted_run(tmp_path / "art", tiny_model, hub_repo_id=REPO, create_pr=True)
    operator = _operator(cfg)
    record = operator.execute(context={})
    pr_url = f"{hub.url}/{REPO}/discussions/1"
    assert record["pr_url"] == pr_url and PublishedModelLink().get_link(operator, ti_key=None) == pr_url
    assert f"Review the release in pull request {pr_url}" in capsys.readouterr().out  # Airflow's task log


def test_a_refused_gate_skips_the_task(hub, tmp_path, tiny_model, monkeypatch):
    _connection(monkeypatch, hub)
    cfg = make_promoted_run(tmp_path / "art", tiny_model, hub_repo_id=REPO, promote=False)
    with pytest.raises(AirflowSkipException, match="gate refused"):
        _operator(cfg).execute(context={})
    assert hub.requests == []


def test_a_read_only_token_fails_without_retries_and_names_the_connection(hub, tmp_path, tiny_model, monkeypatch,
                                                                           caplog, capsys):
    _connection(monkeypatch, hub, token="hf_reader")
    cfg = make_promoted_run(tmp_path / "art", tiny_model, hub_repo_id=REPO)
    with pytest.raises(AirflowFailException) as err:  # a fail exception: Airflow does not retry it
        _operator(cfg).execute(context={})
    message = str(err.value)
    assert f"lacks write access to {REPO}" in message and "connection 'huggingface_default'" in message
    out = capsys.readouterr()
    assert "hf_reader" not in message + caplog.text + out.out + out.err
    assert len([r for r in hub.requests if r["status"] == 403]) == 1


def test_a_registry_that_moved_since_the_champion_lookup_fails_without_retries(hub, tmp_path, tiny_model,
                                                                               monkeypatch):
    _connection(monkeypatch, hub)
    late = make_promoted_run(tmp_path / "art", tiny_model, run_id="manual__2026-11-27T06:00:00", hub_repo_id=REPO)
    _operator(make_promoted_run(tmp_path / "art", tiny_model, run_id="manual__2026-11-20T06:00:00",
                                hub_repo_id=REPO)).execute(context={})
    with pytest.raises(AirflowFailException, match="the registry moved since the champion lookup"):
        _operator(late).execute(context={})
    assert len(hub.commits(REPO)) == 2  # the initial commit and the other run's release, nothing more


def test_a_decision_that_does_not_verify_fails_without_retries(hub, tmp_path, tiny_model, monkeypatch):
    from tasks import layout
    from tasks.io import storage

    _connection(monkeypatch, hub)
    cfg = make_promoted_run(tmp_path / "art", tiny_model, hub_repo_id=REPO)
    scores = storage.read_json(cfg.uri(layout.SCORES))
    scores["candidate"]["bleu"] += 0.01  # edited after the gate decided
    storage.write_json(cfg.uri(layout.SCORES), scores)
    with pytest.raises(AirflowFailException, match="UnverifiedDecision: .*not decided on this run's scores"):
        _operator(cfg).execute(context={})
    assert not any(r["method"] in ("POST", "PUT") for r in hub.requests)  # nothing published


def test_the_link_is_empty_before_the_run_dir_is_known():
    from airflow.sdk import DAG, task

    with DAG("link_probe", schedule=None):
        @task
        def prepare() -> str:
            return "/nowhere"

        operator = PublishModelOperator(task_id="publish", run_dir=prepare())
    assert PublishedModelLink().get_link(operator, ti_key=None) == ""
