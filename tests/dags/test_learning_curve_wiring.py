"""The learning curve hangs beside the main chain: mapped points through the launcher, then one summary."""

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS)).dags["translation_finetune"]


def test_curve_points_are_mapped_launcher_tasks_after_the_languages(dag):
    points = dag.get_task("learning_curve_point")
    assert type(points).__name__ == "MappedOperator"
    assert points.operator_class.__name__ == "RunStepOperator"
    assert points.partial_kwargs["step"] == "curve"
    assert points.upstream_task_ids == {"plan_learning_curve"}
    # After every language's group (its split and its scores exist), skipped languages included.
    assert dag.get_task("plan_learning_curve").upstream_task_ids == {"prepare", "language.gate"}
    assert dag.get_task("plan_learning_curve").trigger_rule == "none_failed"
    assert dag.get_task("learning_curve").upstream_task_ids == {"prepare", "learning_curve_point"}


def test_the_candidate_never_waits_for_the_curve(dag):
    curve = {"plan_learning_curve", "learning_curve_point", "learning_curve"}
    for task_id in ("language.train", "language.evaluate", "language.gate", "publish", "summary"):
        assert not dag.get_task(task_id).get_flat_relative_ids(upstream=True) & curve, task_id
