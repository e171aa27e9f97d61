"""Against a live `airflow standalone` on PostgreSQL: a REST API trigger with a conf, a retrain started by new
data through the watcher's Asset event, the main DAG waiting for its data prefix, the grid with the runs' notes
and the promotion-history page in a real headless Chromium, and a clean stop.

The runs are started together (module fixture `runs`) so that both trainings overlap; every test then reads
what they left: run states and notes from the REST API, files from the artifact store, the pages from the
API server that hosts the plugin. Their screenshots stay in the live folder: the README's pictures of runs come
from the demo's real runs (`make screenshots`, devtools/demo_screenshots.py).
"""

from __future__ import annotations

import json

import pytest

from support.live import EVENTS_DATA, PIPELINE, airflow_processes_of, wait_until
from support.multilingual import TINY_RECIPE, digit_pairs_to, write_pair_data

# The first test of a session also waits for Airflow to start and for the runs to train: on a loaded 2-core
# machine that took more than the suite's 15 minutes per test.
pytestmark = [pytest.mark.live, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def runs(live_airflow):
    live = live_airflow
    write_pair_data(live.data, "de", digit_pairs_to("de", 1200, seed=5))
    write_pair_data(live.data, "nl", digit_pairs_to("nl", 1200, seed=6))
    with live.api() as api:
        for dag_id in ("translation_finetune", "translation_data_watcher", PIPELINE):
            assert api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        # The README's example: a manual run with a conf, here one the gate must refuse (a short training).
        conf = {**TINY_RECIPE, "data_uri": str(live.data / "en-de"), "base_model": str(live.model),
                "hub_repo_id": "mlops/digits-en-de", "publish_target": "local", "registry_uri": str(live.registry),
                "max_steps": 20, "min_bleu_gain": 100.0}
        manual = api.post("/api/v2/dags/translation_finetune/dagRuns", json={"logical_date": None, "conf": conf})
        assert manual.status_code == 200, manual.text
        watcher = api.post("/api/v2/dags/translation_data_watcher/dagRuns", json={"logical_date": None})
        assert watcher.status_code == 200, watcher.text
    watched = live.wait_for_run("translation_data_watcher", watcher.json()["dag_run_id"], timeout=300)
    data_run = wait_until(lambda: _asset_triggered_run(live), 120, f"an asset-triggered run of {PIPELINE}")
    return {"manual": live.wait_for_run("translation_finetune", manual.json()["dag_run_id"]),
            "watcher": watched, "data": live.wait_for_run(PIPELINE, data_run["dag_run_id"])}


def _asset_triggered_run(live) -> dict | None:
    with live.api() as api:
        runs = api.get(f"/api/v2/dags/{PIPELINE}/dagRuns").json()["dag_runs"]
    return next((r for r in runs if r["run_type"] == "asset_triggered"), None)


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


def test_new_data_starts_the_pipeline_which_trains_on_the_announced_keys(runs, live_airflow):
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
        manifest = json.loads((run_dir / "pairs" / pair / "pull_manifest.json").read_text())
        # Not a snapshot of the announcement: what is unconsumed, which here is exactly the announced key.
        assert config["data_snapshot"] == [] and manifest["mode"] == "incremental"
        assert [o["uri"] for o in manifest["objects"]] == [key]
        assert json.loads((run_dir / "pairs" / pair / "publish.json").read_text())["published"]
    index = json.loads((live.registry / "mlops" / "digits-nl" / "index.json").read_text())
    assert index  # each language's model went to its own repository: {hub_repo_id}-{tgt}


def test_a_watcher_run_that_finds_nothing_new_starts_nothing(runs, live_airflow):
    live = live_airflow
    with live.api() as api:
        before = api.get(f"/api/v2/dags/{PIPELINE}/dagRuns").json()["total_entries"]
        run_id = api.post("/api/v2/dags/translation_data_watcher/dagRuns",
                          json={"logical_date": None}).json()["dag_run_id"]
        assert live.wait_for_run("translation_data_watcher", run_id, timeout=300)["state"] == "success"
        states = {t["task_id"]: t["state"] for t in
                  api.get(f"/api/v2/dags/translation_data_watcher/dagRuns/{run_id}/taskInstances").json()["task_instances"]}
        # What would start a run: an event of this watcher run, queued for the pipeline. There is none, so the
        # scheduler has nothing to start the pipeline with, now or later.
        events = api.get("/api/v2/assets/events", params={"source_run_id": run_id}).json()["total_entries"]
        queued = api.get(f"/api/v2/dags/{PIPELINE}/assets/queuedEvents").json()["total_entries"]
        after = api.get(f"/api/v2/dags/{PIPELINE}/dagRuns").json()["total_entries"]
    assert set(states.values()) == {"skipped"}
    assert (events, queued, after) == (0, 0, before)


def test_the_main_dag_waits_for_a_data_prefix_and_says_so(live_airflow):
    with live_airflow.api() as api:
        main = api.get("/api/v2/dags/translation_finetune").json()
        watched = api.get("/api/v2/dags/translation_data_watcher/tasks").json()["tasks"]
    assert main["timetable_summary"] is None and main["next_dagrun_run_after"] is None
    assert main["description"] == "Not scheduled: MT_DATA_URI is not set. Runs only when triggered."
    # The pipelines' prefixes only: the S3 one is listed daily, S3 notifications announce its files as they land.
    assert [t["doc_md"] for t in watched] == [f"Watches `{live_airflow.data}/`.", f"Watches `{EVENTS_DATA}`."]


def test_the_grid_shows_the_runs_note(runs, live_airflow, ui, screenshot):
    """The one-line outcome that the listener writes as the run's note, where people look: the run's page next
    to the grid, no log opened."""
    data_run = runs["data"]
    ui.goto(f"{live_airflow.url}/dags/{PIPELINE}/runs/{data_run['dag_run_id']}")
    ui.get_by_text(data_run["dag_run_id"]).first.wait_for()
    ui.get_by_text("promoted all pairs | en-de promoted: +").wait_for()
    ui.get_by_text("summary", exact=True).first.wait_for()  # the grid's task list has rendered
    screenshot(ui, "grid-run-note", readme=False)


def test_the_promotion_history_page_in_a_browser(runs, live_airflow, browser, ui, screenshot):
    live = live_airflow
    manual_id, data_id = runs["manual"]["dag_run_id"], runs["data"]["dag_run_id"]
    anonymous = browser.new_page()
    try:
        assert anonymous.goto(f"{live.url}/mt-history/").status == 401  # plugin apps check the login themselves
    finally:
        anonymous.close()
    # The page as the Airflow UI shows it, to the user logged in through the UI's form: its nav entry, framed.
    ui.goto(f"{live.url}/plugin/promotion-history")
    frame = ui.frame_locator("iframe")
    frame.locator("h1", has_text="Promotion history").wait_for(timeout=60_000)
    assert frame.locator("section.pipeline").count() == 3  # main DAG + two pairs of the pipeline
    assert frame.locator(f"tr:has-text('{manual_id}')").count() == 1
    assert frame.locator(f"tr:has-text('{data_id}')").count() == 2  # one row per language
    assert frame.locator("svg.bleu-chart circle").count() == 3
    refused = frame.locator(f"tr:has-text('{manual_id}')")
    assert "refuse" in refused.inner_text() and "min_bleu_gain 100.0" in refused.inner_text()
    assert " on 1 × cpu" in refused.inner_text()  # the training column: what the run's training cost, and where
    assert "run-" in frame.locator(f"section:has-text('(en-nl)') tr:has-text('{data_id}')").inner_text()
    screenshot(ui, "promotion-history", readme=False, full_page=True)
    refused.locator("a.report").click()
    frame.locator("h1", has_text="Report").wait_for(timeout=30_000)
    report = frame.locator("body").inner_text()
    assert manual_id in report and "gate.json" in report and "min_bleu_gain 100.0" in report
    assert "What this run cost" in report and "training: " in report and " tokens/s" in report
    # The launcher's record of each try, as the scheduler ran it: the bill's line and the record itself.
    assert "the steps, from launch to end: validate " in report and "launches.json" in report
    with live.api() as api:  # the JSON answers the same user (here the admin: every pipeline)
        pipelines = api.get("/mt-history/api/history").json()
    assert sorted(pipelines) == ["translation_finetune", f"{PIPELINE} (en-de)", f"{PIPELINE} (en-nl)"]


def test_stopping_standalone_leaves_no_airflow_process_behind(live_airflow):
    from devtools import standalone

    assert airflow_processes_of(live_airflow.home)  # scheduler, API server, DAG processor, triggerer...
    standalone.stop(live_airflow.process)
    wait_until(lambda: not airflow_processes_of(live_airflow.home), 30, "every Airflow process to end")
    assert live_airflow.process.poll() is not None
