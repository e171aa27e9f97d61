"""Airflow-side pieces of the retraining workflow: the step launcher, the Hub hook and the DAG's Params."""

import os


def artifact_root() -> str:
    """Where run directories live (MT_ARTIFACT_ROOT), read when a task or a request needs it."""
    return os.environ.get("MT_ARTIFACT_ROOT") or os.path.join(os.environ.get("AIRFLOW_HOME", "."), "artifacts")
