"""deploy/helm/values.yaml for the official Airflow chart. `helm` and the chart cannot be installed here (no
Debian or PyPI package, no chart download), so this is a structural check: the values use the chart's keys
for the KubernetesExecutor, reference secrets instead of holding them, and, fed to the launcher exactly as
the chart's `env` sets them, produce training pods on the GPU node pool."""

import json
from pathlib import Path

import yaml

from mt_airflow.launcher import LaunchSettings, RunStepOperator

VALUES = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy" / "helm" / "values.yaml").read_text())
# Top-level keys of apache-airflow/airflow's values.schema.json that these values use.
CHART_KEYS = {"executor", "airflowVersion", "defaultAirflowTag", "images", "dags", "postgresql", "data", "config",
              "env", "secret", "scheduler", "apiServer", "dagProcessor", "triggerer", "workers"}


def _env() -> dict[str, str]:
    return {item["name"]: item["value"] for item in VALUES["env"]}


def test_values_use_the_chart_keys_and_the_kubernetes_executor():
    assert set(VALUES) <= CHART_KEYS
    assert VALUES["executor"] == "KubernetesExecutor"
    assert VALUES["airflowVersion"] == "3.3.2"
    assert set(VALUES["images"]["airflow"]) == {"repository", "tag", "pullPolicy"}
    assert VALUES["dags"]["gitSync"]["enabled"] is False  # the DAGs are baked into the image
    assert all(isinstance(item["value"], str) for item in VALUES["env"])  # the chart wants strings


def test_secrets_are_referenced_never_written():
    env = _env()
    for name in ("HF_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert name not in env
        (ref,) = [s for s in VALUES["secret"] if s["envName"] == name]
        assert ref == {"envName": name, "secretName": env["MT_K8S_SECRET"], "secretKey": name}


def test_the_gpu_pool_is_created_before_scheduling_with_the_documented_size():
    (init,) = VALUES["scheduler"]["extraInitContainers"]
    assert 'airflow pools set gpu "$MT_GPU_SLOTS"' in init["command"][-1]
    assert {e["name"]: e.get("value") for e in init["env"]}["MT_GPU_SLOTS"] == _env()["MT_GPU_SLOTS"]


def test_training_pods_land_on_the_gpu_node_pool(monkeypatch):
    for name, value in _env().items():
        monkeypatch.setenv(name, value)
    settings = LaunchSettings.from_env()
    op = RunStepOperator(task_id="train", step="train", run_dir="s3://mt-artifacts/runs/x/y", launcher="kubernetes")
    pod = op.build_delegate(settings).build_pod_request_obj(dry_run=True)
    container = pod.spec.containers[0]
    assert container.image == _env()["MT_TRAIN_IMAGE"]
    assert container.resources.limits == {"nvidia.com/gpu": "1"}
    assert pod.spec.node_selector == json.loads(_env()["MT_K8S_NODE_SELECTOR"])
    assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pod.spec.tolerations)
    assert pod.spec.service_account_name == "mt-retrain-trainer"
    assert [e.secret_ref.name for e in container.env_from] == ["mt-retrain-secrets"]
    assert pod.metadata.namespace == "mt-retrain"
