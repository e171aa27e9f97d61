"""Run one `python -m tasks <step> --run-dir URI` on a GPU: as a Kubernetes pod, a Docker container, or a
local subprocess. The command is the same everywhere; only the launcher differs.

Which launcher runs is the run's `launcher` Param. Where it runs (image, namespace, GPU count, node
selector, tolerations, service account, secrets, pod start timeout, /dev/shm size) is a deployment setting,
read from `MT_*` environment variables of the Airflow worker when the task executes. Secrets reach the
container by reference (a Kubernetes Secret, or Docker's private environment), never in the command line.

The training image's ENTRYPOINT is `python -m tasks`, so a container launcher passes only the step's own
arguments: Docker appends its `command` to the ENTRYPOINT, and the pod sets the full argv explicitly
(Kubernetes `command` replaces the ENTRYPOINT).

A killed or timed-out task stops its work: `on_kill` reaches the pod or container operator built at run
time, or the local subprocess with every process it started (torchrun's workers). How long a GPU step may
run (`execution_timeout`) is the one setting read when the DAG is parsed, through `execution_timeout()`.

Every try of a step, failed, killed or timed out included, is recorded in the run directory's launches.json
(mt_airflow/launches.py): what a retry's bill counts, and what the step's own reports cannot know.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import psutil
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowTaskTimeout

from mt_airflow import launches

LAUNCHERS = ("local", "docker", "kubernetes")
# Variables the container needs to reach the artifact store and the Hub (and the data-parallel process
# count, when a deployment overrides one per GPU); values are copied from the worker.
PASSTHROUGH_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "HF_ENDPOINT",
                   "MT_TRAIN_PROCESSES")
# Secret values the Docker launcher forwards as a private (masked) environment.
SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HF_TOKEN")
# ENTRYPOINT of docker/train.Dockerfile; tests/plugins/test_launcher.py checks that they agree.
ENTRYPOINT = ("python", "-m", "tasks")
# Hours a GPU step may run before Airflow fails it and on_kill stops its pod, container or subprocess.
# Generous: a timeout is there to end a hung step, not to race a slow one.
TIMEOUT_ENV = {"train": ("MT_TRAIN_TIMEOUT_HOURS", 24.0), "curve": ("MT_TRAIN_TIMEOUT_HOURS", 24.0),
               "evaluate": ("MT_EVALUATE_TIMEOUT_HOURS", 6.0), "validate": ("MT_VALIDATE_TIMEOUT_HOURS", 6.0)}
# Where a pod or container mounts the shared cache of Hub models (MT_MODEL_CACHE), and the user of the training
# image (docker/train.Dockerfile; tests/plugins/test_launcher.py checks that they agree), who must write there.
MODEL_CACHE_PATH = "/cache/hf-hub"
IMAGE_UID = 10001
# The Airflow supervisor SIGKILLs a task process 5 s after its SIGTERM; on_kill must be done by then.
STOP_GRACE_S = 3.0
_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def step_arguments(step: str, run_dir: str) -> list[str]:
    """What follows the image's ENTRYPOINT."""
    return [step, "--run-dir", run_dir]


def step_command(step: str, run_dir: str) -> list[str]:
    return [*ENTRYPOINT, *step_arguments(step, run_dir)]


def local_command(step: str, run_dir: str) -> list[str]:
    """The local launcher's argv: the worker's own interpreter in place of `python`."""
    return [sys.executable, *step_command(step, run_dir)[1:]]


def _json_env(name: str, default: Any) -> Any:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise AirflowException(f"{name} is not valid JSON: {err}") from None


def _number_env(name: str, default: float, kind: type = int, least: float = 0, *, zero: bool = False) -> Any:
    """A number from the environment, refused naming the variable when it is not one, or not > 0 (≥ 0: `zero`)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < least or (value == least and not zero):
        raise AirflowException(f"{name} must be a {'whole number' if kind is int else 'number'} "
                               f"{'≥' if zero else '>'} {least}, not {raw!r}")
    return value


def execution_timeout(step: str) -> timedelta:
    """The `execution_timeout` of a GPU step, from the deployment's environment (read when the DAG is parsed:
    the environment is part of the deployment, unlike Variables or connections)."""
    name, default = TIMEOUT_ENV[step]
    return timedelta(hours=_number_env(name, default, float))


def quantity_bytes(quantity: str) -> int:
    """Bytes of a Kubernetes binary quantity ("16Gi", "512Mi") or a plain byte count."""
    number, suffix = quantity[:-2], quantity[-2:]
    if suffix in _BINARY_SUFFIXES and number.isdigit():
        return int(number) * _BINARY_SUFFIXES[suffix]
    if quantity.isdigit():
        return int(quantity)
    raise AirflowException(f"size {quantity!r} is not a byte count or a quantity like 16Gi")


@dataclass(frozen=True)
class LaunchSettings:
    """Deployment settings of the GPU launchers; `from_env()` documents every variable."""

    image: str = "ghcr.io/mt-retrain/train:latest"
    gpus: int = 1
    namespace: str = "mt-retrain"
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    service_account: str | None = None
    secret_name: str = "mt-retrain-secrets"  # Kubernetes Secret whose keys become env vars in the pod
    kubernetes_conn_id: str | None = None
    in_cluster: bool | None = None
    docker_url: str = "unix://var/run/docker.sock"
    docker_network: str | None = None  # e.g. the compose network, so the container reaches MinIO by name
    cpu_request: str = "4"
    memory_request: str = "24Gi"
    # Seconds a pod may wait for a node (the autoscaler adding a GPU node takes minutes), and again to start
    # (pulling a multi-GB CUDA image): the pod operator's 120 s default fails both on a real GPU pool.
    startup_timeout_s: int = 1800
    # /dev/shm of the training container: torchrun/NCCL and DataLoader workers share memory through it, and
    # a container's default is 64 MB. Memory-backed: what is written there counts as the pod's memory.
    shm_size: str = "16Gi"
    # Hub models downloaded by one step's pod, kept for the next ones: a PersistentVolumeClaim (ReadWriteMany) for
    # the kubernetes launcher, a volume for the docker one. None: every pod downloads what it loads.
    model_cache: str | None = None

    @classmethod
    def from_env(cls) -> "LaunchSettings":
        env = os.environ.get
        base = cls()
        in_cluster = env("MT_K8S_IN_CLUSTER")
        return cls(
            image=env("MT_TRAIN_IMAGE", base.image),
            gpus=_number_env("MT_GPUS", base.gpus, zero=True),
            namespace=env("MT_K8S_NAMESPACE", base.namespace),
            node_selector=_json_env("MT_K8S_NODE_SELECTOR", base.node_selector),
            tolerations=_json_env("MT_K8S_TOLERATIONS", base.tolerations),
            service_account=env("MT_K8S_SERVICE_ACCOUNT", base.service_account),
            secret_name=env("MT_K8S_SECRET", base.secret_name),
            kubernetes_conn_id=env("MT_K8S_CONN_ID", base.kubernetes_conn_id),
            in_cluster=None if in_cluster is None else in_cluster.lower() in ("1", "true", "yes"),
            docker_url=env("MT_DOCKER_URL", base.docker_url),
            docker_network=env("MT_DOCKER_NETWORK", base.docker_network),
            cpu_request=env("MT_CPU_REQUEST", base.cpu_request),
            memory_request=env("MT_MEMORY_REQUEST", base.memory_request),
            startup_timeout_s=_number_env("MT_K8S_STARTUP_TIMEOUT", base.startup_timeout_s),
            shm_size=env("MT_SHM_SIZE", base.shm_size),
            model_cache=env("MT_MODEL_CACHE") or base.model_cache,
        )


# What MT_MODEL_CACHE may name: a PersistentVolumeClaim (a DNS-1123 subdomain), or a Docker volume.
VOLUME_NAMES = {"kubernetes": (r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", "a PersistentVolumeClaim (lowercase letters, "
                               "digits, '-' and '.')"),
                "docker": (r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", "a Docker volume (letters, digits, '_', '.' and '-')")}


def model_cache(settings: LaunchSettings, launcher: str) -> str | None:
    """MT_MODEL_CACHE, once it is shown to be a name the launcher can mount."""
    pattern, what = VOLUME_NAMES[launcher]
    if settings.model_cache is not None and not re.fullmatch(pattern, settings.model_cache):
        raise AirflowException(f"MT_MODEL_CACHE must name {what} for the {launcher} launcher, not "
                               f"{settings.model_cache!r}")
    return settings.model_cache


def passthrough_env() -> dict[str, str]:
    return {name: os.environ[name] for name in PASSTHROUGH_ENV if os.environ.get(name)}


def container_env(settings: LaunchSettings) -> dict[str, str]:
    """The step's environment in a pod or container: the worker's passthrough variables, and the shared model
    cache's place when there is one (huggingface_hub keeps downloads in HF_HUB_CACHE)."""
    return {**passthrough_env(), **({"HF_HUB_CACHE": MODEL_CACHE_PATH} if settings.model_cache else {})}


def k8s_tolerations(raw: Any) -> list:
    """MT_K8S_TOLERATIONS as a pod spec writes them (`tolerationSeconds`) or as the Python client names them
    (`toleration_seconds`); anything else is refused, naming the variable, before a pod is made."""
    from kubernetes.client import models as k8s

    fields = k8s.V1Toleration.attribute_map  # the client's name → the pod spec's
    names = {**{spec: attr for attr, spec in fields.items()}, **{attr: attr for attr in fields}}
    if not isinstance(raw, list):
        raise AirflowException(f"MT_K8S_TOLERATIONS must be a JSON list of tolerations, not {raw!r}")
    found = []
    for toleration in raw:
        if not isinstance(toleration, dict) or set(toleration) - set(names):
            raise AirflowException(f"MT_K8S_TOLERATIONS: {toleration!r} is not a toleration (its fields: "
                                   f"{', '.join(fields.values())})")
        found.append(k8s.V1Toleration(**{names[key]: value for key, value in toleration.items()}))
    return found


def step_gpus(step: str, settings: LaunchSettings) -> int:
    """GPUs a step's pod or container asks for: `MT_GPUS` for a data-parallel step (train: one process per GPU), at
    most one for the others, which screen, decode or train on one device (validate, evaluate, a learning-curve
    point): more would be held for hours, and billed, unused."""
    from tasks.steps import STEPS

    return settings.gpus if STEPS[step].data_parallel else min(settings.gpus, 1)


def pod_security(cache: bool):
    """The pod's security context: a user that is not root (the image's, USER 10001: no uid is forced, so a
    platform that assigns its own still may), the runtime's default seccomp profile and, with the shared model
    cache, the image's user as the volume's group, checked at its root only (a recursive change of a full cache
    would delay every pod)."""
    from kubernetes.client import models as k8s

    cache_group = {"fs_group": IMAGE_UID, "fs_group_change_policy": "OnRootMismatch"} if cache else {}
    return k8s.V1PodSecurityContext(run_as_non_root=True, seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
                                    **cache_group)


# Seconds a container may wait to be created before its pod is given up on, naming why: kubelet retries a missing
# Secret or key (one created late still starts the pod), but the pod holds its GPUs on the node meanwhile, and the
# pod operator itself waits the whole startup timeout (MT_K8S_STARTUP_TIMEOUT, 30 minutes) on such a pod.
CONTAINER_CONFIG_GRACE_S = 120
CONTAINER_CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError")


def container_config_error(pod) -> str | None:
    """Why the pod's container cannot be created (a Secret, ConfigMap or key it names is missing), or None."""
    status = getattr(pod, "status", None)
    for container in (getattr(status, "container_statuses", None) or []):
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason in CONTAINER_CONFIG_ERRORS:
            return f"{waiting.reason}: {waiting.message or 'no message'}"
    return None


@functools.cache
def step_pod_operator():
    """KubernetesPodOperator whose wait for the pod to start gives up after CONTAINER_CONFIG_GRACE_S on a container
    that cannot be created, with kubelet's reason (`secret "mt-retrain-secrets" not found`), instead of "took too
    long to start" after the full startup timeout. The provider fails early only on images it cannot pull."""
    from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import PodLaunchFailedException
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodManager

    class StepPodManager(PodManager):
        async def await_pod_start(self, *args, **kwargs):
            # Only this wait gives up early: the operator's cleanup reads the pod too, and must still run.
            self._starting = True
            try:
                return await super().await_pod_start(*args, **kwargs)
            finally:
                self._starting, self._config_error_since = False, None

        def read_pod(self, pod):
            remote = super().read_pod(pod)
            if not getattr(self, "_starting", False):
                return remote
            why, since = container_config_error(remote), getattr(self, "_config_error_since", None)
            self._config_error_since = (since or time.monotonic()) if why else None
            if why and time.monotonic() - self._config_error_since >= CONTAINER_CONFIG_GRACE_S:
                raise PodLaunchFailedException(f"the pod's container could not be created for "
                                               f"{CONTAINER_CONFIG_GRACE_S} s ({why}): check the Secret "
                                               "(MT_K8S_SECRET) and what the pod mounts")
            return remote

    class StepPodOperator(KubernetesPodOperator):
        @functools.cached_property
        def pod_manager(self) -> PodManager:
            return StepPodManager(kube_client=self.client, callbacks=self.callbacks)

    return StepPodOperator


def kubernetes_operator(task_id: str, step: str, run_dir: str, settings: LaunchSettings, **kwargs):
    """The KubernetesPodOperator that runs the step in the training image on its GPUs (`step_gpus`)."""
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    gpu = {"nvidia.com/gpu": str(gpus)} if (gpus := step_gpus(step, settings)) else {}
    cache = model_cache(settings, "kubernetes")
    volumes = [k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory",
                                                                          size_limit=settings.shm_size))]
    mounts = [k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm")]
    if cache:
        volumes.append(k8s.V1Volume(name="model-cache", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
            claim_name=cache)))
        mounts.append(k8s.V1VolumeMount(name="model-cache", mount_path=MODEL_CACHE_PATH))
    return step_pod_operator()(
        task_id=task_id,
        name=task_id.replace("_", "-"),
        namespace=settings.namespace,
        image=settings.image,
        # Both set: the pod's argv does not depend on what an image tagged by someone else declares.
        cmds=list(ENTRYPOINT),
        arguments=step_arguments(step, run_dir),
        env_vars=[k8s.V1EnvVar(name=k, value=v) for k, v in container_env(settings).items()],
        secrets=[Secret("env", None, settings.secret_name)],
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": settings.cpu_request, "memory": settings.memory_request, **gpu},
            limits=gpu,
        ),
        volumes=volumes,
        volume_mounts=mounts,
        # What a namespace that enforces the "restricted" Pod Security Standard demands, or it refuses the pod:
        # the step needs no privilege (GPUs come through the device plugin, /dev/shm is a volume).
        security_context=pod_security(cache is not None),
        container_security_context=k8s.V1SecurityContext(allow_privilege_escalation=False,
                                                         capabilities=k8s.V1Capabilities(drop=["ALL"])),
        node_selector=settings.node_selector or None,
        tolerations=k8s_tolerations(settings.tolerations),
        service_account_name=settings.service_account,
        kubernetes_conn_id=settings.kubernetes_conn_id,
        in_cluster=settings.in_cluster,
        # Its own bound, the step's execution_timeout from its start: a pod whose worker died on the last try (no
        # retry reattaches, nothing calls on_kill) would otherwise train on unwatched, holding its GPUs.
        active_deadline_seconds=int(execution_timeout(step).total_seconds()) if step in TIMEOUT_ENV else None,
        schedule_timeout_seconds=settings.startup_timeout_s,
        startup_timeout_seconds=settings.startup_timeout_s,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        do_xcom_push=False,
        # The launcher runs the operator's execute inside its own and cannot resume a deferred one (it has no
        # trigger_reentry), so a deployment's `default_deferrable = True` must not reach it.
        deferrable=False,
        labels={"app.kubernetes.io/name": "mt-retrain", "mt-retrain/step": step},
        **kwargs,
    )


def docker_labels(step: str, run_dir: str) -> dict[str, str]:
    """What marks a step's container: one step of one run directory (a pair's, a learning-curve point's)."""
    return {"mt-retrain.step": step, "mt-retrain.run-dir": run_dir}


def docker_operator(task_id: str, step: str, run_dir: str, settings: LaunchSettings, **kwargs):
    """The DockerOperator that runs the step in the training image with its GPUs (`step_gpus`)."""
    from airflow.providers.docker.operators.docker import DockerOperator
    from docker.types import DeviceRequest, Mount

    cache = model_cache(settings, "docker")
    return DockerOperator(
        task_id=task_id,
        image=settings.image,
        command=step_arguments(step, run_dir),  # Docker runs the image's ENTRYPOINT followed by this
        docker_url=settings.docker_url,
        network_mode=settings.docker_network,
        environment=container_env(settings),
        # A named volume starts as a copy of the image's folder there, owned by the image's user.
        mounts=[Mount(target=MODEL_CACHE_PATH, source=cache, type="volume")] if cache else None,
        private_environment={k: os.environ[k] for k in SECRET_ENV if os.environ.get(k)},
        device_requests=[DeviceRequest(count=gpus, capabilities=[["gpu"]])] if (gpus := step_gpus(step, settings))
        else None,
        shm_size=quantity_bytes(settings.shm_size),
        auto_remove="success",
        labels=docker_labels(step, run_dir),
        mount_tmp_dir=False,
        do_xcom_push=False,
        **kwargs,
    )


def stop_process_tree(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM `proc` and every process below it (torchrun's workers), then SIGKILL what is left.

    A tree rather than a process group of its own: the step stays in the task's process group, so the
    Airflow supervisor's own SIGTERM/SIGKILL of that group still reaches it if this never runs.
    """
    try:
        below = psutil.Process(proc.pid).children(recursive=True)  # before the parent dies and orphans them
    except psutil.NoSuchProcess:
        below = []
    for process in below:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    _, alive = psutil.wait_procs(below, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    try:
        proc.wait(timeout=max(grace_s - 0.5, 0.1))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RunStepOperator(BaseOperator):
    """Run a pipeline step in its container (or a local subprocess) and return the step's stored summary."""

    template_fields: Sequence[str] = ("run_dir", "launcher")
    ui_color = "#d6eaf8"

    def __init__(self, *, step: str, run_dir: str, launcher: str = "local", **kwargs) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.run_dir = run_dir
        self.launcher = launcher
        self._delegate: BaseOperator | None = None  # the pod or container operator running now, for on_kill
        self._process: subprocess.Popen | None = None  # the local step running now, for on_kill
        self._killed = False
        self._pod_read, self._pod = False, None  # this try's pod times, once read (`_read_pod`)
        self._pod_phase: str | None = None  # and its phase then

    def build_delegate(self, settings: LaunchSettings | None = None) -> BaseOperator:
        """The provider operator for a container launcher. Built at execute time, so it sees the settings of
        the worker and this task's rendered `run_dir`: the delegate itself is never rendered again."""
        settings = settings or LaunchSettings.from_env()
        factory = {"kubernetes": kubernetes_operator, "docker": docker_operator}[self.launcher]
        return factory(f"{self.task_id}_{self.launcher}", self.step, self.run_dir, settings)

    def execute(self, context) -> dict:
        if self.launcher not in LAUNCHERS:
            raise AirflowException(f"unknown launcher {self.launcher!r}; choose one of {LAUNCHERS}")
        self.log.info("running step %r with the %s launcher: %s", self.step, self.launcher,
                      " ".join(step_command(self.step, self.run_dir)))
        launch = {"try": getattr(context.get("ti"), "try_number", None), "launcher": self.launcher, "gpus": None,
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        started, self._killed, self._pod_read, self._pod = time.monotonic(), False, False, None
        self._pod_phase = None
        try:
            if self.launcher == "local":
                self.run_local()
            else:
                settings = LaunchSettings.from_env()
                launch["gpus"] = step_gpus(self.step, settings)
                self._delegate = self.build_delegate(settings)
                if self.launcher == "docker":
                    self._stop_earlier_containers(launch["gpus"])
                self._delegate.execute(context)
            launch["outcome"] = "killed" if self._killed else "succeeded"  # a pod operator may return when killed
        except BaseException as failed:
            timed_out = launches.timed_out(failed)
            launch["outcome"] = "timed out" if timed_out else "killed" if self._killed else "failed"
            launch["error"] = f"{type(failed).__name__}: {failed}"[:500]
            if (why := self._left_running(failed, timed_out)) is not None:
                self.log.warning("step %r %s: stopping its %s", self.step, why, self.launcher)
                try:
                    self.on_kill()
                except Exception as err:  # noqa: BLE001 - the step's own error is the one to raise
                    self.log.warning("stopping the %s failed: %s: %s", self.launcher, type(err).__name__, err)
            if isinstance(failed, AirflowException):
                self._fail_for_good_if_decided(failed)
            raise
        finally:
            launch["seconds"] = round(time.monotonic() - started, 1)
            if self.launcher == "kubernetes" and (pod := self._read_pod(launches.POD_READ_TIMEOUT_S)) is not None:
                launch["pod"] = pod
            launches.record_launch(self.run_dir, self.step, launch, self.log)
        return self.stored_result()

    def _stop_earlier_containers(self, gpus: int) -> None:
        """Stop a container that an earlier try of this step left running. Its worker died while it trained on
        (the compose stack's scheduler, which runs the tasks, was recreated or killed): Airflow fails that try when
        its heartbeat stops and retries, and the Docker operator, unlike the pod operator, never reattaches, so a
        second container would train on the same GPU into the same run directory. That try left no record (its
        worker died first): the container's own life, from its creation (or the end of the last recorded try, when
        one was recorded and its container outlived it) to this stop, is recorded in its place, or the bill would
        count hours of GPU time as none."""
        labels = [f"{key}={value}" for key, value in docker_labels(self.step, self.run_dir).items()]
        cli = self._delegate.cli
        for found in cli.containers(filters={"label": labels, "status": "running"}):
            self.log.warning("an earlier try of step %r left container %s running: stopping it", self.step,
                             found["Id"][:12])
            cli.stop(found["Id"])
            created = float(found.get("Created") or time.time())
            since = max(created, launches.recorded_until(self.run_dir, self.step, created) or 0.0)
            launches.record_launch(self.run_dir, self.step, {
                "try": None, "launcher": "docker", "gpus": gpus, "outcome": "left running by an earlier try",
                "started": datetime.fromtimestamp(since, timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(max(time.time() - since, 0.0), 1)}, self.log)

    def _left_running(self, failed: BaseException, timed_out: bool) -> str | None:
        """Why this failed try's pod or container may still run, or wait for a node, though its operator gave up
        on it (None: it does not, or Airflow stops it through on_kill).

        - A timeout: the pod and Docker operators clean up after it and raise an error of their own, so Airflow
          never sees the timeout and never calls on_kill: the pod would keep its GPUs.
        - A pod that never started (no GPU node within MT_K8S_STARTUP_TIMEOUT, an image that cannot be pulled, a
          missing Secret) or whose logs could not be followed: the pod operator keeps any pod that did not succeed,
          and marks it checked, so the retry starts another: a pending one would take a GPU later and train into
          the same run directory beside the retry's. A pod that ended (Failed) stays for `kubectl logs`.
        """
        if self._killed or isinstance(failed, AirflowTaskTimeout):
            return None
        if self.launcher == "kubernetes" and getattr(self._delegate, "pod", None) is not None:
            self._read_pod(launches.POD_READ_TIMEOUT_S)  # while it is there, with no SIGKILL pending: the full wait
            if timed_out or self._pod_phase not in ("Succeeded", "Failed"):
                return "ran past its execution_timeout" if timed_out else \
                    f"failed while its pod was {self._pod_phase or 'in an unknown phase'}"
            return None
        return "ran past its execution_timeout" if timed_out else None

    def _read_pod(self, timeout_s: float) -> dict | None:
        """`pod_times` of this try's pod, read once a try: by on_kill just before it deletes the pod (once deleted,
        the pod is soon gone and the try would be billed as requested), else as the try ends. The pod operator's
        last look at it where the pod had ended by then, else one fresh read within `timeout_s` (it may come after
        the execution timeout, which no longer interrupts anything). None when neither can be had; never an
        error."""
        if self._pod_read:
            return self._pod
        self._pod_read = True
        try:
            pod = getattr(self._delegate, "remote_pod", None)
            if pod is None or not launches.pod_ended(pod):
                pod = pod or self._delegate.pod
                pod = self._delegate.client.read_namespaced_pod(pod.metadata.name, pod.metadata.namespace,
                                                                _request_timeout=timeout_s)
            self._pod_phase = getattr(pod.status, "phase", None)
            self._pod = launches.pod_times(pod, datetime.now(timezone.utc))
        except (Exception, AirflowTaskTimeout) as err:  # noqa: BLE001 - the bill then counts from launch to end
            self.log.info("no pod timings for this try (%s: %s)", type(err).__name__, err)
        return self._pod

    def _fail_for_good_if_decided(self, failed: AirflowException) -> None:
        """A step that failed after storing its result failed on what it decided (validate: the batch is not
        fit to train on), not on getting there: a retry would decide the same, so the task fails without one."""
        from airflow.sdk.exceptions import AirflowFailException

        from tasks import config
        from tasks.steps import STEPS

        try:
            decided = STEPS[self.step].result(config.load(self.run_dir)) is not None
        except Exception:  # noqa: BLE001 - the store itself may be what failed: then let the retries try
            return
        if decided:
            raise AirflowFailException(f"{failed}; it stored its result before failing, so it is not retried: "
                                       f"see the task log and {self.run_dir}") from failed

    def on_kill(self) -> None:
        """Called by Airflow when the task is killed or times out: stop the pod, container or subprocess."""
        self._killed = True
        if self._delegate is not None:
            if self.launcher == "kubernetes" and getattr(self._delegate, "pod", None) is not None:
                self._read_pod(launches.KILL_POD_READ_TIMEOUT_S)
            self.log.info("stopping the %s of step %r", self.launcher, self.step)
            self._delegate.on_kill()
        if self._process is not None and self._process.poll() is None:
            self.log.info("stopping the local step %r (pid %d) and its children", self.step, self._process.pid)
            stop_process_tree(self._process)

    def run_local(self) -> None:
        self._process = proc = subprocess.Popen(local_command(self.step, self.run_dir), stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        try:
            for line in proc.stdout:
                self.log.info("%s", line.rstrip())
            proc.wait()
        except BaseException:
            # The execution timeout raises here; the step must stop before the exception leaves, or the
            # task would end while the step kept its GPU.
            stop_process_tree(proc)
            raise
        finally:
            proc.stdout.close()
        if proc.returncode < 0:
            raise AirflowException(f"step {self.step!r} was stopped by signal {-proc.returncode}")
        if proc.returncode != 0:
            raise AirflowException(f"step {self.step!r} failed with exit code {proc.returncode}")

    def stored_result(self) -> dict:
        """Every launcher ends the same way: the step's summary is read back from the run directory."""
        from tasks import config
        from tasks.steps import STEPS

        result = STEPS[self.step].result(config.load(self.run_dir))
        if result is None:
            raise AirflowException(f"step {self.step!r} exited without writing its result to {self.run_dir}")
        return result
