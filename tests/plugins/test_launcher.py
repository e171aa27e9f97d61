"""The launchers run the same command; the container ones ask for GPUs and pass secrets by reference."""

import pytest

from mt_airflow import launcher
from mt_airflow.launcher import LaunchSettings, RunStepOperator

RUN_DIR = "s3://artifacts/translation_finetune/manual__1"
SETTINGS = LaunchSettings(image="registry.example.com/mt/train:1.2.3", gpus=2, namespace="ml",
                          node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                          service_account="mt-trainer", secret_name="mt-secrets")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in launcher.PASSTHROUGH_ENV + launcher.SECRET_ENV:
        monkeypatch.delenv(name, raising=False)


def _operator(step="train", launcher_name="kubernetes"):
    return RunStepOperator(task_id=step, step=step, run_dir=RUN_DIR, launcher=launcher_name)


def test_every_launcher_runs_the_same_command():
    assert launcher.step_command("train", RUN_DIR) == ["python", "-m", "tasks", "train", "--run-dir", RUN_DIR]
    pod = _operator().build_delegate(SETTINGS).build_pod_request_obj(dry_run=True)
    container = pod.spec.containers[0]
    assert container.command + container.args == launcher.step_command("train", RUN_DIR)
    docker = _operator(launcher_name="docker").build_delegate(SETTINGS)
    assert docker.command == launcher.step_command("train", RUN_DIR)


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
    s = LaunchSettings.from_env()
    assert (s.image, s.gpus, s.node_selector) == ("img:2", 8, {"pool": "h200"})
    assert s.tolerations == [{"key": "gpu", "operator": "Equal", "value": "yes"}]


def test_bad_settings_json_names_the_variable(monkeypatch):
    monkeypatch.setenv("MT_K8S_NODE_SELECTOR", "{pool: h200")
    with pytest.raises(Exception, match="MT_K8S_NODE_SELECTOR is not valid JSON"):
        LaunchSettings.from_env()


def test_unknown_launcher_is_refused():
    with pytest.raises(Exception, match="unknown launcher 'slurm'"):
        _operator(launcher_name="slurm").execute({})
