"""One real `airflow standalone` on PostgreSQL for the live tests (REST API, data trigger, UI in a browser).

It is started once per test session through devtools/standalone.py, the same code as `make airflow`, with a
throwaway PostgreSQL cluster as its metadata database (tests/support/postgres.py; the LocalExecutor), a private
AIRFLOW_HOME, a known admin password, local folders for data and artifacts, moto's S3 on 127.0.0.1 for the main
pipeline's default prefix, and a DAGs folder holding this repo's DAG files plus a pipelines.yaml with one tiny
two-language pipeline on a local folder and one on S3 whose new files S3 notifications announce (moto's SQS, read
by the standalone's triggerer). MT_DATA_URI is not set: the main DAG is in its safe, unscheduled state.

Whatever happens in a test, the session ends with no Airflow process, no browser and no PostgreSQL left:
the fixtures stop what they started in `finally`, and every process still running with the live
AIRFLOW_HOME is killed. Live tests run at the end of a session, the one that checks a clean stop last
(`pytest_collection_modifyitems`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from devtools import standalone
from devtools.demo_screenshots import CHROMIUM, CHROMIUM_FLAGS, log_in
from support.live import EVENTS_DATA, EVENTS_PIPELINE, PIPELINE, airflow_processes_of, wait_until
from support.multilingual import TINY_RECIPE, build_multilingual_digits_model
from support.notifications import notifying_queue

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS_ENV = "MT_SCREENSHOTS"  # a folder: `make screenshots` sets it to docs/
STOP_TEST = "test_stopping_standalone_leaves_no_airflow_process_behind"


def pytest_collection_modifyitems(items):
    """Live tests run last in a session, so that the shared standalone, its database and the browser are torn
    down as soon as they are done; the clean-stop test ends the standalone, so it runs after every other."""
    items.sort(key=lambda item: (item.get_closest_marker("live") is not None, item.name == STOP_TEST))


@dataclass
class LiveAirflow:
    url: str
    root: Path
    home: Path
    data: Path
    artifacts: Path
    registry: Path
    model: Path
    password: str
    process: subprocess.Popen
    token: str = ""

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)

    def run(self, dag_id: str, run_id: str) -> dict:
        with self.api() as api:
            response = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            response.raise_for_status()
            return response.json()

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 1500) -> dict:
        return wait_until(lambda: (run := self.run(dag_id, run_id))["state"] in ("success", "failed") and run,
                          timeout, f"{dag_id} {run_id} to finish")

    def run_dir(self, dag_id: str, run_id: str) -> Path:
        from tasks.io import storage

        return self.artifacts / dag_id / storage.safe_name(run_id)


def _ready(live: LiveAirflow) -> bool:
    """Health first, then a token, then every DAG parsed (the DAG processor works in the background)."""
    if live.process.poll() is not None:
        raise RuntimeError(f"airflow standalone exited with {live.process.returncode}")
    try:
        if not live.token:
            response = httpx.post(f"{live.url}/auth/token", timeout=10,
                                  json={"username": "admin", "password": live.password})
            if response.status_code != 201:
                return False
            live.token = response.json()["access_token"]
        with live.api() as api:
            ids = {d["dag_id"] for d in api.get("/api/v2/dags", params={"limit": 100}).json()["dags"]}
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    return {"translation_finetune", "translation_data_watcher", PIPELINE, EVENTS_PIPELINE} <= ids


def _dags_folder(root: Path, data: Path, model: Path, registry: Path) -> Path:
    """The live DAGs: the repo's two files and two pipelines, the tiny two-language one on a local folder, and
    one on moto's S3 (EVENTS_DATA) whose new files S3 notifications announce through the triggerer."""
    dags = root / "dags"
    dags.mkdir()
    for name in ("translation_finetune.py", "translation_data_watcher.py"):
        shutil.copy(REPO / "dags" / name, dags / name)
    params = {**TINY_RECIPE, "publish_target": "local", "registry_uri": str(registry), "launcher": "local"}
    (dags / "pipelines.yaml").write_text(yaml.safe_dump({"pipelines": [
        {"domain": "digits", "source_lang": "en", "target_langs": ["de", "nl"], "data_uri": str(data) + "/",
         "base_model": str(model), "hub_repo_id": "mlops/digits", "schedule": None, "params": params},
        {"domain": "events", "source_lang": "en", "target_lang": "de", "data_uri": EVENTS_DATA,
         "base_model": str(model), "hub_repo_id": "mlops/events", "schedule": None, "params": params},
    ]}))
    return dags


@pytest.fixture(scope="session")
def postgres():
    from support import postgres

    cluster = postgres.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _stop_everything(process: subprocess.Popen, home: Path) -> None:
    standalone.stop(process)
    for leftover in airflow_processes_of(home):  # a task runner whose parent died first, say
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()


@pytest.fixture(scope="session")
def live_airflow(tmp_path_factory, s3_server, postgres):
    root = tmp_path_factory.mktemp("live")
    home, data = root / "airflow-home", root / "data"
    for folder in (home, data):
        folder.mkdir()
    model = build_multilingual_digits_model(root / "tiny-digits-de-nl")
    registry = root / "registry"
    dags = _dags_folder(root, data, model, registry)
    password = secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="translation-data")  # the main default
    events_queue = notifying_queue("translation-data", "translation-data-events", endpoint_url=s3_server)
    port = standalone.free_port()
    log = (root / "standalone.log").open("w")
    # Three GPU slots: the pipeline's two trainings must not hold the REST-triggered run's evaluation back.
    process = standalone.start(home, port, dags=dags, gpu_slots=3, extra_env={
        "MT_DATA_URI": "",  # whatever the developer's shell says: the main DAG in its unscheduled state
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "MT_ARTIFACT_ROOT": str(root / "artifacts"),
        "AWS_ENDPOINT_URL": s3_server,
        "MT_DATA_EVENTS_QUEUE": events_queue,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # The DAG files do not change during the session: parse each once, not every 30 s (seconds of CPU each).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
        "AIRFLOW__API__HOST": "127.0.0.1",  # nothing but this machine talks to it
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__API__EXPOSE_STACKTRACE": "True",
    }, stdout=log, stderr=subprocess.STDOUT)
    live = LiveAirflow(url=f"http://127.0.0.1:{port}", root=root, home=home, data=data,
                       artifacts=root / "artifacts", registry=registry, model=model, password=password,
                       process=process)
    try:
        wait_until(lambda: _ready(live), 420, "airflow standalone to serve every DAG", every=2)
        yield live
    except BaseException:
        log.flush()
        print((root / "standalone.log").read_text()[-5000:])
        raise
    finally:
        _stop_everything(process, home)
        log.close()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright (which never downloads a browser here). Playwright
    gives each launch a fresh profile folder of its own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def ui(browser, live_airflow):
    """A page logged in to the Airflow UI through its own login form, as a person would."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        log_in(page, live_airflow.url, live_airflow.password)
        yield page
    finally:
        context.close()


@pytest.fixture
def screenshot(live_airflow):
    """Save a page's picture as `<name>.png`: into $MT_SCREENSHOTS (docs/ for the README), else the live folder.
    Pictures of the runs' outcomes are the README's only when taken from the demo's real runs
    (devtools/demo_screenshots.py): the live tests' tiny models score BLEU 0, so theirs stay in the live folder
    (`readme=False`)."""
    live_folder = live_airflow.root / "screenshots"

    def save(page, name: str, readme: bool = True, **options) -> Path:
        folder = Path(os.environ.get(SCREENSHOTS_ENV) or live_folder) if readme else live_folder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), **options)
        return path

    return save
