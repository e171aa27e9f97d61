"""A killed or timed-out task stops its work: the pod or container operator built at run time gets on_kill,
and the local launcher's step dies with every process it started (as torchrun's workers would be)."""

import threading
import time

import psutil
import pytest

from mt_airflow import launcher
from mt_airflow.launcher import RunStepOperator

# A step that starts a worker of its own (as torchrun does), says both pids, and would run for ten minutes.
STEP = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(f"pids {__import__('os').getpid()} {worker.pid}", flush=True)
time.sleep(600)
"""


class TaskLog:
    def __init__(self):
        self.lines, self.pids_seen = [], threading.Event()

    def info(self, message, *args):
        self.lines.append(message % args)
        if self.lines[-1].startswith("pids "):
            self.pids = [int(pid) for pid in self.lines[-1].split()[1:]]
            self.pids_seen.set()


@pytest.fixture
def task_log(monkeypatch):
    log = TaskLog()
    monkeypatch.setattr(launcher, "step_command", lambda step, run_dir: ["python", "-c", STEP])
    monkeypatch.setattr(RunStepOperator, "log", property(lambda self: log))
    return log


def gone(pid: int, within_s: float = 10.0) -> bool:
    """The process has ended (an orphan may linger as a zombie until its new parent reaps it)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_on_kill_stops_the_local_step_and_the_processes_it_started(task_log, tmp_path):
    op = RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path))
    failure = []
    running = threading.Thread(target=lambda: failure.append(pytest.raises(Exception, op.run_local)))
    running.start()
    assert task_log.pids_seen.wait(60), task_log.lines
    assert all(psutil.pid_exists(pid) for pid in task_log.pids)

    started = time.monotonic()
    op.on_kill()  # what Airflow's SIGTERM handler calls
    running.join(30)
    assert not running.is_alive() and time.monotonic() - started < launcher.STOP_GRACE_S + 5
    assert "was stopped by signal" in str(failure[0].value)
    assert all(gone(pid) for pid in task_log.pids)
    op.on_kill()  # a second kill (a timeout and then a SIGTERM) finds nothing left to do


def test_an_execution_timeout_stops_the_local_step_before_the_task_fails(task_log, tmp_path):
    from airflow.sdk.exceptions import AirflowTaskTimeout
    from airflow.sdk.execution_time.timeout import timeout

    op = RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path))
    started = time.monotonic()
    with pytest.raises(AirflowTaskTimeout):
        with timeout(5):  # Airflow's own execution_timeout mechanism (SIGALRM in the task process)
            op.run_local()
    assert time.monotonic() - started < 5 + launcher.STOP_GRACE_S + 5  # not waiting for the 600 s step
    assert all(gone(pid) for pid in task_log.pids)


class Delegate:
    """Stands in for the KubernetesPodOperator/DockerOperator, whose on_kill needs a cluster or a daemon."""

    def __init__(self, owner):
        self.owner, self.killed = owner, False

    def execute(self, context):
        self.owner.on_kill()  # Airflow kills the task while the pod runs
        raise RuntimeError("pod deleted")

    def on_kill(self):
        self.killed = True


@pytest.mark.parametrize("launcher_name", ["kubernetes", "docker"])
def test_on_kill_reaches_the_operator_built_at_run_time(monkeypatch, launcher_name):
    op = RunStepOperator(task_id="train", step="train", run_dir="s3://runs/r1", launcher=launcher_name)
    delegate = Delegate(op)
    monkeypatch.setattr(RunStepOperator, "build_delegate", lambda self, settings=None: delegate)
    with pytest.raises(RuntimeError, match="pod deleted"):
        op.execute({})
    assert delegate.killed


def test_on_kill_before_anything_started_does_nothing():
    RunStepOperator(task_id="train", step="train", run_dir="s3://runs/r1", launcher="kubernetes").on_kill()
