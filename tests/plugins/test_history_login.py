"""The history page as a person without a login, or a hostile run directory, meets it (the plugin's FastAPI app)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from mt_airflow import history_app
from tasks.io import storage

DAG = "translation_finetune__legal_en_de"
HOSTILE = "</script><script>alert(1)</script>\"'><img src=x onerror=alert(2)>"


class AdminOnly:
    """A stand-in auth manager: the token "admin" is a user who may read every DAG's runs; any other is refused."""

    async def get_user_from_token(self, token: str) -> str:
        from jwt import InvalidTokenError

        if token != "admin":
            raise InvalidTokenError("unknown user")
        return token

    def get_authorized_dag_ids(self, *, user, method="GET", session=None) -> set[str]:
        return {DAG}

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        return True


@pytest.fixture
def client(monkeypatch, tmp_path):
    from airflow.api_fastapi import app as airflow_app

    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", AdminOnly())
    monkeypatch.setenv("MT_ARTIFACT_ROOT", str(tmp_path))
    return TestClient(history_app.app)


@pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"])
def test_fastapis_own_pages_do_not_answer_without_a_login(client, path):
    """Plugin apps are not guarded by Airflow: FastAPI's docs pages, outside the app's dependencies, answered anyone."""
    found = client.get(path)
    assert found.status_code in (401, 403, 404), found.text[:200]
    assert "/api/history" not in found.text and "swagger" not in found.text.lower()


def test_every_route_the_app_serves_asks_for_a_login(client):
    paths = [route.path.replace("{run_path:path}", f"{DAG}/run") for route in history_app.app.routes
             if isinstance(route, Route) and "GET" in (route.methods or ())]
    assert "/" in paths and "/api/history" in paths
    assert {path: client.get(path).status_code for path in paths} == {path: 401 for path in paths}


def test_what_a_run_directory_holds_is_shown_as_text_never_as_markup(client, tmp_path):
    run_dir = storage.join(str(tmp_path), DAG, "run")
    storage.write_json(storage.join(run_dir, "config.json"), {
        "dag_id": DAG, "run_id": HOSTILE, "source_lang": HOSTILE, "target_lang": "de", "target_langs": []})
    storage.write_json(storage.join(run_dir, "gate.json"), {"decision": HOSTILE, "reasons": [HOSTILE, "</pre>"],
                                                            "bleu": {"gain": 1.0}})
    storage.write_json(storage.join(run_dir, "eval", "scores.json"), {"base": {"bleu": 1.0}, "candidate": {"bleu": 2.0}})
    storage.write_json(storage.join(run_dir, "pull_manifest.json"), {"pulled_at": HOSTILE, "ignored": [HOSTILE]})
    storage.write_text(storage.join(run_dir, "report.md"), HOSTILE)
    cookie = {"Cookie": "_token=admin"}
    for path in ("/", f"/report/{DAG}/run"):
        page = client.get(path, headers=cookie)
        assert page.status_code == 200 and "&lt;script&gt;alert(1)" in page.text
        assert "<script" not in page.text and "<img" not in page.text and "</pre>\"" not in page.text
