"""Run one `python -m tasks <step> --run-dir URI` on a GPU: as a Kubernetes pod, a Docker container, or a
local subprocess. The command is the same everywhere; only the launcher differs.

Which launcher runs is the run's `launcher` Param. Where it runs (image, namespace, GPU count, node
selector, tolerations, service account, secrets) is a deployment setting, read from `MT_*` environment
variables of the Airflow worker when the task executes, never at DAG parse time. Secrets reach the
container by reference (a Kubernetes Secret, or Docker's private environment), never in the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

LAUNCHERS = ("local", "docker", "kubernetes")
# Variables the container needs to reach the artifact store and the Hub (and the data-parallel process
# count, when a deployment overrides one per GPU); values are copied from the worker.
PASSTHROUGH_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "HF_ENDPOINT",
                   "MT_TRAIN_PROCESSES")
# Secret values the Docker launcher forwards as a private (masked) environment.
SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HF_TOKEN")


def step_command(step: str, run_dir: str) -> list[str]:
    return ["python", "-m", "tasks", step, "--run-dir", run_dir]


def _json_env(name: str, default: Any) -> Any:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise AirflowException(f"{name} is not valid JSON: {err}") from None


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

    @classmethod
    def from_env(cls) -> "LaunchSettings":
        env = os.environ.get
        base = cls()
        in_cluster = env("MT_K8S_IN_CLUSTER")
        return cls(
            image=env("MT_TRAIN_IMAGE", base.image),
            gpus=int(env("MT_GPUS", base.gpus)),
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
        )


def passthrough_env() -> dict[str, str]:
    return {name: os.environ[name] for name in PASSTHROUGH_ENV if os.environ.get(name)}


def kubernetes_operator(task_id: str, command: list[str], settings: LaunchSettings, **kwargs):
    """The KubernetesPodOperator that runs `command` in the training image on `settings.gpus` GPUs."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

    gpu = {"nvidia.com/gpu": str(settings.gpus)} if settings.gpus else {}
    return KubernetesPodOperator(
        task_id=task_id,
        name=task_id.replace("_", "-"),
        namespace=settings.namespace,
        image=settings.image,
        cmds=command[:1],
        arguments=command[1:],
        env_vars=[k8s.V1EnvVar(name=k, value=v) for k, v in passthrough_env().items()],
        secrets=[Secret("env", None, settings.secret_name)],
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": settings.cpu_request, "memory": settings.memory_request, **gpu},
            limits=gpu,
        ),
        node_selector=settings.node_selector or None,
        tolerations=[k8s.V1Toleration(**t) for t in settings.tolerations],
        service_account_name=settings.service_account,
        kubernetes_conn_id=settings.kubernetes_conn_id,
        in_cluster=settings.in_cluster,
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        do_xcom_push=False,
        labels={"app.kubernetes.io/name": "mt-retrain", "mt-retrain/step": command[3]},
        **kwargs,
    )


def docker_operator(task_id: str, command: list[str], settings: LaunchSettings, **kwargs):
    """The DockerOperator that runs `command` in the training image with `settings.gpus` GPUs."""
    from airflow.providers.docker.operators.docker import DockerOperator
    from docker.types import DeviceRequest

    return DockerOperator(
        task_id=task_id,
        image=settings.image,
        command=command,
        docker_url=settings.docker_url,
        network_mode=settings.docker_network,
        environment=passthrough_env(),
        private_environment={k: os.environ[k] for k in SECRET_ENV if os.environ.get(k)},
        device_requests=[DeviceRequest(count=settings.gpus, capabilities=[["gpu"]])] if settings.gpus else None,
        shm_size=2 * 1024**3,  # DataLoader workers share tensors through /dev/shm
        auto_remove="success",
        mount_tmp_dir=False,
        do_xcom_push=False,
        **kwargs,
    )


class RunStepOperator(BaseOperator):
    """Run a pipeline step in its container (or a local subprocess) and return the step's stored summary."""

    template_fields: Sequence[str] = ("run_dir", "launcher")
    ui_color = "#d6eaf8"

    def __init__(self, *, step: str, run_dir: str, launcher: str = "local", **kwargs) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.run_dir = run_dir
        self.launcher = launcher

    def build_delegate(self, settings: LaunchSettings | None = None) -> BaseOperator:
        """The provider operator for a container launcher (built at execute time, so it sees the settings)."""
        settings = settings or LaunchSettings.from_env()
        command = step_command(self.step, self.run_dir)
        factory = {"kubernetes": kubernetes_operator, "docker": docker_operator}[self.launcher]
        return factory(f"{self.task_id}_{self.launcher}", command, settings)

    def execute(self, context) -> dict:
        if self.launcher not in LAUNCHERS:
            raise AirflowException(f"unknown launcher {self.launcher!r}; choose one of {LAUNCHERS}")
        self.log.info("running step %r with the %s launcher: %s", self.step, self.launcher,
                      " ".join(step_command(self.step, self.run_dir)))
        if self.launcher == "local":
            self.run_local()
        else:
            self.build_delegate().execute(context)
        return self.stored_result()

    def run_local(self) -> None:
        command = [sys.executable, *step_command(self.step, self.run_dir)[1:]]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              bufsize=1) as proc:
            for line in proc.stdout:
                self.log.info("%s", line.rstrip())
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
