"""The launchers execute the same argv; the container ones ask for GPUs, give the container a memory-backed
/dev/shm, wait long enough for a GPU node, and pass secrets by reference."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mt_airflow import launcher
from mt_airflow.launcher import LaunchSettings, RunStepOperator
from support.runs import REPO_ROOT as REPO

RUN_DIR = "s3://artifacts/translation_finetune/manual__1"
EXECUTED = ["python", "-m", "tasks", "train", "--run-dir", RUN_DIR]  # what every launcher must run
DOCKERFILE = Path(__file__).resolve().parents[2] / "docker" / "train.Dockerfile"
SETTINGS = LaunchSettings(image="registry.example.com/mt/train:1.2.3", gpus=2, namespace="ml",
                          node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                          service_account="mt-trainer", secret_name="mt-secrets")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in launcher.PASSTHROUGH_ENV + launcher.SECRET_ENV:
        monkeypatch.delenv(name, raising=False)


def _operator(step="train", launcher_name="kubernetes"):
    return RunStepOperator(task_id=step, step=step, run_dir=RUN_DIR, launcher=launcher_name)


def image_instruction(name: str) -> list[str]:
    """The exec-form ENTRYPOINT or CMD of the training image, as its Dockerfile declares it."""
    (line,) = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith(f"{name} ")]
    return json.loads(line[len(name):])


def docker_argv(op) -> list[str]:
    """What the container runs: the image's ENTRYPOINT, then the operator's command in place of the CMD."""
    command = shlex.split(op.command) if isinstance(op.command, str) else op.command
    return image_instruction("ENTRYPOINT") + (command or image_instruction("CMD"))


def pod_argv(pod) -> list[str]:
    """What the pod's container runs: `command` replaces the ENTRYPOINT (and drops the CMD), `args` the CMD."""
    container = pod.spec.containers[0]
    entrypoint = container.command or image_instruction("ENTRYPOINT")
    arguments = container.args if container.args is not None else [] if container.command \
        else image_instruction("CMD")
    return entrypoint + arguments


def test_the_image_entrypoint_is_the_one_the_launchers_assume():
    assert image_instruction("ENTRYPOINT") == list(launcher.ENTRYPOINT) == EXECUTED[:3]


def test_docker_runs_the_step_once_after_the_image_entrypoint():
    assert docker_argv(_operator(launcher_name="docker").build_delegate(SETTINGS)) == EXECUTED


def test_the_pod_runs_the_step_whatever_the_image_declares():
    pod = _operator().build_delegate(SETTINGS).build_pod_request_obj(dry_run=True)
    assert pod_argv(pod) == EXECUTED
    assert pod.spec.containers[0].command == EXECUTED[:3]  # explicit: an image built elsewhere cannot change it


def test_the_local_launcher_runs_the_module_with_the_workers_python(tmp_path, monkeypatch):
    assert launcher.local_command("train", RUN_DIR) == [sys.executable, *EXECUTED[1:]]
    lines = []
    monkeypatch.setattr(RunStepOperator, "log", property(lambda self: type("Log", (), {
        "info": staticmethod(lambda message, *args: lines.append(message % args))})()))
    missing = tmp_path / "no-run-here"
    with pytest.raises(Exception, match="failed with exit code"):
        RunStepOperator(task_id="train", step="train", run_dir=str(missing)).run_local()
    # The step itself got as far as looking for the run's config: argparse took the command line.
    assert f"No such file or directory: '{missing / 'config.json'}'" in "\n".join(lines)


def test_the_delegate_is_built_from_the_rendered_fields():
    op = RunStepOperator(task_id="train", step="train", run_dir="{{ params.root }}/{{ run_id }}",
                         launcher="{{ params.launcher }}")
    op.render_template_fields({"params": {"root": "s3://artifacts/translation_finetune", "launcher": "kubernetes"},
                               "run_id": "manual__1"})
    assert (op.run_dir, op.launcher) == (RUN_DIR, "kubernetes")
    assert pod_argv(op.build_delegate(SETTINGS).build_pod_request_obj(dry_run=True)) == EXECUTED


def test_kubernetes_pod_requests_gpus_on_the_gpu_pool(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_never_in_spec")
    pod = _operator().build_delegate(SETTINGS).build_pod_request_obj(dry_run=True)
    container = pod.spec.containers[0]
    assert container.image == "registry.example.com/mt/train:1.2.3"
    assert container.resources.limits == {"nvidia.com/gpu": "2"}
    assert container.resources.requests["nvidia.com/gpu"] == "2"
    assert pod.spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations] == \
        [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert pod.spec.service_account_name == "mt-trainer"
    assert pod.metadata.namespace == "ml"
    # Secrets by reference: the whole Secret becomes env vars, no value appears in the spec.
    assert [e.secret_ref.name for e in container.env_from] == ["mt-secrets"]
    assert {e.name: e.value for e in container.env} == {"AWS_ENDPOINT_URL": "http://minio:9000"}
    assert "hf_secret_value_never_in_spec" not in str(pod.to_dict())


def test_the_pod_gets_a_memory_backed_dev_shm_and_time_to_find_a_gpu_node():
    op = _operator().build_delegate(SETTINGS)
    pod = op.build_pod_request_obj(dry_run=True)
    (mount,) = pod.spec.containers[0].volume_mounts
    (volume,) = [v for v in pod.spec.volumes if v.name == mount.name]
    assert mount.mount_path == "/dev/shm"
    assert (volume.empty_dir.medium, volume.empty_dir.size_limit) == ("Memory", "16Gi")
    # Waiting for the autoscaler's node and for the image pull each get 30 minutes, not the default 120 s.
    assert op.schedule_timeout_seconds == op.startup_timeout_seconds == 1800
    sized = LaunchSettings(shm_size="64Gi", startup_timeout_s=3600)
    op = _operator().build_delegate(sized)
    assert op.build_pod_request_obj(dry_run=True).spec.volumes[0].empty_dir.size_limit == "64Gi"
    assert op.startup_timeout_seconds == 3600


def test_the_pod_operator_runs_in_the_launcher_even_where_operators_defer_by_default():
    """The launcher runs the operator's execute inside its own and has no trigger_reentry to resume a deferred one.
    The provider reads `default_deferrable` when it is imported: a worker whose deployment sets it, here."""
    code = ("from mt_airflow.launcher import LaunchSettings, RunStepOperator\n"
            "op = RunStepOperator(task_id='train', step='train', run_dir='s3://b/r', launcher='kubernetes')\n"
            "print(op.build_delegate(LaunchSettings()).deferrable)")
    env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
           "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "False"


def test_the_docker_container_gets_the_same_dev_shm_size():
    assert _operator(launcher_name="docker").build_delegate(SETTINGS).shm_size == 16 * 2**30
    assert _operator(launcher_name="docker").build_delegate(LaunchSettings(shm_size="512Mi")).shm_size == 2**29


def test_docker_container_requests_gpus_and_keeps_secrets_private(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.internal")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret")
    op = _operator(launcher_name="docker").build_delegate(SETTINGS)
    (request,) = op.device_requests
    assert request["Count"] == 2 and request["Capabilities"] == [["gpu"]]
    assert op.image == SETTINGS.image
    assert op.environment == {"HF_ENDPOINT": "http://hub.internal"}
    assert op._private_environment == {"AWS_SECRET_ACCESS_KEY": "s3-secret"}  # masked, not templated
    assert "s3-secret" not in " ".join(op.command)
    assert op.network_mode is None
    networked = LaunchSettings(docker_network="mt-retrain_default")
    assert _operator(launcher_name="docker").build_delegate(networked).network_mode == "mt-retrain_default"


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MT_TRAIN_IMAGE", "img:2")
    monkeypatch.setenv("MT_GPUS", "8")
    monkeypatch.setenv("MT_K8S_NODE_SELECTOR", '{"pool": "h200"}')
    monkeypatch.setenv("MT_K8S_TOLERATIONS", '[{"key": "gpu", "operator": "Equal", "value": "yes"}]')
    monkeypatch.setenv("MT_K8S_STARTUP_TIMEOUT", "2700")
    monkeypatch.setenv("MT_SHM_SIZE", "32Gi")
    monkeypatch.setenv("MT_MODEL_CACHE", "mt-retrain-models")
    s = LaunchSettings.from_env()
    assert s.model_cache == "mt-retrain-models"
    assert (s.image, s.gpus, s.node_selector) == ("img:2", 8, {"pool": "h200"})
    assert s.tolerations == [{"key": "gpu", "operator": "Equal", "value": "yes"}]
    assert (s.startup_timeout_s, s.shm_size) == (2700, "32Gi")


def test_tolerations_are_read_as_a_pod_spec_writes_them_and_anything_else_is_refused_by_name():
    """`tolerationSeconds`, as kubectl and every manifest write it, was a TypeError when the task ran."""
    from mt_airflow.launcher import k8s_tolerations

    spec = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
    pod = _operator().build_delegate(LaunchSettings(tolerations=spec)).build_pod_request_obj(dry_run=True)
    assert [(t.key, t.effect, t.toleration_seconds) for t in pod.spec.tolerations] == [("nvidia.com/gpu", "NoExecute",
                                                                                        300)]
    assert k8s_tolerations([{"key": "a", "toleration_seconds": 5}])[0].toleration_seconds == 5
    for bad in ([{"key": "a", "tolerations": 5}], {"key": "a"}, ["a"]):
        with pytest.raises(launcher.AirflowException, match="MT_K8S_TOLERATIONS"):
            k8s_tolerations(bad)


def _pending_pod(reason=None, message=None):
    from kubernetes.client import models as k8s

    waiting = k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason=reason, message=message))
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="p", namespace="mt-retrain"), status=k8s.V1PodStatus(
        phase="Pending", conditions=[k8s.V1PodCondition(type="PodScheduled", status="True")],
        container_statuses=[k8s.V1ContainerStatus(name="base", image="i", image_id="", ready=False, restart_count=0,
                                                  state=waiting)] if reason else None))


def test_a_container_that_cannot_be_created_fails_its_pod_in_minutes_with_kubelets_reason(monkeypatch):
    """A missing Secret: the pod sits on a GPU node in CreateContainerConfigError, and the pod operator waited its
    whole startup timeout (30 minutes a try) and then said only "took too long to start". The provider's own wait
    loop runs here, on a fake API that answers as the cluster would."""
    import time
    from unittest import mock

    from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import PodLaunchFailedException
    from airflow.providers.cncf.kubernetes.utils.pod_manager import PodLaunchTimeoutException

    monkeypatch.setattr(launcher, "CONTAINER_CONFIG_GRACE_S", 0.3)

    def waiting_on(pod):
        op = _operator().build_delegate(LaunchSettings(startup_timeout_s=1))
        op.__dict__["client"] = client = mock.MagicMock()  # the operator's cached Kubernetes client
        client.read_namespaced_pod.return_value = pod
        op.startup_check_interval_seconds, op.log_events_on_startup = 0.05, False
        started = time.monotonic()
        with pytest.raises(Exception) as failed:
            op.await_pod_start(pod)
        return failed.value, time.monotonic() - started

    error, waited = waiting_on(_pending_pod("CreateContainerConfigError", 'secret "mt-retrain-secrets" not found'))
    assert isinstance(error, PodLaunchFailedException) and waited < 1
    assert 'CreateContainerConfigError: secret "mt-retrain-secrets" not found' in str(error)
    error, waited = waiting_on(_pending_pod())  # an image still pulling: the provider's own timeout, as before
    assert isinstance(error, PodLaunchTimeoutException) and waited >= 1


def test_the_pod_operators_cleanup_after_a_container_config_error_still_runs(monkeypatch):
    """The early failure belongs to the wait for the pod to start. Raised by every read of the pod, it also broke
    the operator's cleanup, which reads the pod first: no pod events or container states in the log, and the pod
    was not marked as seen, so a retry would reattach to the pod that cannot start."""
    from unittest import mock

    from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import PodLaunchFailedException

    monkeypatch.setattr(launcher, "CONTAINER_CONFIG_GRACE_S", 0.1)
    from kubernetes.client import models as k8s

    pod = _pending_pod("CreateContainerConfigError", 'secret "mt-retrain-secrets" not found')
    pod.spec = k8s.V1PodSpec(containers=[k8s.V1Container(name="base")])
    op = _operator().build_delegate(LaunchSettings(startup_timeout_s=5))
    op.__dict__["client"] = client = mock.MagicMock()
    client.read_namespaced_pod.return_value = pod
    op.startup_check_interval_seconds, op.log_events_on_startup = 0.05, False
    with pytest.raises(PodLaunchFailedException):
        op.await_pod_start(pod)
    marked = mock.MagicMock()
    monkeypatch.setattr(op, "patch_already_checked", marked)
    with pytest.raises(Exception) as failed:
        op.cleanup(pod=pod, remote_pod=pod)
    assert not isinstance(failed.value, PodLaunchFailedException) and "returned a failure" in str(failed.value)
    marked.assert_called_once()


def test_the_pod_keeps_hub_models_on_the_shared_cache_claim():
    cached = LaunchSettings(model_cache="mt-retrain-models")
    pod = _operator().build_delegate(cached).build_pod_request_obj(dry_run=True)
    container = pod.spec.containers[0]
    mounts = {m.name: m.mount_path for m in container.volume_mounts}
    assert mounts == {"dshm": "/dev/shm", "model-cache": "/cache/hf-hub"}
    (volume,) = [v for v in pod.spec.volumes if v.name == "model-cache"]
    assert volume.persistent_volume_claim.claim_name == "mt-retrain-models"
    assert {e.name: e.value for e in container.env}["HF_HUB_CACHE"] == "/cache/hf-hub"
    # The image's user may write there, and a full cache is not walked at every start.
    context = pod.spec.security_context
    assert (context.fs_group, context.fs_group_change_policy) == (launcher.IMAGE_UID, "OnRootMismatch")
    # Without one, nothing of it is in the pod.
    plain = _operator().build_delegate(LaunchSettings()).build_pod_request_obj(dry_run=True)
    assert [v.name for v in plain.spec.volumes] == ["dshm"] and plain.spec.security_context.fs_group is None
    assert "HF_HUB_CACHE" not in {e.name for e in plain.spec.containers[0].env or []}


def test_the_container_keeps_hub_models_on_the_shared_cache_volume():
    op = _operator(launcher_name="docker").build_delegate(LaunchSettings(model_cache="mt-retrain-hf-models"))
    (mount,) = op.mounts
    assert (mount["Type"], mount["Source"], mount["Target"]) == ("volume", "mt-retrain-hf-models", "/cache/hf-hub")
    assert op.environment["HF_HUB_CACHE"] == "/cache/hf-hub"
    plain = _operator(launcher_name="docker").build_delegate(LaunchSettings())
    assert plain.mounts == [] and "HF_HUB_CACHE" not in plain.environment


def test_the_image_user_owns_the_folder_the_cache_is_mounted_on():
    """A new Docker volume copies the owner of the image's folder; the pod's fsGroup is the image's user."""
    (line,) = [line for line in DOCKERFILE.read_text().splitlines() if "useradd" in line]
    assert f"--uid {launcher.IMAGE_UID} mt" in line
    assert f"mkdir -p {launcher.MODEL_CACHE_PATH} && chown mt:mt {launcher.MODEL_CACHE_PATH}" in line
    assert f"HF_HUB_CACHE={launcher.MODEL_CACHE_PATH} " in DOCKERFILE.read_text()  # what the image bakes in is there


@pytest.mark.parametrize("launcher_name, name, message", [
    ("kubernetes", "/mnt/models", "MT_MODEL_CACHE must name a PersistentVolumeClaim .* for the kubernetes launcher"),
    ("kubernetes", "stack_models", "MT_MODEL_CACHE must name a PersistentVolumeClaim .* for the kubernetes launcher"),
    ("docker", "/mnt/models", "MT_MODEL_CACHE must name a Docker volume .* for the docker launcher, not '/mnt/models'"),
])
def test_a_cache_name_the_launcher_cannot_mount_is_refused(launcher_name, name, message):
    with pytest.raises(Exception, match=message):
        _operator(launcher_name=launcher_name).build_delegate(LaunchSettings(model_cache=name))


def test_a_compose_volume_name_is_a_docker_volume():
    cached = LaunchSettings(model_cache="mt-retrain_hf-models")  # how compose names a volume it manages
    assert _operator(launcher_name="docker").build_delegate(cached).mounts[0]["Source"] == "mt-retrain_hf-models"


@pytest.mark.parametrize("name, value, message", [
    ("MT_K8S_STARTUP_TIMEOUT", "30m", "MT_K8S_STARTUP_TIMEOUT must be a whole number > 0, not '30m'"),
    ("MT_K8S_STARTUP_TIMEOUT", "0", "MT_K8S_STARTUP_TIMEOUT must be a whole number > 0, not '0'"),
    ("MT_GPUS", "two", "MT_GPUS must be a whole number ≥ 0, not 'two'"),  # was int()'s ValueError, naming nothing
    ("MT_GPUS", "-1", "MT_GPUS must be a whole number ≥ 0, not '-1'"),
])
def test_bad_settings_name_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(Exception, match=message):
        LaunchSettings.from_env()


def test_no_gpus_is_a_setting(monkeypatch):
    monkeypatch.setenv("MT_GPUS", "0")
    assert LaunchSettings.from_env().gpus == 0


def test_a_shm_size_docker_cannot_take_is_refused():
    with pytest.raises(Exception, match="size '16GB' is not a byte count or a quantity like 16Gi"):
        _operator(launcher_name="docker").build_delegate(LaunchSettings(shm_size="16GB"))


@pytest.mark.parametrize("env, step, hours", [
    ({}, "train", 24), ({}, "curve", 24), ({}, "evaluate", 6),
    ({"MT_TRAIN_TIMEOUT_HOURS": "72"}, "train", 72), ({"MT_TRAIN_TIMEOUT_HOURS": "72"}, "curve", 72),
    ({"MT_EVALUATE_TIMEOUT_HOURS": "1.5"}, "evaluate", 1.5),
])
def test_gpu_steps_time_out_after_the_deployments_hours(monkeypatch, env, step, hours):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert launcher.execution_timeout(step).total_seconds() == hours * 3600


def test_a_bad_timeout_names_the_variable(monkeypatch):
    monkeypatch.setenv("MT_EVALUATE_TIMEOUT_HOURS", "six")
    with pytest.raises(Exception, match="MT_EVALUATE_TIMEOUT_HOURS must be a number > 0, not 'six'"):
        launcher.execution_timeout("evaluate")


def test_bad_settings_json_names_the_variable(monkeypatch):
    monkeypatch.setenv("MT_K8S_NODE_SELECTOR", "{pool: h200")
    with pytest.raises(Exception, match="MT_K8S_NODE_SELECTOR is not valid JSON"):
        LaunchSettings.from_env()


def test_unknown_launcher_is_refused():
    with pytest.raises(Exception, match="unknown launcher 'slurm'"):
        _operator(launcher_name="slurm").execute({})


@pytest.mark.parametrize("cache", [None, "mt-retrain-models"])
def test_a_namespace_that_enforces_the_restricted_pod_security_standard_admits_the_pod(cache):
    """The checks of Kubernetes' "restricted" profile (Pod Security Admission) that a pod spec can fail: a namespace
    labelled pod-security.kubernetes.io/enforce=restricted refuses a pod that fails any, before it exists."""
    pod = _operator().build_delegate(LaunchSettings(model_cache=cache)).build_pod_request_obj(dry_run=True)
    spec, (container,) = pod.spec, pod.spec.containers
    pod_ctx, ctx = spec.security_context, container.security_context
    assert ctx.allow_privilege_escalation is False
    assert ctx.capabilities.drop == ["ALL"] and not ctx.capabilities.add
    assert (ctx.run_as_non_root or pod_ctx.run_as_non_root) is True
    assert (ctx.seccomp_profile or pod_ctx.seccomp_profile).type in ("RuntimeDefault", "Localhost")
    assert not ctx.privileged and not spec.host_network and not spec.host_pid and not spec.host_ipc
    assert all(v.host_path is None for v in spec.volumes)
    assert pod_ctx.run_as_user in (None, launcher.IMAGE_UID)  # the image's user: no uid 0 forced


@pytest.mark.parametrize("step, gpus", [("train", 8), ("validate", 1), ("evaluate", 1), ("curve", 1)])
def test_only_the_data_parallel_step_holds_every_gpu_of_the_deployment(monkeypatch, tmp_path, step, gpus):
    """validate, evaluate and a learning-curve point run on one device: with MT_GPUS=8 they would hold seven idle
    GPUs for hours (and be billed for them)."""
    from tasks.steps import STEPS

    assert STEPS[step].data_parallel is (step == "train")
    eight = LaunchSettings(gpus=8)
    pod = _operator(step).build_delegate(eight).build_pod_request_obj(dry_run=True)
    assert pod.spec.containers[0].resources.limits == {"nvidia.com/gpu": str(gpus)}
    (request,) = _operator(step, "docker").build_delegate(eight).device_requests
    assert request["Count"] == gpus
    assert launcher.step_gpus(step, LaunchSettings(gpus=0)) == 0  # a deployment without GPUs asks for none


def test_a_pod_whose_worker_died_cannot_outlive_its_steps_timeout(monkeypatch):
    """On the last try nothing reattaches to the pod of a worker that died, and nothing calls on_kill: the pod's own
    deadline ends it, at the step's timeout counted from its start (so after Airflow's, which counts its wait)."""
    monkeypatch.setenv("MT_EVALUATE_TIMEOUT_HOURS", "2")
    for step, seconds in (("train", 24 * 3600), ("evaluate", 2 * 3600)):
        pod = _operator(step).build_delegate(SETTINGS).build_pod_request_obj(dry_run=True)
        assert pod.spec.active_deadline_seconds == seconds


def test_the_artifact_root_never_depends_on_the_working_directory(monkeypatch, tmp_path):
    import mt_airflow

    monkeypatch.delenv("MT_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert mt_airflow.artifact_root() == str(tmp_path / "airflow" / "artifacts")  # as Airflow's own ~/airflow
    monkeypatch.setenv("AIRFLOW_HOME", "/opt/airflow")
    assert mt_airflow.artifact_root() == "/opt/airflow/artifacts"


def test_an_airflow_home_with_a_tilde_or_a_variable_is_the_folder_airflow_uses(monkeypatch, tmp_path):
    """An env file or a systemd unit passes AIRFLOW_HOME=~/airflow-prod unexpanded: Airflow expands it, so must the
    artifact root, or it lies in a folder named `~` under each process's working directory."""
    import mt_airflow
    from airflow.configuration import get_airflow_home

    monkeypatch.delenv("MT_ARTIFACT_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MT_TEST_HOMES", str(tmp_path / "homes"))
    monkeypatch.chdir(tmp_path.parent)
    for home in ("~/airflow-prod", "$MT_TEST_HOMES/airflow"):
        monkeypatch.setenv("AIRFLOW_HOME", home)
        assert mt_airflow.artifact_root() == str(Path(get_airflow_home()) / "artifacts"), home
        assert mt_airflow.artifact_root().startswith(str(tmp_path) + "/"), home
