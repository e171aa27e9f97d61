"""One real `airflow standalone` for the live tests (REST API trigger, data trigger, history page in a browser).

It is started once per test module through devtools/standalone.py, the same code as `make airflow`, with a
private AIRFLOW_HOME, a known admin password, local folders for data and artifacts, moto's S3 on 127.0.0.1
for the main pipeline's default prefix, and a DAGs folder holding this repo's DAG files plus a pipelines.yaml
with one tiny two-language pipeline. Stopping it must leave no Airflow process behind.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from support.live import PIPELINE
from support.multilingual import TINY_RECIPE, build_multilingual_digits_model

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LiveAirflow:
    url: str
    home: Path
    data: Path
    artifacts: Path
    registry: Path
    model: Path
    password: str
    process: subprocess.Popen
    token: str = ""
    processes: list = field(default_factory=list)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 900) -> dict:
        deadline = time.monotonic() + timeout
        with self.api() as api:
            while time.monotonic() < deadline:
                run = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
                if run["state"] in ("success", "failed"):
                    return run
                time.sleep(3)
        raise TimeoutError(f"{dag_id} {run_id} did not finish in {timeout}s: {run}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_ready(live: LiveAirflow, timeout: float = 420) -> None:
    """Health first, then a token, then every DAG parsed (the DAG processor works in the background)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if live.process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with {live.process.returncode}")
        try:
            if not live.token:
                response = httpx.post(f"{live.url}/auth/token", timeout=10,
                                      json={"username": "admin", "password": live.password})
                if response.status_code == 201:
                    live.token = response.json()["access_token"]
            if live.token:
                with live.api() as api:
                    ids = {d["dag_id"] for d in api.get("/api/v2/dags", params={"limit": 100}).json()["dags"]}
                if {"translation_finetune", "translation_data_watcher", PIPELINE} <= ids:
                    return
                last = sorted(ids)
        except httpx.HTTPError as err:
            last = err
        time.sleep(2)
    raise TimeoutError(f"airflow standalone not ready after {timeout}s (last: {last})")


@pytest.fixture(scope="module")
def live_airflow(tmp_path_factory, s3_server):
    from devtools import standalone

    root = tmp_path_factory.mktemp("live")
    home, dags, data = root / "airflow-home", root / "dags", root / "data"
    for folder in (home, dags, data):
        folder.mkdir()
    for name in ("translation_finetune.py", "translation_data_watcher.py"):
        shutil.copy(REPO / "dags" / name, dags / name)
    model = build_multilingual_digits_model(root / "tiny-digits-de-nl")
    registry = root / "registry"
    (dags / "pipelines.yaml").write_text(yaml.safe_dump({"pipelines": [{
        "domain": "digits", "source_lang": "en", "target_langs": ["de", "nl"], "data_uri": str(data) + "/",
        "base_model": str(model), "hub_repo_id": "mlops/digits", "schedule": None,
        "params": {**TINY_RECIPE, "publish_target": "local", "registry_uri": str(registry), "launcher": "local"},
    }]}))
    password = secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="translation-data")  # the main default
    port = _free_port()
    log = (root / "standalone.log").open("w")
    process = standalone.start(home, port, dags=dags, extra_env={
        "MT_ARTIFACT_ROOT": str(root / "artifacts"),
        "AWS_ENDPOINT_URL": s3_server,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__API__EXPOSE_STACKTRACE": "True",
    }, stdout=log, stderr=subprocess.STDOUT)
    live = LiveAirflow(url=f"http://127.0.0.1:{port}", home=home, data=data, artifacts=root / "artifacts",
                       registry=registry, model=model, password=password, process=process)
    try:
        _wait_until_ready(live)
        live.processes = [process.pid] + [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
        yield live
    except BaseException:
        log.flush()
        print((root / "standalone.log").read_text()[-5000:])
        raise
    finally:
        standalone.stop(process)
        log.close()

