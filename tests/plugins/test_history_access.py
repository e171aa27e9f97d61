"""The history page shows each user only the pipelines whose DAG runs the auth manager lets them read.

The routes run as the API server runs them (FastAPI, the Airflow login resolved from the `_token` cookie or a
bearer token by Airflow's own `resolve_user_from_token`); only the auth manager is a stand-in that grants
per-DAG access from a table, as FAB's per-DAG permissions or Keycloak's resources would.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from mt_airflow import history_app
from tasks.io import storage

LEGAL, MEDICAL = "translation_finetune__legal_en_de", "translation_finetune__medical_en_de"
RUN = "manual__2026-11-27T09:00:00+00:00"
COOKIE_OF = {user: {"Cookie": f"_token={user}"} for user in ("admin", "lawyer")}  # the UI's login cookie


@dataclass(frozen=True)
class User:
    name: str


class PerDagAuthManager:
    """Tokens are user names; `dags` says whose DAGs each may see, `runs` whose runs (None: every one seen)."""

    def __init__(self, dags: dict[str, set[str]], runs: dict[str, set[str]] | None = None):
        self.dags, self.runs = dags, runs or {}

    async def get_user_from_token(self, token: str) -> User:
        from jwt import InvalidTokenError

        if token not in self.dags:
            raise InvalidTokenError("unknown user")
        return User(token)

    def get_authorized_dag_ids(self, *, user: User, method: str = "GET", session=None) -> set[str]:
        assert method == "GET"
        return set(self.dags[user.name])

    def is_authorized_dag(self, *, method, user: User, access_entity=None, details=None) -> bool:
        from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

        assert (method, access_entity) == ("GET", DagAccessEntity.RUN) and details.id
        return details.id in self.runs.get(user.name, self.dags[user.name])


@pytest.fixture
def store(tmp_path, monkeypatch):
    for dag_id, gain in ((LEGAL, 2.5), (MEDICAL, 0.3)):
        run_dir = storage.join(str(tmp_path), dag_id, storage.safe_name(RUN))
        storage.write_json(storage.join(run_dir, "config.json"), {
            "dag_id": dag_id, "run_id": RUN, "source_lang": "en", "target_lang": "de", "target_langs": []})
        storage.write_json(storage.join(run_dir, "gate.json"),
                           {"decision": "promote", "reasons": [f"BLEU gain {gain:+.2f}"], "bleu": {"gain": gain}})
    monkeypatch.setenv("MT_ARTIFACT_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture
def client(monkeypatch):
    from airflow.api_fastapi import app as airflow_app

    auth = PerDagAuthManager(dags={"lawyer": {LEGAL}, "admin": {LEGAL, MEDICAL}, "nobody": set(),
                                   "auditor": {LEGAL, MEDICAL}}, runs={"auditor": {MEDICAL}})
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", auth)
    return TestClient(history_app.app)


@pytest.mark.parametrize("user, shown", [
    ("admin", [LEGAL, MEDICAL]),
    ("lawyer", [LEGAL]),
    ("auditor", [MEDICAL]),  # sees the DAG list, but may read the runs of one DAG only
    ("nobody", []),
])
def test_each_user_sees_the_history_of_the_dags_they_may_read(store, client, user, shown):
    api = client.get("/api/history", headers={"Authorization": f"Bearer {user}"})
    assert api.status_code == 200 and list(api.json()) == shown
    page = client.get("/", headers={"Cookie": f"_token={user}"})
    assert page.status_code == 200
    assert [dag_id for dag_id in (LEGAL, MEDICAL) if f"<h2>{dag_id}</h2>" in page.text] == shown


def test_a_report_of_a_dag_the_user_may_not_read_is_not_found(store, client):
    path = f"/report/{MEDICAL}/{storage.safe_name(RUN)}"
    assert client.get(path, headers=COOKIE_OF["admin"]).status_code == 200
    refused = client.get(path, headers=COOKIE_OF["lawyer"])
    # answered as a run that does not exist: which pipelines exist stays private
    assert refused.status_code == 404
    assert refused.json()["detail"] == f"no run {path.removeprefix('/report/')!r} in the artifact store"
    assert MEDICAL not in client.get("/api/history", headers=COOKIE_OF["lawyer"]).text


@pytest.mark.parametrize("credentials, status", [({}, 401), ({"headers": {"Cookie": "_token=mallory"}}, 403)])
def test_without_a_valid_login_nothing_is_shown(store, client, credentials, status):
    for path in ("/", "/api/history", f"/report/{LEGAL}/{storage.safe_name(RUN)}"):
        assert client.get(path, **credentials).status_code == status, path
