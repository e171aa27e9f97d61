"""The Hub hook: a run's `hub_conn_id` (a trigger Param) may name only the connections the deployment allows as a
Hub token source (MT_HUB_CONN_IDS), so a trigger user cannot have another connection's password sent to the Hub."""

import json

import pytest

from mt_airflow import hub
from mt_airflow.hub import HubConnectionNotAllowed, HuggingFaceHubHook
from support.runs import make_run

DB_PASSWORD = "S3cret-DB-Passw0rd"
HUB_TOKEN = "hf_prod_canary_41x"


@pytest.fixture(autouse=True)
def _connections(monkeypatch):
    monkeypatch.delenv(hub.ALLOWED_CONNECTIONS_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DB", f"postgresql://etl:{DB_PASSWORD}@warehouse:5432/prod")
    monkeypatch.setenv("AIRFLOW_CONN_HUB_PROD", json.dumps({"conn_type": "generic", "password": HUB_TOKEN}))


@pytest.mark.parametrize("allowed, conn_id", [
    (None, "warehouse_db"),  # unset: huggingface_default only
    (None, "hub_prod"),
    ("huggingface_default, hub_prod", "warehouse_db"),
    (" , ", "warehouse_db"),  # nothing listed: the default only
])
def test_a_connection_the_deployment_does_not_allow_is_never_read(monkeypatch, allowed, conn_id):
    if allowed is not None:
        monkeypatch.setenv(hub.ALLOWED_CONNECTIONS_ENV, allowed)
    read = []
    monkeypatch.setattr(HuggingFaceHubHook, "get_connection", classmethod(lambda cls, name: read.append(name)))
    with pytest.raises(HubConnectionNotAllowed) as err:  # an AirflowFailException: not retried
        HuggingFaceHubHook(conn_id).get_credentials()
    message = str(err.value)
    assert f"'{conn_id}'" in message and hub.ALLOWED_CONNECTIONS_ENV in message and DB_PASSWORD not in message
    assert read == []


def test_a_run_naming_another_connection_sends_nothing(tmp_path):
    cfg = make_run(tmp_path / "art", hub_conn_id="warehouse_db", data_uri=str(tmp_path / "data"))
    with pytest.raises(HubConnectionNotAllowed, match="'warehouse_db'"):
        hub.registry_credentials(cfg)


@pytest.mark.parametrize("allowed, conn_id, token, source", [
    ("hub_prod", "hub_prod", HUB_TOKEN, "connection 'hub_prod'"),
    ("huggingface_default,hub_prod", "hub_prod", HUB_TOKEN, "connection 'hub_prod'"),
    (None, "huggingface_default", "hf_env_token", "HF_TOKEN environment variable"),  # no such connection
])
def test_an_allowed_connection_gives_its_token(monkeypatch, allowed, conn_id, token, source):
    if allowed is not None:
        monkeypatch.setenv(hub.ALLOWED_CONNECTIONS_ENV, allowed)
    monkeypatch.setenv("HF_TOKEN", "hf_env_token")
    credentials = HuggingFaceHubHook(conn_id).get_credentials()
    assert (credentials.token, credentials.source) == (token, source)
