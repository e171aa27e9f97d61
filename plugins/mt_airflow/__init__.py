"""Airflow-side pieces of the retraining workflow: the step launcher, the Hub hook and the DAG's Params."""

import os


def artifact_root() -> str:
    """Where run directories live (MT_ARTIFACT_ROOT), read when a task or a request needs it; else `artifacts` in
    Airflow's home, `~/airflow` where AIRFLOW_HOME is unset, as Airflow's own: never the process's working
    directory, which the scheduler, the workers and the API server do not share."""
    return os.environ.get("MT_ARTIFACT_ROOT") or os.path.join(_airflow_home(), "artifacts")


def _airflow_home() -> str:
    """AIRFLOW_HOME expanded as Airflow expands it (airflow.configuration.get_airflow_home): `~` and `$VAR` in it
    name the same folder, not one under the working directory (an env file or a systemd unit leaves them as is)."""
    home = os.environ.get("AIRFLOW_HOME") or "~/airflow"
    for _ in range(8):  # nested variables; a bounded number of rounds, for one that names itself
        home, before = os.path.expanduser(os.path.expandvars(home)), home
        if home == before:
            break
    return home


def refuse_backfill(run_type: str) -> None:
    """A backfill is refused: Airflow runs its runs beside the scheduled ones and beside each other (it counts
    `max_active_runs` per backfill, up to its own limit), and a retrain pulls what is new now, not what was new at
    a past date, so each run would train on the same data, two first runs could each freeze a test set, and all but
    one would fail to publish. A run that fails this way is not retried."""
    # The task SDK's DagRunType is a str enum whose str() is its name ("DagRunType.BACKFILL"): compare its value.
    if getattr(run_type, "value", run_type) == "backfill":
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(
            "backfill runs are refused: a retrain pulls the data that is new now, whatever the run's date, and a "
            "backfill's runs would run at once, beside the scheduled run, on the same data. Trigger one run instead "
            "(Trigger DAG); the pipeline's schedule and data watcher start the others.")
