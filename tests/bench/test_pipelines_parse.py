"""The pipelines' parse benchmark still runs (its --tiny mode): Airflow's DagBag over a generated pipelines.yaml,
every entry a DAG, its JSON last line. How long parsing takes is the benchmark's business, not a test's."""

import sys

import yaml

from support.runs import REPO_ROOT, tiny_bench


def test_the_benchmark_parses_every_generated_pipeline_and_reports_one_json_line():
    result = tiny_bench("pipelines_parse.py")
    assert (result["pipelines"], result["languages"], result["dags"]) == (3, 2, 4)  # and the main DAG
    assert result["parse_seconds"] > 0 and result["import_timeout_seconds"] > 0


def test_the_generated_entries_are_valid_pipelines(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from pipelines_parse import pipelines_yaml

    from mt_airflow import pipelines

    path = tmp_path / "pipelines.yaml"
    path.write_text(pipelines_yaml(4, 3), encoding="utf-8")
    loaded, broken = pipelines.load(path)
    assert broken == [] and len(loaded) == 4
    assert yaml.safe_load(path.read_text())["pipelines"][0]["target_langs"] == ["de", "nl", "fr"]
