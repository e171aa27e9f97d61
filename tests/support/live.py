"""What the live tests (tests/live/) share besides their fixture."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

PIPELINE = "translation_finetune__digits_en_de_nl"  # the tiny two-language pipeline of the live DAGs folder
EVENTS_PIPELINE = "translation_finetune__events_en_de"  # the one on S3 that S3 notifications start
EVENTS_DATA = "s3://translation-data/events/en-de/"

# Confs the Params refuse, the field named and the words the answer must hold: `airflow dags test`
# (tests/e2e/test_refused_params_cli.py) and the REST API (tests/live/test_trigger_form.py) answer them alike.
REFUSED_CONFS = [
    ({"base_model": "/root/.ssh"}, "base_model", "an absolute path under MT_LOCAL_DATA_ROOTS"),  # outside the roots
    ({"data_uri": "s3:///in/"}, "data_uri", "place this deployment allows: s3://bucket/..."),  # no bucket
    ({"base_model": "org/a..b"}, "base_model", "Hub model id ([namespace/]name, no '..' or '--')"),
]


def airflow_processes_of(home: Path) -> list[psutil.Process]:
    """Every process still running with this AIRFLOW_HOME: what an unclean stop leaves behind."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("AIRFLOW_HOME") == str(home):
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def wait_until(condition, timeout: float, what: str, every: float = 1.0):
    """Poll `condition` until it returns something truthy (and return that), or fail naming `what`: the live
    tests wait on the state they expect, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(every)
