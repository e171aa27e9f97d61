"""Hostile or careless trigger parameters are refused at the trigger, by the Params' schema (what the form and the
REST API check), and again when a worker builds the run's config, each with a message naming the field."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tasks import config, locations

DAGS = Path(__file__).resolve().parents[2] / "dags"

OUTSIDE = "/etc/translation-data/"  # outside the test deployment's roots (the temp folder and the repo)


def _build(**params):
    return config.build(params, dag_id="d", run_id="r", artifact_root="s3://artifacts/runs")


@pytest.fixture(scope="module")
def params():
    """The main DAG's Params as the API server holds them: from the serialized DAG, which validates a run's conf
    (`create_dagrun`: params.deep_merge(conf).validate()) for the REST API and the trigger form alike."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagBag(dag_folder=str(DAGS)).dags["translation_finetune"]
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).params


def _schema_refuses(params, values: dict) -> str:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError) as err:
        params.deep_merge(values).validate()
    return str(err.value)


HOSTILE = [
    # (params, field the message names, words in the message)
    ({"data_uri": "incoming/en-de"}, "data_uri", "must be absolute"),
    ({"data_uri": "s3://data/in/../gate.json"}, "data_uri", "'..' segment"),
    ({"data_uri": "s3://data/in//abs/path/"}, "data_uri", "empty segment"),
    ({"data_uri": "s3://x/in"}, "data_uri", "not an S3 bucket name"),
    ({"data_uri": "file:///etc/passwd"}, "data_uri", "only s3://bucket/... and absolute local paths"),
    ({"data_uri": "http://169.254.169.254/latest/"}, "data_uri", "only s3://bucket/..."),
    ({"data_uri": "s3://data/in\n/x"}, "data_uri", "control character"),
    ({"data_uri": OUTSIDE}, "data_uri", "outside the local roots"),
    ({"general_eval_uri": "/etc/passwd"}, "general_eval_uri", "outside the local roots"),
    ({"replay_data_uri": "../general"}, "replay_data_uri", "must be absolute"),
    ({"publish_target": "local", "registry_uri": "/var/lib/models"}, "registry_uri", "outside the local roots"),
    ({"data_uri": "s3://data/in/", "data_snapshot": ["s3://data/in/a.jsonl", "s3://other/secret.jsonl"]},
     "config", "must lie under data_uri"),
    ({"data_uri": "s3://data/in/", "data_snapshot": ["/etc/passwd"]}, "data_snapshot", "outside the local roots"),
    ({"data_uri": "s3://data/in/", "retract_data": ["s3://other/secret/"]}, "config", "must lie under data_uri"),
    ({"data_uri": "s3://data/in/", "retract_data": ["s3://data/in/../x"]}, "retract_data", "'..' segment"),
    ({"base_model": "/root/.ssh"}, "base_model", "outside the local roots"),
    ({"base_model": "../model"}, "base_model", "must be absolute"),
    ({"hub_repo_id": ".."}, "hub_repo_id", "not a Hub repository id"),
    ({"hub_repo_id": "../x"}, "hub_repo_id", "not a Hub repository id"),
    ({"hub_repo_id": "a/.."}, "hub_repo_id", "not a Hub repository id"),
    ({"hub_repo_id": "org/a/b"}, "hub_repo_id", "not a Hub repository id"),
    ({"num_train_epochs": float("inf")}, "num_train_epochs", "finite number"),
    ({"learning_rate": 1e300}, "learning_rate", "less than or equal to 1"),
    ({"seed": 2**80}, "seed", "less than or equal to 4294967295"),
    ({"num_beams": 10**6}, "num_beams", "less than or equal to 64"),
    ({"max_steps": 10**12}, "max_steps", "less than or equal to 10000000"),
]


@pytest.mark.parametrize("values, field, words", HOSTILE)
def test_the_run_config_refuses_it_naming_the_field(values, field, words):
    with pytest.raises(config.ConfigError) as err:
        _build(**values)
    assert f"- {field}:" in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("values, field, words", [case for case in HOSTILE if case[1] != "config"])
def test_the_trigger_refuses_it_before_a_run_exists(params, values, field, words):
    message = _schema_refuses(params, values)
    assert field in message
    assert "(?" not in message and "[a-z0-9]" not in message  # words, never the schema's regular expression
    if field in config.LOCATIONS or field == "base_model":
        assert re.search(r"is not a [\"']?(Hub model id .* or a )?place this deployment allows: s3://bucket/", message)
        assert "MT_LOCAL_DATA_ROOTS" in message  # the setting that governs it
    elif field == "hub_repo_id":
        assert re.search(r"is not a [\"']?Hub repository id namespace/name", message)


def test_a_symbolic_link_inside_a_root_cannot_lead_out_of_it(tmp_path):
    (tmp_path / "data").mkdir()
    os.symlink("/etc", tmp_path / "data" / "etc")
    roots = {locations.ROOTS_ENV: str(tmp_path / "data")}
    assert locations.problem(str(tmp_path / "data" / "in"), roots) is None
    assert "outside the local roots" in locations.problem(str(tmp_path / "data" / "etc"), roots)


def test_without_listed_roots_no_local_path_is_allowed():
    assert "lists no local roots" in locations.problem("/srv/data", {})
    assert locations.problem("s3://bucket/prefix/", {}) is None
    assert "/srv" not in locations.pattern({})


@pytest.mark.parametrize("good", [
    {"data_uri": "s3://data/in/"}, {"data_uri": "s3://my.bucket-1/a/b/c.jsonl"},
    {"base_model": "Helsinki-NLP/opus-mt-en-de"}, {"base_model": "t5-small"},
    {"hub_repo_id": "my-org/opus-mt-en-de-legal"}, {"seed": 2**32 - 1}, {"learning_rate": 1.0},
])
def test_sane_values_pass_both_checks(params, good):
    _build(**good)
    params.deep_merge(good).validate()


@pytest.mark.parametrize("store, field, value, words", [
    # Inside the store: another pipeline's frozen test set, or its cleaned copies, as training data.
    ("s3://artifacts/runs", "data_uri", "s3://artifacts/runs/other_dag/state/en-de-1234/", "inside the artifact store"),
    ("s3://artifacts/runs", "general_eval_uri", "s3://artifacts/runs/d/state/en-de-1/test_set.jsonl",
     "inside the artifact store"),
    ("s3://artifacts/runs", "replay_data_uri", "s3://artifacts/runs/", "inside the artifact store"),
    ("s3://artifacts/runs", "registry_uri", "s3://artifacts/runs/registry/", "inside the artifact store"),
    # Around the store: a pull would list the pipelines' own files as data.
    ("s3://artifacts/runs", "data_uri", "s3://artifacts/", "contains the artifact store"),
    ("{tmp}/store", "data_snapshot", ["{tmp}/store/d/run-1/raw/x.jsonl"], "inside the artifact store"),
    ("{tmp}/store", "data_uri", "{tmp}/", "contains the artifact store"),
])
def test_no_place_may_lie_inside_or_around_the_artifact_store(tmp_path, store, field, value, words):
    fill = lambda text: text.replace("{tmp}", str(tmp_path))  # noqa: E731
    store = fill(store)
    value = [fill(v) for v in value] if isinstance(value, list) else fill(value)
    values = {field: value}
    if field == "data_snapshot":
        values["data_uri"] = str(tmp_path / "store" / "d") + "/"
    with pytest.raises(config.ConfigError, match=f"{field}: .*{words}.*MT_ARTIFACT_ROOT"):
        config.build(values, dag_id="d", run_id="r", artifact_root=store)


@pytest.mark.parametrize("field, value, registry, words", [
    # Published releases inside a data prefix: every later run would pull config.json, index.json, eval/*.json.
    ("data_uri", "s3://data/legal/", "s3://data/legal/registry", "lies inside data_uri s3://data/legal/"),
    ("data_uri", "s3://data/legal/", "s3://data/", "contains data_uri s3://data/legal/"),
    ("general_eval_uri", "s3://data/general/", "s3://data/general/models", "lies inside general_eval_uri"),
    ("replay_data_uri", "s3://data/replay/", "s3://data/replay", "lies inside replay_data_uri"),
])
def test_a_local_registry_keeps_apart_from_every_place_read_as_data(field, value, registry, words):
    values = {"data_uri": "s3://data/other/", field: value, "publish_target": "local", "registry_uri": registry}
    with pytest.raises(config.ConfigError, match=f"registry_uri: '{registry}': it {words}.* pulled as data"):
        config.build(values, dag_id="d", run_id="r", artifact_root="s3://artifacts/runs")
    config.build({**values, "publish_target": "hub"}, dag_id="d", run_id="r", artifact_root="s3://artifacts/runs")
    config.build({**values, "registry_uri": "s3://models/registry"}, dag_id="d", run_id="r",
                 artifact_root="s3://artifacts/runs")  # apart: fine


def test_a_link_into_the_artifact_store_is_seen_through(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "store", tmp_path / "data" / "looks-like-data")
    with pytest.raises(config.ConfigError, match="inside the artifact store"):
        config.build({"data_uri": str(tmp_path / "data" / "looks-like-data") + "/"}, dag_id="d", run_id="r",
                     artifact_root=str(tmp_path / "store"))
    config.build({"data_uri": str(tmp_path / "data") + "/"}, dag_id="d", run_id="r",
                 artifact_root=str(tmp_path / "store"))  # a sibling is fine


_API_SERVER_CHECK = """
import json, sys
from airflow.serialization.serialized_objects import DagSerialization
from airflow.sdk.exceptions import ParamValidationError
if sys.argv[1] == "plugins":
    from airflow import plugins_manager
    plugins_manager.get_fastapi_plugins()  # what the API server does at start-up, which imports the plugins
dag = DagSerialization.from_dict(json.load(open(sys.argv[2])))
try:
    dag.params.deep_merge({"base_model": "/root/.ssh"}).validate()
    print("accepted")
except ParamValidationError as err:
    print(err)
"""


def test_the_api_server_answers_a_refused_place_in_words_once_it_has_loaded_the_plugins(tmp_path):
    """The API server holds only the serialized DAG (its Params' schemas), not the DAG file: the formats' checks
    reach it through the plugin. Without them the place would pass the trigger, for the worker to refuse."""
    import json
    import subprocess
    import sys

    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = tmp_path / "dag.json"
    dag = DagBag(dag_folder=str(DAGS)).dags["translation_finetune"]
    serialized.write_text(json.dumps(DagSerialization.to_dict(dag)))
    (tmp_path / "no-plugins").mkdir()
    answers = {how: subprocess.run([sys.executable, "-c", _API_SERVER_CHECK, how, str(serialized)],
                                   env={**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(folder)},
                                   capture_output=True, text=True, timeout=120).stdout.strip().splitlines()
               for how, folder in (("plugins", DAGS.parent / "plugins"), ("bare", tmp_path / "no-plugins"))}
    first = answers["plugins"][0]
    assert first.startswith("Invalid input for param base_model: '/root/.ssh' is not a "), answers
    assert "Hub model id" in first and "place this deployment allows: s3://bucket/" in first
    assert "MT_LOCAL_DATA_ROOTS" in "\n".join(answers["plugins"]) and "(?" not in "\n".join(answers["plugins"])
    assert answers["bare"][-1] == "accepted", answers  # without this plugin the trigger lets it through
