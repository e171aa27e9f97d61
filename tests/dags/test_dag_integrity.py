"""DAG integrity: the DAG files parse, do nothing at parse time, and expose the documented interface."""

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tasks.config import PipelineParams, param_specs

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["translation_finetune"]


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "translation_finetune" in dagbag.dag_ids


def test_parsing_does_no_io_and_no_lookups(tmp_path):
    env = {**__import__("os").environ, "AIRFLOW_HOME": str(tmp_path), "PYTHONPATH":
           f"{REPO}:{REPO / 'plugins'}", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("parse_probe.py")), str(DAGS)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["import_errors"] == {}
    assert "translation_finetune" in probe["dag_ids"]
    assert probe["opened"] == [] and probe["connected"] == [] and probe["lookups"] == []


def test_run_policy(dag):
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.doc_md and "### Keep a translation model fresh" in dag.doc_md
    assert {"mlops", "translation"} <= set(dag.tags)


def test_without_a_data_prefix_the_main_dag_is_not_scheduled_and_says_how_to_schedule_it(dagbag, dag):
    # The form's default data_uri is a placeholder bucket: nothing may retrain, or poll, against it by itself.
    assert dag.schedule is None
    assert dag.description == "Not scheduled: MT_DATA_URI is not set. Runs only when triggered."
    assert "### Not scheduled yet" in dag.doc_md and "Set `MT_DATA_URI`" in dag.doc_md
    assert dag.params["data_uri"] == param_specs()["data_uri"]["default"]  # a manual run still has a default
    watched = {a.uri for t in dagbag.dags["translation_data_watcher"].tasks for a in t.outlets}
    assert not any(uri.startswith("s3://translation-data/en-de/") for uri in watched)


def test_a_data_prefix_schedules_the_main_dag_weekly_and_on_new_data(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import AssetOrTimeSchedule

    monkeypatch.setenv("MT_DATA_URI", "s3://acme-mt/en-de/incoming/")
    monkeypatch.setenv("MT_HUB_REPO_ID", "acme/opus-mt-en-de-support")
    bag = DagBag(dag_folder=str(DAGS))
    dag = bag.dags["translation_finetune"]
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.params["hub_repo_id"] == "acme/opus-mt-en-de-support"
    assert dag.timetable.timetable.expression == "0 0 * * 0"  # @weekly
    assert dag.timetable.asset_condition.uri == "s3://acme-mt/en-de/incoming"
    assert dag.params["data_uri"] == "s3://acme-mt/en-de/incoming/"
    assert dag.description == "Retrains weekly and on new data under s3://acme-mt/en-de/incoming/ (MT_DATA_URI)."
    watcher = bag.dags["translation_data_watcher"]
    assert "s3://acme-mt/en-de/incoming" in {a.uri for t in watcher.tasks for a in t.outlets}
    assert watcher.timetable.expression == "*/10 * * * *"


@pytest.mark.parametrize("value, why", [
    ("", "MT_DATA_URI is not set"),
    ("/srv/elsewhere/en-de", "MT_DATA_URI='/srv/elsewhere/en-de' is not allowed: it is outside the local roots"),
    ("file:///data/en-de", "MT_DATA_URI='file:///data/en-de' is not allowed: only s3://bucket/... and absolute"),
])
def test_a_data_prefix_the_deployment_does_not_allow_leaves_the_main_dag_unscheduled(value, why):
    from mt_airflow.pipelines import main_pipeline

    main = main_pipeline({"MT_DATA_URI": value, "MT_LOCAL_DATA_ROOTS": "/srv/mt-data"})
    assert (main.data_uri, main.schedule, main.params) == (None, None, {})
    assert main.description.startswith(f"Not scheduled: {why}")


def test_a_data_prefix_without_a_hub_repository_leaves_the_main_dag_unscheduled():
    """A scheduled run takes no form: with the placeholder repository, every week would train and then fail to
    publish (the data never consumed, so the next week trains on it again)."""
    from mt_airflow.pipelines import main_pipeline

    env = {"MT_DATA_URI": "s3://acme-mt/en-de/incoming/", "MT_LAUNCHER": "kubernetes"}
    main = main_pipeline(env)
    assert (main.schedule, main.params) == (None, {"launcher": "kubernetes"})  # a trigger by hand still runs there
    assert main.description == ("Not scheduled: MT_HUB_REPO_ID is not set: its runs would publish to the form's "
                                "placeholder my-org/opus-mt-en-de-domain. Runs only when triggered.")
    main = main_pipeline({**env, "MT_HUB_REPO_ID": "no-slash"})
    assert main.schedule is None and main.description.startswith("Not scheduled: MT_HUB_REPO_ID='no-slash' is not "
                                                                  "allowed: ")
    main = main_pipeline({**env, "MT_HUB_REPO_ID": " acme/opus-mt-en-de-support "})
    assert (main.schedule, main.params["hub_repo_id"]) == ("@weekly", "acme/opus-mt-en-de-support")


def test_io_steps_retry_with_backoff(dag):
    for task_id in ("prepare", "language.pull", "publish", "mark_consumed", "language.train"):
        task = dag.get_task(task_id)
        assert task.retries >= 1, task_id
    for task_id in ("prepare", "language.pull", "publish", "mark_consumed"):
        task = dag.get_task(task_id)
        assert task.retry_exponential_backoff, task_id
        assert task.max_retry_delay <= timedelta(minutes=10)


def test_a_failed_release_gate_or_publish_reaches_a_leaf_that_fails_the_run(dag):
    verdict = dag.get_task("release_verdict")
    assert not verdict.downstream_task_ids and {"release_gate", "publish"} <= verdict.upstream_task_ids
    assert dag.get_task("summary").upstream_task_ids == {"prepare", "mark_consumed"}  # runs after anything


def test_task_order(dag):
    chain = ["prepare", "language.pull", "language.validate", "language.split", "language.champion",
             "language.train", "language.evaluate", "language.gate", "release_gate", "publish", "mark_consumed",
             "summary"]
    for upstream, downstream in zip(chain, chain[1:]):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)


@pytest.mark.parametrize("task_id, rule, why", [
    ("language.validate", "all_success", "a pull with nothing new skips everything after it, in its language"),
    ("release_gate", "none_failed", "languages that ended early do not hold back the others"),
    ("mark_consumed", "all_done", "each language decides whether its data was consumed (tasks/publish/release.py)"),
    ("summary", "none_failed", "reports a run that ended early or failed, too (it follows mark_consumed only)"),
    ("release_verdict", "none_failed", "a leaf: a failed release gate or publish fails the run"),
])
def test_trigger_rules(dag, task_id, rule, why):
    assert dag.get_task(task_id).trigger_rule == rule, why


def test_each_language_runs_its_steps_in_a_mapped_task_group_of_its_own(dag):
    from airflow.sdk.definitions.mappedoperator import MappedOperator
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    group = dag.task_group_dict["language"]
    assert isinstance(group, MappedTaskGroup)
    assert {t.task_id for t in group} == {f"language.{step}" for step in (
        "pull", "validate", "split", "champion", "train", "evaluate", "gate")}
    mapped = {t.task_id for t in dag.tasks if isinstance(t, MappedOperator)}
    assert mapped == {"publish", "mark_consumed", "learning_curve_point"}


def test_gpu_steps_share_the_gpu_pool_and_failures_are_reported(dag):
    from mt_airflow.notify import WebhookNotifier

    assert {t.task_id for t in dag.tasks if t.pool == "gpu"} == {"language.validate", "language.train",
                                                                  "language.evaluate", "learning_curve_point"}
    assert isinstance(dag.on_failure_callback, WebhookNotifier)


@pytest.mark.parametrize("task_id, hours", [("language.train", 24), ("learning_curve_point", 24),
                                            ("language.evaluate", 6), ("language.validate", 6)])
def test_gpu_steps_time_out_and_stop_their_work(dag, task_id, hours):
    # The deployment's defaults (MT_TRAIN_TIMEOUT_HOURS, MT_EVALUATE_TIMEOUT_HOURS, MT_VALIDATE_TIMEOUT_HOURS); on timeout Airflow calls
    # on_kill, which stops the pod, container or subprocess (tests/plugins/test_launcher_kill.py).
    from airflow.sdk import BaseOperator

    task = dag.get_task(task_id)
    assert task.execution_timeout == timedelta(hours=hours)
    assert task.operator_class.on_kill is not BaseOperator.on_kill


def test_params_are_the_config_schema(dag):
    specs = param_specs()
    assert set(dag.params) == set(PipelineParams.model_fields)
    for name, spec in specs.items():
        param = dag.params.get_param(name)
        assert param.value == spec["default"], name
        assert param.description == spec["description"], name
        assert param.schema["title"] == spec["title"], name
        assert param.schema["type"] == spec["type"], name
    for required in ("data_uri", "source_lang", "target_lang", "base_model", "min_bleu_gain", "hub_repo_id",
                     "push_to_hub", "launcher"):
        assert required in dag.params
    assert dag.params.get_param("base_model").value == "Helsinki-NLP/opus-mt-en-de"


def test_a_pull_with_nothing_new_skips_the_run_and_says_why(dag, tmp_path):
    from airflow.sdk.exceptions import AirflowSkipException

    from support.corpora import digit_pairs, write_jsonl
    from support.runs import make_run
    from tasks.data import consumed, validate

    incoming = tmp_path / "incoming"
    write_jsonl(incoming / "a.jsonl", digit_pairs(5))
    first = make_run(tmp_path / "artifacts", run_id="run-1", data_uri=str(incoming), min_clean_pairs=1)
    assert dag.get_task("language.pull").python_callable(first.run_dir)["files"] == 1
    validate.run(first)  # what the validate task's subprocess runs
    with pytest.raises(AirflowSkipException, match="nothing consumed: its gate did not run"):
        dag.get_task("mark_consumed").python_callable(first.run_dir)
    consumed.commit(first)  # as if its gate had decided
    second = make_run(tmp_path / "artifacts", run_id="run-2", data_uri=str(incoming))
    with pytest.raises(AirflowSkipException, match="nothing new under .*incoming: all 1 data object"):
        dag.get_task("language.pull").python_callable(second.run_dir)
    summary = dag.get_task("summary").python_callable([second.run_dir])
    assert summary["pairs"][0]["data"].startswith("nothing new under")


def _required_in_the_form(schema: dict) -> bool:
    """Airflow 3.3's trigger form (ui/dist, the field's `required`): a Param is required when its schema has a
    `type` that does not admit null; it flags a required Param whose value is null or "" and then keeps the
    Trigger button disabled."""
    kind = schema.get("type")
    return bool(kind) and not (isinstance(kind, list) and "null" in kind)


def test_the_trigger_form_can_be_submitted_with_the_defaults(dag):
    flagged = [name for name in dag.params
               if _required_in_the_form(dag.params.get_param(name).schema)
               and dag.params.get_param(name).value in (None, "")]
    assert flagged == []
    optional = {name for name in dag.params if not _required_in_the_form(dag.params.get_param(name).schema)}
    assert {"data_snapshot", "general_eval_uri", "replay_data_uri", "registry_uri", "target_langs", "skip_filters",
            "learning_curve_fractions", "target_base_models"} <= optional
    assert not any("anyOf" in dag.params.get_param(name).schema for name in dag.params)  # the form ignores it
    dag.params.validate()  # the defaults are valid values


def test_every_step_that_touches_storage_retries_with_backoff(dag):
    """Transient S3 errors are retried (mt_airflow.retry decides which are), validate's included."""
    for task_id in ("prepare", "language.pull", "language.validate", "language.split", "language.champion",
                    "language.gate", "release_gate", "mark_consumed"):
        task = dag.get_task(task_id)
        assert task.retries >= 3 and task.retry_exponential_backoff, task_id


def test_a_run_started_by_new_data_pulls_what_is_unconsumed_not_a_snapshot_of_the_announcement(dag, tmp_path,
                                                                                               monkeypatch):
    """An event run that took the announced keys as its snapshot retrained keys consumed since, and the keys of
    a failed event run, announced once, were never trained on by a pipeline that only runs on events."""
    from types import SimpleNamespace

    from tasks import config

    monkeypatch.setenv("MT_ARTIFACT_ROOT", str(tmp_path))
    events = {"asset": [SimpleNamespace(extra={"new_keys": ["s3://data/en-de/new.jsonl"]})]}
    values = {**PipelineParams().model_dump(), "data_uri": "s3://data/en-de/"}
    (run_dir,) = dag.get_task("prepare").python_callable(
        params=values, dag_run=SimpleNamespace(dag_id="translation_finetune", run_id="asset_triggered__1",
                                               run_type="asset_triggered"),
        triggering_asset_events=events)
    assert config.load(run_dir).data_snapshot == []  # pull goes incremental: everything not consumed yet


def test_a_hub_connection_the_deployment_does_not_allow_is_refused_before_the_run_starts(dag, tmp_path, monkeypatch):
    """It was refused only where the token is read, the champion step, after pull and validate (whose alignment
    screen runs on a GPU) had run."""
    from types import SimpleNamespace

    from airflow.sdk.api.datamodels._generated import DagRunType

    from mt_airflow.hub import HubConnectionNotAllowed

    monkeypatch.setenv("MT_ARTIFACT_ROOT", str(tmp_path / "runs"))
    monkeypatch.delenv("MT_HUB_CONN_IDS", raising=False)
    values = {**PipelineParams().model_dump(), "data_uri": "s3://data/en-de/", "hub_conn_id": "warehouse_db"}
    prepare = dag.get_task("prepare").python_callable
    run = SimpleNamespace(dag_id="translation_finetune", run_id="manual__1", run_type=DagRunType.MANUAL)
    with pytest.raises(HubConnectionNotAllowed, match="'warehouse_db' is not a Hub token source"):
        prepare(params=values, dag_run=run)
    assert list(tmp_path.iterdir()) == []
    prepare(params={**values, "publish_target": "local", "registry_uri": str(tmp_path / "registry")}, dag_run=run)
    other = SimpleNamespace(dag_id="translation_finetune", run_id="manual__2", run_type=DagRunType.MANUAL)
    prepare(params={**values, "push_to_hub": False}, dag_run=other)  # nothing reads the connection then


def test_a_backfill_run_is_refused_before_it_writes_anything(dag, tmp_path, monkeypatch):
    """Airflow runs a backfill's runs at once, beside the scheduled run (max_active_runs counts per backfill), and
    each would pull the same new data: two first runs could each freeze a test set and train on the other's."""
    from types import SimpleNamespace

    from airflow.sdk.api.datamodels._generated import DagRunType  # what a task's dag_run carries
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("MT_ARTIFACT_ROOT", str(tmp_path))
    values = {**PipelineParams().model_dump(), "data_uri": "s3://data/en-de/"}
    prepare = dag.get_task("prepare").python_callable
    with pytest.raises(AirflowFailException, match="backfill runs are refused: .* Trigger one run instead"):
        prepare(params=values, dag_run=SimpleNamespace(dag_id="translation_finetune", run_id="backfill__2026-12-01",
                                                       run_type=DagRunType.BACKFILL))
    assert list(tmp_path.iterdir()) == []
    for kind in (DagRunType.SCHEDULED, DagRunType.MANUAL, DagRunType.ASSET_TRIGGERED):
        prepare(params=values, dag_run=SimpleNamespace(dag_id="translation_finetune", run_id=f"{kind}__1",
                                                       run_type=kind))


def test_runs_nobody_triggers_by_hand_train_with_the_deployments_launcher(monkeypatch):
    """A run the schedule or new data starts takes no form: its launcher is the DAG's default, which a compose or
    Kubernetes deployment sets with MT_LAUNCHER, or its GPU steps would run on the worker, with no GPU."""
    from airflow.dag_processing.dagbag import DagBag

    from mt_airflow.pipelines import main_pipeline

    monkeypatch.setenv("MT_DATA_URI", "s3://acme-mt/en-de/incoming/")
    monkeypatch.setenv("MT_HUB_REPO_ID", "acme/opus-mt-en-de-support")
    monkeypatch.setenv("MT_LAUNCHER", "kubernetes")
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert {dag_id: bag.dags[dag_id].params["launcher"] for dag_id in bag.dag_ids
            if dag_id.startswith("translation_finetune")} == {  # pipelines.yaml's defaults say kubernetes too
        dag_id: "kubernetes" for dag_id in bag.dag_ids if dag_id.startswith("translation_finetune")}
    main = main_pipeline({"MT_DATA_URI": "s3://acme-mt/en-de/incoming/", "MT_HUB_REPO_ID": "acme/mt",
                          "MT_LAUNCHER": "slurm"})
    assert (main.schedule, main.params) == (None, {})
    assert main.description == ("Not scheduled: MT_LAUNCHER='slurm' is not a launcher (local, docker, kubernetes). "
                                "Runs only when triggered.")
