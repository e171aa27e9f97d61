"""A killed or timed-out task stops its work: the pod or container operator built at run time gets on_kill,
and the local launcher's step dies with every process it started (as torchrun's workers would be). Each such try
is in the run directory's launches.json, with its time: a bill counts it."""

import threading
import time
from datetime import datetime, timedelta, timezone

import psutil
import pytest

from mt_airflow import launcher, launches
from mt_airflow.launcher import RunStepOperator
from tasks import layout
from tasks.io import storage

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

    warning = info


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
    context = {"ti": type("TI", (), {"try_number": 2})()}
    running = threading.Thread(target=lambda: failure.append(pytest.raises(Exception, op.execute, context)))
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
    (launch,) = storage.read_json(str(tmp_path / layout.LAUNCHES))["train"]
    assert (launch["try"], launch["launcher"], launch["gpus"], launch["outcome"]) == (2, "local", None, "killed")
    assert "was stopped by signal" in launch["error"] and 0 <= launch["seconds"] < 60


def test_an_execution_timeout_stops_the_local_step_before_the_task_fails(task_log, tmp_path):
    from airflow.sdk.exceptions import AirflowTaskTimeout
    from airflow.sdk.execution_time.timeout import timeout

    op = RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path))
    started = time.monotonic()
    with pytest.raises(AirflowTaskTimeout):
        with timeout(5):  # Airflow's own execution_timeout mechanism (SIGALRM in the task process)
            op.execute({})
    assert time.monotonic() - started < 5 + launcher.STOP_GRACE_S + 5  # not waiting for the 600 s step
    assert all(gone(pid) for pid in task_log.pids)
    (launch,) = storage.read_json(str(tmp_path / layout.LAUNCHES))["train"]
    assert launch["outcome"] == "timed out" and 5 <= launch["seconds"] < 5 + launcher.STOP_GRACE_S + 5


class Delegate:
    """Stands in for the KubernetesPodOperator/DockerOperator, whose on_kill needs a cluster or a daemon."""

    def __init__(self, owner):
        self.owner, self.killed = owner, False
        self.cli = FakeDocker([])  # the Docker operator's API client: no container left by an earlier try

    def execute(self, context):
        self.owner.on_kill()  # Airflow kills the task while the pod runs
        raise RuntimeError("pod deleted")

    def on_kill(self):
        self.killed = True


@pytest.mark.parametrize("launcher_name", ["kubernetes", "docker"])
def test_on_kill_reaches_the_operator_built_at_run_time(monkeypatch, launcher_name, tmp_path):
    monkeypatch.setenv("MT_GPUS", "4")
    op = RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path), launcher=launcher_name)
    delegate = Delegate(op)
    monkeypatch.setattr(RunStepOperator, "build_delegate", lambda self, settings=None: delegate)
    with pytest.raises(RuntimeError, match="pod deleted"):
        op.execute({})
    assert delegate.killed
    # The pod requested the deployment's 4 GPUs for as long as it ran: the try is billed though it was killed.
    (launch,) = storage.read_json(str(tmp_path / layout.LAUNCHES))["train"]
    assert (launch["launcher"], launch["gpus"], launch["outcome"], launch["error"]) == (
        launcher_name, 4, "killed", "RuntimeError: pod deleted")


class CleaningUpDelegate(Delegate):
    """As the pod operator is: a timeout inside its execute meets its own cleanup, which raises an error of its own
    (the pod "returned a failure"), so Airflow sees no timeout and would never call on_kill."""

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowException

        try:
            time.sleep(30)
        finally:
            raise AirflowException("Pod train-kubernetes returned a failure")


class ReturningDelegate(Delegate):
    """As the pod operator is once killed: it skips its cleanup and returns."""

    def execute(self, context):
        self.owner.on_kill()


def test_a_timeout_the_pod_operator_hides_still_stops_the_pod_and_is_billed_as_one(monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowException
    from airflow.sdk.execution_time.timeout import timeout

    op = RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path), launcher="kubernetes")
    delegate = CleaningUpDelegate(op)
    monkeypatch.setattr(RunStepOperator, "build_delegate", lambda self, settings=None: delegate)
    with pytest.raises(AirflowException, match="returned a failure"):  # the operator's own error stays the error
        with timeout(1):
            op.execute({})
    assert delegate.killed  # the pod is stopped, not left holding its GPUs for the retry's
    (launch,) = storage.read_json(str(tmp_path / layout.LAUNCHES))["train"]
    assert launch["outcome"] == "timed out" and 1 <= launch["seconds"] < 5


def test_a_pod_operator_that_returns_once_killed_is_billed_as_killed(monkeypatch, tmp_path):
    op = RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path), launcher="kubernetes")
    monkeypatch.setattr(RunStepOperator, "build_delegate", lambda self, settings=None: ReturningDelegate(op))
    with pytest.raises(FileNotFoundError):  # then reading the step's result fails: it never wrote one
        op.execute({})
    (launch,) = storage.read_json(str(tmp_path / layout.LAUNCHES))["train"]
    assert launch["outcome"] == "killed"


def test_on_kill_before_anything_started_does_nothing():
    RunStepOperator(task_id="train", step="train", run_dir="s3://runs/r1", launcher="kubernetes").on_kill()


def test_each_try_is_added_once_and_a_store_that_cannot_be_written_fails_nothing(tmp_path, caplog):
    import logging

    log = logging.getLogger("launch-test")
    tries = [{"try": 1, "outcome": "failed", "seconds": 12.0}, {"try": 2, "outcome": "killed", "seconds": 30.0},
             {"try": 2, "outcome": "killed", "seconds": 31.5}]  # the same try recorded again: its last record
    for launch in tries:
        launches.record_launch(str(tmp_path), "train", launch, log)
    launches.record_launch(str(tmp_path), "evaluate", {"try": 1, "outcome": "succeeded", "seconds": 5.0}, log)
    assert storage.read_json(str(tmp_path / layout.LAUNCHES)) == {"train": [tries[0], tries[2]],
                                                                   "evaluate": [{"try": 1, "outcome": "succeeded",
                                                                                 "seconds": 5.0}]}
    storage.write_json(str(tmp_path / layout.LAUNCHES), {"train": "hand-edited", "evaluate": [1, None]})
    launches.record_launch(str(tmp_path), "train", tries[0], log)
    launches.record_launch(str(tmp_path), "evaluate", tries[1], log)
    assert storage.read_json(str(tmp_path / layout.LAUNCHES)) == {"train": [tries[0]], "evaluate": [tries[1]]}
    (tmp_path / layout.LAUNCHES).write_text("{not json")  # garbled: replaced, or no try would ever be recorded
    launches.record_launch(str(tmp_path), "train", tries[0], log)
    assert storage.read_json(str(tmp_path / layout.LAUNCHES)) == {"train": [tries[0]]}
    (tmp_path / "a-file").write_text("not a folder")
    launches.record_launch(str(tmp_path / "a-file"), "train", tries[0], log)
    assert "could not record this launch" in caplog.text


LAUNCHED = datetime(2026, 12, 6, 8, 0, 0, tzinfo=timezone.utc)


def _pod(created_s=0.0, scheduled_s=None, finished_s=(), phase="Running"):
    """A pod as the Kubernetes API returns it: created, placed on a node and its containers ended so many seconds
    after LAUNCHED (None: not yet)."""
    from kubernetes.client import models as k8s

    at = lambda s: LAUNCHED + timedelta(seconds=s)  # noqa: E731
    conditions = [k8s.V1PodCondition(type="PodScheduled", status="False", last_transition_time=at(created_s))]
    if scheduled_s is not None:
        conditions = [k8s.V1PodCondition(type="PodScheduled", status="True", last_transition_time=at(scheduled_s)),
                      k8s.V1PodCondition(type="Ready", status="True", last_transition_time=at(scheduled_s + 50))]
    statuses = [k8s.V1ContainerStatus(name=f"c{i}", image="i", image_id="", ready=False, restart_count=0,
                                      state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(
                                          exit_code=0, finished_at=at(s))) if s is not None else
                                      k8s.V1ContainerState(running=k8s.V1ContainerStateRunning(started_at=at(1))))
                for i, s in enumerate(finished_s)]
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="train-kubernetes", namespace="mt", creation_timestamp=at(created_s)),
                     status=k8s.V1PodStatus(phase=phase, conditions=conditions, container_statuses=statuses or None))


@pytest.mark.parametrize("pod, now_s, times", [
    # Waited 5 minutes for the autoscaler's node, then ran 20 minutes: the GPU was held for those 20.
    (_pod(2, 302, (1502,), "Succeeded"), 1510, {"waiting_s": 300.0, "on_node_s": 1200.0}),
    # Two containers: held until the last one ended.
    (_pod(2, 12, (100, 400), "Failed"), 410, {"waiting_s": 10.0, "on_node_s": 388.0}),
    # Still running as the try ends (it is being stopped): held until now.
    (_pod(2, 12, (None,)), 612, {"waiting_s": 10.0, "on_node_s": 600.0}),
    # Never placed: it waited the whole try and held no GPU.
    (_pod(2, None, ()), 900, {"waiting_s": 898.0, "on_node_s": 0.0}),
    # A pod a retry reattached to (created an hour before this try, whose worker died unrecorded): counted whole.
    (_pod(-3600, -3500, (600,), "Succeeded"), 610, {"waiting_s": 100.0, "on_node_s": 4100.0}),
])
def test_a_pods_status_says_how_long_it_waited_for_a_node_and_held_it(pod, now_s, times):
    assert launches.pod_times(pod, LAUNCHED + timedelta(seconds=now_s)) == times


class PodDelegate(Delegate):
    """A pod operator whose pod failed after `remote_pod` (its last look) was taken; `fresh` is what reading the
    pod again returns (an exception: the pod is gone)."""

    def __init__(self, owner, remote_pod, fresh):
        super().__init__(owner)
        self.remote_pod, self.pod = remote_pod, remote_pod
        self.client = self  # the operator's CoreV1Api
        self.fresh, self.reads = fresh, []

    def read_namespaced_pod(self, name, namespace, _request_timeout=None):
        self.reads.append((name, namespace, _request_timeout))
        if isinstance(self.fresh, Exception):
            raise self.fresh
        return self.fresh

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowException

        raise AirflowException("Pod train-kubernetes returned a failure")


def _started_now(pod):
    """`pod` with its times moved to now, as if this try had launched it."""
    shift = datetime.now(timezone.utc).replace(microsecond=0) - LAUNCHED
    pod.metadata.creation_timestamp += shift
    for c in pod.status.conditions:
        c.last_transition_time += shift
    for c in pod.status.container_statuses or []:
        if c.state.terminated:
            c.state.terminated.finished_at += shift
    return pod


@pytest.mark.parametrize("remote_pod, fresh, reads, recorded", [
    (_pod(0, 300, (1500,), "Failed"), None, 0, {"waiting_s": 300.0, "on_node_s": 1200.0}),  # its last look: ended
    (_pod(0, None, (), "Pending"), _pod(0, 30, (90,), "Failed"), 1, {"waiting_s": 30.0, "on_node_s": 60.0}),
    (_pod(0, None, (), "Pending"), RuntimeError("404 pod not found"), 1, None),  # stale and gone: nothing claimed
])
def test_each_pod_try_records_what_its_pod_said(monkeypatch, tmp_path, remote_pod, fresh, reads, recorded):
    from airflow.sdk.exceptions import AirflowException

    monkeypatch.setenv("MT_GPUS", "2")
    op = RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path), launcher="kubernetes")
    delegate = PodDelegate(op, _started_now(remote_pod), fresh if fresh is None or isinstance(fresh, Exception)
                           else _started_now(fresh))
    monkeypatch.setattr(RunStepOperator, "build_delegate", lambda self, settings=None: delegate)
    with pytest.raises(AirflowException, match="returned a failure"):  # the step's own error, whatever the record
        op.execute({})
    (launch,) = storage.read_json(str(tmp_path / layout.LAUNCHES))["train"]
    assert (launch["outcome"], launch["gpus"], launch.get("pod")) == ("failed", 2, recorded)
    assert delegate.reads == [("train-kubernetes", "mt", launches.POD_READ_TIMEOUT_S)] * reads  # one bounded read


class TimingOutPodDelegate(PodDelegate):
    """As the pod operator is at its execution timeout: its cleanup raises an error of its own while the pod still
    runs; once stopped (on_kill), the pod is gone and cannot be read."""

    execute = CleaningUpDelegate.execute

    def on_kill(self):
        super().on_kill()
        self.fresh = RuntimeError("404 pod not found")


def test_a_pod_stopped_at_its_timeout_is_read_before_it_is_stopped(monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowException
    from airflow.sdk.execution_time.timeout import timeout

    monkeypatch.setenv("MT_GPUS", "2")
    op = RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path), launcher="kubernetes")
    running = _started_now(_pod(0, 0, (None,)))
    delegate = TimingOutPodDelegate(op, _started_now(_pod(0, None, (), "Pending")), running)
    monkeypatch.setattr(RunStepOperator, "build_delegate", lambda self, settings=None: delegate)
    with pytest.raises(AirflowException, match="returned a failure"):
        with timeout(1):
            op.execute({})
    # Read once, before the pod was stopped, with the full wait (no SIGKILL is pending at a timeout).
    assert delegate.killed and delegate.reads == [("train-kubernetes", "mt", launches.POD_READ_TIMEOUT_S)]
    (launch,) = storage.read_json(str(tmp_path / layout.LAUNCHES))["train"]
    assert launch["outcome"] == "timed out" and 0.5 <= launch["pod"]["on_node_s"] <= launch["seconds"] + 2


class KilledPodDelegate(TimingOutPodDelegate):
    """As the pod operator is when Airflow kills the task (a user marks it failed; SIGTERM): on_kill deletes the pod
    while it runs, and the operator returns."""

    execute = ReturningDelegate.execute


def test_a_pod_airflow_kills_is_read_before_it_is_deleted_and_billed_for_what_it_held(monkeypatch, tmp_path):
    monkeypatch.setenv("MT_GPUS", "2")
    op = RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path), launcher="kubernetes")
    # Placed on a node 40 s after its creation, 100 s ago, and running when killed.
    running = _started_now(_pod(-140, -100, (None,)))
    delegate = KilledPodDelegate(op, _started_now(_pod(-140, None, (), "Pending")), running)
    monkeypatch.setattr(RunStepOperator, "build_delegate", lambda self, settings=None: delegate)
    with pytest.raises(FileNotFoundError):  # it wrote no result
        op.execute({})
    assert delegate.killed and delegate.reads == [("train-kubernetes", "mt", launches.KILL_POD_READ_TIMEOUT_S)]
    (launch,) = storage.read_json(str(tmp_path / layout.LAUNCHES))["train"]
    assert launch["outcome"] == "killed" and launch["pod"]["waiting_s"] == 40.0
    assert 100 <= launch["pod"]["on_node_s"] <= 105
    op.on_kill()  # Airflow may call on_kill again once the try has ended: the try's record is written, no new read
    assert len(delegate.reads) == 1


@pytest.mark.parametrize("left, deleted", [
    ("Pending", True),  # no GPU node within MT_K8S_STARTUP_TIMEOUT, an image it cannot pull, a missing Secret
    ("Running", True),  # its logs could not be followed: the operator marked it checked, the retry starts another
    ("Failed", False),  # its step failed: it holds nothing and stays for `kubectl logs`
])
def test_a_pod_the_pod_operator_gives_up_on_is_not_left_to_train_beside_the_retrys(monkeypatch, tmp_path, left,
                                                                                    deleted):
    """The real pod operator keeps every pod that did not succeed: one still pending would be placed on a GPU node
    later and train, unwatched, into the same run directory as the retry's pod."""
    from unittest import mock

    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodLaunchTimeoutException
    from airflow.sdk.exceptions import AirflowException

    created, fresh = _started_now(_pod(0, None, (), "Pending")), _started_now(_pod(0, 5, (), left))
    client, pod_manager = mock.MagicMock(), mock.MagicMock()
    client.read_namespaced_pod.return_value = fresh

    def launch_or_follow_fails(self, pod):
        raise PodLaunchTimeoutException("Pod took too long to be scheduled on the cluster, giving up.")

    for name, value in {"get_or_create_pod": lambda self, pod_request_obj, context: created,
                        "find_pod": lambda self, namespace, context, **kw: created,
                        "build_pod_request_obj": lambda self, context=None: created,
                        "await_pod_start": launch_or_follow_fails,
                        "client": client, "pod_manager": pod_manager}.items():
        monkeypatch.setattr(launcher.step_pod_operator(), name, value)  # the launcher's KubernetesPodOperator
    op = RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path), launcher="kubernetes")
    with pytest.raises(AirflowException, match="returned a failure"):
        op.execute({"ti": mock.MagicMock(try_number=1)})
    assert client.delete_namespaced_pod.called is deleted
    (launch,) = storage.read_json(str(tmp_path / layout.LAUNCHES))["train"]
    assert launch["outcome"] == "failed" and launch["pod"]["waiting_s"] == 5.0


class FakeDocker:
    """Docker's API as the Docker operator uses it: containers with labels; `containers` filters as the engine does
    (every `label` filter `key=value` must match, and the status)."""

    def __init__(self, running):
        self.running, self.stopped = running, []

    def containers(self, filters):
        wanted = dict(label.split("=", 1) for label in filters["label"])
        return [c for c in self.running if filters["status"] == "running" and c["Id"] not in self.stopped
                and all(c["Labels"].get(k) == v for k, v in wanted.items())]

    def stop(self, container_id):
        self.stopped.append(container_id)


def test_a_container_an_earlier_try_left_training_is_stopped_before_the_retry_starts_one(monkeypatch, tmp_path):
    """The compose stack's scheduler runs the tasks; recreated while a container trains, it leaves that container
    running, and the retry would start a second one on the same GPU, into the same run directory."""
    from airflow.providers.docker.operators.docker import DockerOperator

    run_dir, other = str(tmp_path / "run"), str(tmp_path / "other-run")
    left = {"Id": "a" * 64, "Labels": launcher.docker_labels("train", run_dir)}
    unrelated = [{"Id": "b" * 64, "Labels": launcher.docker_labels("train", other)},
                 {"Id": "c" * 64, "Labels": launcher.docker_labels("evaluate", run_dir)}]
    docker, started = FakeDocker([left, *unrelated]), []
    monkeypatch.setattr(DockerOperator, "cli", property(lambda self: docker))
    monkeypatch.setattr(DockerOperator, "execute", lambda self, context: started.append((self.labels,
                                                                                          list(docker.stopped))))
    monkeypatch.setattr(RunStepOperator, "stored_result", lambda self: {})
    RunStepOperator(task_id="train", step="train", run_dir=run_dir, launcher="docker").execute({})
    # Stopped before the new container started, which carries the labels the next try will look for.
    assert started == [(left["Labels"], [left["Id"]])]


def _retry_on_4_gpus(monkeypatch, docker, run_dir):
    """Try 2 of train with the docker launcher, on MT_GPUS=4, its container started by nothing."""
    from types import SimpleNamespace

    from airflow.providers.docker.operators.docker import DockerOperator

    monkeypatch.setenv("MT_GPUS", "4")
    monkeypatch.setattr(DockerOperator, "cli", property(lambda self: docker))
    monkeypatch.setattr(DockerOperator, "execute", lambda self, context: None)
    monkeypatch.setattr(RunStepOperator, "stored_result", lambda self: {})
    RunStepOperator(task_id="train", step="train", run_dir=run_dir, launcher="docker").execute(
        {"ti": SimpleNamespace(try_number=2)})


def test_a_container_an_earlier_try_left_training_is_billed_when_the_retry_stops_it(monkeypatch, tmp_path):
    """The try whose worker died left no record: the container's three hours on 4 GPUs were billed as nothing."""
    from tasks import cost

    run_dir = str(tmp_path / "run")
    left = {"Id": "a" * 64, "Labels": launcher.docker_labels("train", run_dir), "Created": int(time.time()) - 3 * 3600}
    docker = FakeDocker([left])
    _retry_on_4_gpus(monkeypatch, docker, run_dir)
    earlier, retry = storage.read_json(storage.join(run_dir, layout.LAUNCHES))["train"]
    assert (earlier["try"], earlier["outcome"], earlier["gpus"]) == (None, "left running by an earlier try", 4)
    assert 3 * 3600 <= earlier["seconds"] < 3 * 3600 + 60 and retry["try"] == 2
    assert "over 2 tries" in cost.launches({"train": [earlier, retry]})


def test_a_left_container_whose_try_recorded_itself_is_billed_from_that_record_on(monkeypatch, tmp_path):
    """Its worker survived but on_kill could not stop it: the try's own record covers its first hour, the retry's
    record of the container only what came after, not the whole three hours again."""
    from types import SimpleNamespace

    run_dir = str(tmp_path / "run")
    created = int(time.time()) - 3 * 3600
    first = {"try": 1, "launcher": "docker", "gpus": 4, "outcome": "killed", "seconds": 3600.0,
             "started": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds")}
    launches.record_launch(run_dir, "train", first, SimpleNamespace(info=print, warning=print))
    docker = FakeDocker([{"Id": "a" * 64, "Labels": launcher.docker_labels("train", run_dir), "Created": created}])
    _retry_on_4_gpus(monkeypatch, docker, run_dir)
    recorded, left, _ = storage.read_json(storage.join(run_dir, layout.LAUNCHES))["train"]
    assert recorded == first and 2 * 3600 - 5 <= left["seconds"] < 2 * 3600 + 60


def test_two_left_containers_and_a_later_try_elsewhere_are_each_billed_their_own_life(monkeypatch, tmp_path):
    """Try 1 left a container 3 h ago, an earlier retry another 2 h ago, and a try on another host (another Docker
    daemon) ran 1 h and recorded itself: neither container's time is cut by the other's record, nor by that try."""
    from types import SimpleNamespace

    run_dir, now = str(tmp_path / "run"), int(time.time())
    elsewhere = {"try": 3, "launcher": "docker", "gpus": 4, "outcome": "failed", "seconds": 3600.0,
                 "started": datetime.fromtimestamp(now - 3600, timezone.utc).isoformat(timespec="seconds")}
    launches.record_launch(run_dir, "train", elsewhere, SimpleNamespace(info=print, warning=print))
    labels = launcher.docker_labels("train", run_dir)
    docker = FakeDocker([{"Id": "a" * 64, "Labels": labels, "Created": now - 3 * 3600},
                         {"Id": "b" * 64, "Labels": labels, "Created": now - 2 * 3600}])
    _retry_on_4_gpus(monkeypatch, docker, run_dir)
    _, first, second, _ = storage.read_json(storage.join(run_dir, layout.LAUNCHES))["train"]
    assert 3 * 3600 <= first["seconds"] < 3 * 3600 + 60 and 2 * 3600 <= second["seconds"] < 2 * 3600 + 60
