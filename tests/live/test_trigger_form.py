"""The trigger form in a real browser (Debian's Chromium, driven by Playwright), against the live standalone.

For the main DAG and for a pipelines.yaml DAG: with its defaults the form can be submitted; a changed Param
reaches the run's config.json (written by `prepare`); a value the Params' schema refuses is flagged next to its
field, keeps the Trigger button disabled, and the REST API answers the same value with 400. Selectors are the
form's own: Airflow names each Param's input `element_<name>` and groups label, input, help and error text in a
Chakra field (`[data-part=root][role=group]`).
"""

from __future__ import annotations

import json

import pytest

from support.live import PIPELINE, REFUSED_CONFS, wait_until
from tasks.config import param_specs

# The first test of a session also waits for Airflow to start and for the runs to train: on a loaded 2-core
# machine that took more than the suite's 15 minutes per test.
pytestmark = [pytest.mark.live, pytest.mark.timeout(1800)]


def open_trigger_form(page, url: str, dag_id: str):
    page.goto(f"{url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(f"Trigger Dag - {dag_id}").wait_for()
    return dialog


def param_input(page, dialog, name: str):
    """A Param's input, with its section of the form opened."""
    found = dialog.locator(f"[name=element_{name}]")
    if not found.is_visible():
        dialog.get_by_role("button", name=param_specs()[name]["section"], exact=True).click()
    found.wait_for()
    return found


def param_field(page, dialog, name: str):
    """Label, input, help text and error text of one Param."""
    return dialog.locator("[data-part=root][role=group]", has=page.locator(f"[name=element_{name}]"))


def trigger_button(dialog):
    return dialog.get_by_role("button", name="Trigger", exact=True)


def manual_run_ids(live, dag_id: str) -> set[str]:
    with live.api() as api:
        runs = api.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]
    return {run["dag_run_id"] for run in runs if run["run_type"] == "manual"}


@pytest.mark.parametrize("dag_id, name, value, shot", [
    ("translation_finetune", "min_bleu_gain", 2.5, "trigger-form"),
    (PIPELINE, "min_bleu_gain", 0.25, None),
])
def test_the_form_triggers_a_run_with_the_value_changed_in_it(ui, live_airflow, screenshot, dag_id, name, value,
                                                             shot):
    live = live_airflow
    before = manual_run_ids(live, dag_id)
    dialog = open_trigger_form(ui, live.url, dag_id)
    assert trigger_button(dialog).is_enabled()  # the defaults alone can be submitted
    field = param_input(ui, dialog, name)
    field.fill(str(value))
    field.blur()
    assert field.input_value() == str(value)
    if shot:
        field.evaluate("element => element.scrollIntoView({block: 'center'})")
        screenshot(ui, shot)
    trigger_button(dialog).click()
    (run_id,) = wait_until(lambda: manual_run_ids(live, dag_id) - before, 60, f"the run the form started on {dag_id}")

    config = live.run_dir(dag_id, run_id) / "config.json"
    wait_until(config.exists, 300, f"prepare to write {config}")
    assert json.loads(config.read_text())[name] == value
    if dag_id == PIPELINE:  # each language's sub-run carries it too
        for pair in ("en-de", "en-nl"):
            assert json.loads((config.parent / "pairs" / pair / "config.json").read_text())[name] == value
    # The rest of the run is no business of the form's: the main DAG's default prefix is a placeholder with no
    # data, on which pull fails and retries. It is ended as an operator would, so that it holds nothing up.
    # Marking it failed can race the scheduler finishing one of its tasks (the API answered 500 once in CI):
    # wait until the run is over, asking for it to fail until it is.
    def ended(api) -> bool:
        url = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
        if api.get(url).json()["state"] in ("success", "failed"):
            return True
        api.patch(url, json={"state": "failed"})
        return api.get(url).json()["state"] in ("success", "failed")

    with live.api() as api:
        wait_until(lambda: ended(api), 120, f"run {run_id} of {dag_id} to end", every=2.0)


@pytest.mark.parametrize("dag_id, name, shot", [
    ("translation_finetune", "hub_repo_id", "trigger-form-invalid"),
    (PIPELINE, "data_uri", None),
])
def test_a_value_the_schema_refuses_is_flagged_at_its_field_and_refused_by_the_rest_api(ui, live_airflow, screenshot,
                                                                                       dag_id, name, shot):
    live = live_airflow
    dialog = open_trigger_form(ui, live.url, dag_id)
    field = param_input(ui, dialog, name)
    field.fill("")
    field.blur()
    row = param_field(ui, dialog, name)
    assert "This field is required" in row.inner_text()  # next to the field, in its own group
    assert not trigger_button(dialog).is_enabled()
    if shot:
        row.evaluate("element => element.scrollIntoView({block: 'center'})")
        screenshot(ui, shot)
    with live.api() as api:
        refused = api.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {name: ""}})
    assert refused.status_code == 400 and f"Invalid input for param {name}" in refused.text


def test_a_place_the_deployment_does_not_allow_is_answered_in_words(ui, live_airflow):
    """The Params' place formats reach the API server through the plugin: the form's Trigger and the REST API
    are answered with what is allowed and the setting that governs it, not with a regular expression; so are the
    confs `airflow dags test` refuses (a local base_model outside the roots, an S3 URI without a bucket, a Hub id
    with '..'), through the REST API."""
    live, dag_id = live_airflow, "translation_finetune"
    before = manual_run_ids(live, dag_id)
    dialog = open_trigger_form(ui, live.url, dag_id)
    field = param_input(ui, dialog, "base_model")
    field.fill("/root/.ssh")
    field.blur()
    trigger_button(dialog).click()
    shown = ui.get_by_text("place this deployment allows", exact=False).first
    shown.wait_for(timeout=30_000)
    assert "MT_LOCAL_DATA_ROOTS" in shown.inner_text() and "(?" not in shown.inner_text()
    with live.api() as api:
        refused = api.post(f"/api/v2/dags/{dag_id}/dagRuns",
                           json={"logical_date": None, "conf": {"data_uri": "s3://x/in"}})
    assert refused.status_code == 400, refused.text
    assert "Invalid input for param data_uri" in refused.text and "place this deployment allows" in refused.text
    assert "MT_LOCAL_DATA_ROOTS" in refused.text and "(?" not in refused.text
    for conf, name, words in REFUSED_CONFS:  # the same confs `airflow dags test` refuses (tests/e2e)
        with live.api() as api:
            refused = api.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        assert refused.status_code == 400, (conf, refused.text)
        assert f"Invalid input for param {name}" in refused.text and words in refused.text, (conf, refused.text)
        assert "(?" not in refused.text and "^" not in refused.text, (conf, refused.text)
    assert manual_run_ids(live, dag_id) == before
