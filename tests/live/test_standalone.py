"""Against a live `airflow standalone`: a REST API trigger with a conf, a retrain started by new data through
the watcher's Asset event, the promotion-history page in a real headless Chromium, and a clean stop.

The runs are started together (module fixture `runs`) so that both trainings overlap; every test then reads
what they left: run states and notes from the REST API, files from the artifact store, the page from the
API server that hosts the plugin.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from support.live import PIPELINE, airflow_processes_of
from support.multilingual import TINY_RECIPE, digit_pairs_to, write_pair_data

pytestmark = pytest.mark.live  # make test-live

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def runs(live_airflow):
    live = live_airflow
    write_pair_data(live.data, "de", digit_pairs_to("de", 1200, seed=5))
    write_pair_data(live.data, "nl", digit_pairs_to("nl", 1200, seed=6))
    with live.api() as api:
        for dag_id in ("translation_finetune", "translation_data_watcher", PIPELINE):
            assert api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        _fail_the_catch_up_run(api)
        # The README's example: a manual run with a conf, here one the gate must refuse (a short training).
        conf = {**TINY_RECIPE, "data_uri": str(live.data / "en-de"), "base_model": str(live.model),
                "hub_repo_id": "mlops/digits-en-de", "publish_target": "local", "registry_uri": str(live.registry),
                "max_steps": 20, "min_bleu_gain": 100.0}
        manual = api.post("/api/v2/dags/translation_finetune/dagRuns", json={"logical_date": None, "conf": conf})
        assert manual.status_code == 200, manual.text
        watcher = api.post("/api/v2/dags/translation_data_watcher/dagRuns", json={"logical_date": None})
        assert watcher.status_code == 200, watcher.text
    watched = live.wait_for_run("translation_data_watcher", watcher.json()["dag_run_id"], timeout=300)
    data_run = _wait_for_asset_triggered_run(live)
    return {"manual": live.wait_for_run("translation_finetune", manual.json()["dag_run_id"]),
            "watcher": watched, "data": live.wait_for_run(PIPELINE, data_run["dag_run_id"])}


def _fail_the_catch_up_run(api, timeout: float = 30) -> None:
    """Unpausing a weekly DAG starts a run for the latest week (catchup=False still runs the last one). Here
    it would pull the production default prefix, fail after its retries and hold the REST-triggered run
    behind it (max_active_runs=1), so it is marked failed, as an operator would."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scheduled = [r for r in api.get("/api/v2/dags/translation_finetune/dagRuns").json()["dag_runs"]
                     if r["run_type"] == "scheduled"]
        if scheduled:
            for run in scheduled:
                api.patch(f"/api/v2/dags/translation_finetune/dagRuns/{run['dag_run_id']}", json={"state": "failed"})
            return
        time.sleep(1)


def _wait_for_asset_triggered_run(live, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    with live.api() as api:
        while time.monotonic() < deadline:
            found = [r for r in api.get(f"/api/v2/dags/{PIPELINE}/dagRuns").json()["dag_runs"]
                     if r["run_type"] == "asset_triggered"]
            if found:
                return found[0]
            time.sleep(2)
    raise TimeoutError(f"no asset-triggered run of {PIPELINE} within {timeout}s")


def test_a_run_triggered_through_the_rest_api_with_a_conf(runs, live_airflow):
    manual = runs["manual"]
    assert manual["state"] == "success" and manual["run_type"] == "manual"
    assert manual["conf"]["min_bleu_gain"] == 100.0
    # Refused is a successful end; the note written by the listener says why, in one line.
    assert manual["note"].startswith("refused: BLEU gain over base "), manual["note"]
    assert "< min_bleu_gain 100.0" in manual["note"]


def test_the_rest_api_rejects_a_conf_that_breaks_the_params_schema(live_airflow):
    with live_airflow.api() as api:
        response = api.post("/api/v2/dags/translation_finetune/dagRuns",
                            json={"logical_date": None, "conf": {"min_bleu_gain": "lots"}})
    assert response.status_code == 400 and "min_bleu_gain" in response.text


def test_new_data_starts_the_pipeline_which_trains_on_exactly_the_announced_keys(runs, live_airflow):
    live = live_airflow
    with live.api() as api:
        events = api.get("/api/v2/assets/events", params={"source_dag_id": "translation_data_watcher"}).json()
    announced = [e for e in events["asset_events"] if e["extra"].get("new_keys")]
    assert len(announced) == 1
    keys = announced[0]["extra"]["new_keys"]
    assert keys == [str(live.data / "en-de" / "part.jsonl"), str(live.data / "en-nl" / "part.jsonl")]

    data_run = runs["data"]
    assert data_run["state"] == "success", data_run
    assert data_run["note"].startswith("promoted all pairs | en-de promoted: +"), data_run["note"]

    run_dir = live.artifacts / PIPELINE / data_run["dag_run_id"].replace(":", "_").replace("+", "_")
    for pair, key in zip(("en-de", "en-nl"), keys):
        config = json.loads((run_dir / "pairs" / pair / "config.json").read_text())
        assert config["data_snapshot"] == [key]
        assert json.loads((run_dir / "pairs" / pair / "publish.json").read_text())["published"]
    index = json.loads((live.registry / "mlops" / "digits-nl" / "index.json").read_text())
    assert index  # each language's model went to its own repository: {hub_repo_id}-{tgt}


def test_a_watcher_run_that_finds_nothing_new_starts_nothing(runs, live_airflow):
    live = live_airflow
    with live.api() as api:
        before = api.get(f"/api/v2/dags/{PIPELINE}/dagRuns").json()["total_entries"]
        run_id = api.post("/api/v2/dags/translation_data_watcher/dagRuns", json={"logical_date": None}).json()["dag_run_id"]
        assert live.wait_for_run("translation_data_watcher", run_id, timeout=300)["state"] == "success"
        states = {t["task_id"]: t["state"] for t in
                  api.get(f"/api/v2/dags/translation_data_watcher/dagRuns/{run_id}/taskInstances").json()["task_instances"]}
        time.sleep(10)  # room for the scheduler to (wrongly) start a run
        after = api.get(f"/api/v2/dags/{PIPELINE}/dagRuns").json()["total_entries"]
    assert set(states.values()) == {"skipped"}
    assert after == before


def test_the_promotion_history_page_in_a_browser(runs, live_airflow):
    from playwright.sync_api import sync_playwright

    live = live_airflow
    manual_id, data_id = runs["manual"]["dag_run_id"], runs["data"]["dag_run_id"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            anonymous = browser.new_page()
            assert anonymous.goto(f"{live.url}/mt-history/").status == 401  # plugin apps check the login
            context = browser.new_context()
            context.add_cookies([{"name": "_token", "value": live.token, "url": live.url}])
            page = context.new_page()
            # The page as the Airflow UI shows it: its nav entry, framed.
            page.goto(f"{live.url}/plugin/promotion-history")
            frame = page.frame_locator("iframe")
            frame.locator("h1", has_text="Promotion history").wait_for(timeout=60_000)
            assert frame.locator("section.pipeline").count() == 3  # main DAG + two pairs of the pipeline
            assert frame.locator(f"tr:has-text('{manual_id}')").count() == 1
            assert frame.locator(f"tr:has-text('{data_id}')").count() == 2  # one row per language
            assert frame.locator("svg.bleu-chart circle").count() == 3
            refused = frame.locator(f"tr:has-text('{manual_id}')")
            assert "refuse" in refused.inner_text() and "min_bleu_gain 100.0" in refused.inner_text()
            assert "run-" in frame.locator(f"section:has-text('(en-nl)') tr:has-text('{data_id}')").inner_text()
            refused.locator("a.report").click()
            frame.locator("h1", has_text="Report").wait_for(timeout=30_000)
            report = frame.locator("body").inner_text()
            assert manual_id in report and "gate.json" in report and "min_bleu_gain 100.0" in report
        finally:
            browser.close()


def test_stopping_standalone_leaves_no_airflow_process_behind(live_airflow):
    from devtools import standalone

    assert airflow_processes_of(live_airflow.home)  # scheduler, API server, DAG processor, triggerer...
    standalone.stop(live_airflow.process)
    deadline = time.monotonic() + 30
    while airflow_processes_of(live_airflow.home) and time.monotonic() < deadline:
        time.sleep(1)
    assert airflow_processes_of(live_airflow.home) == []
    assert live_airflow.process.poll() is not None
