"""Shared test setup: an offline Hugging Face client, import paths, and servers on 127.0.0.1.

huggingface_hub reads its settings once, when first imported, so they are set here, before any test
module imports it. A closed local port stands in for the real Hub: a call that forgets its endpoint fails
at once instead of going online.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
for path in (REPO_ROOT, REPO_ROOT / "plugins", REPO_ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

_HF_HOME = tempfile.mkdtemp(prefix="hf-home-")
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
for _tmp in (_HF_HOME, _AIRFLOW_HOME):
    atexit.register(shutil.rmtree, _tmp, ignore_errors=True)
TRIPWIRE_ENDPOINT = "http://127.0.0.1:9"

os.environ.update({
    "HF_ENDPOINT": TRIPWIRE_ENDPOINT,
    "HF_HOME": _HF_HOME,
    "HF_HUB_OFFLINE": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Airflow reads its configuration at import: a private home with a SQLite DB, this repo's DAGs/plugins.
    "AIRFLOW_HOME": _AIRFLOW_HOME,
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    # Local data, models and registries live in pytest's temporary folders and in this repository.
    "MT_LOCAL_DATA_ROOTS": os.pathsep.join([tempfile.gettempdir(), str(REPO_ROOT)]),
    # Ahead of what the environment had, not instead: on a lent GPU machine the carried wheels may sit in a folder
    # on PYTHONPATH (pip install --target), which the GPU tests' `python -m tasks` subprocesses need too.
    "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "plugins"),
                                   os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
})
# MT_DATA_URI schedules the main DAG (dags/translation_finetune.py): tests that want it set it themselves.
for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_ENABLE_HF_TRANSFER", "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE", "MT_DATA_URI", "MT_DATA_EVENTS_QUEUE",
            "MT_LAUNCHER", "MT_HUB_REPO_ID"):
    os.environ.pop(var, None)


@pytest.fixture(autouse=True, scope="session")
def _offline_hf_settings():
    from huggingface_hub import constants

    assert constants.ENDPOINT == TRIPWIRE_ENDPOINT, "huggingface_hub was imported before tests/conftest.py"
    assert constants.HF_HUB_DISABLE_TELEMETRY


@pytest.fixture
def hub(tmp_path):
    from devtools.local_hub import LocalHub

    with LocalHub(tmp_path / "hub", tokens={"hf_writer": "write", "hf_reader": "read"}) as running:
        yield running


@pytest.fixture
def api(hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token="hf_writer")


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 API on 127.0.0.1, reached by boto3 through AWS_ENDPOINT_URL like MinIO or real S3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """An S3 client on the moto server, with the endpoint exported for the code under test."""
    from tasks.io import storage

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    storage._s3_client.cache_clear()
    client = storage.s3_client()
    yield client
    for bucket in client.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):  # past 1,000 keys too
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=obj["Key"])
        if client.get_bucket_versioning(Bucket=name).get("Status"):  # every version and delete marker too
            for listed in client.get_paginator("list_object_versions").paginate(Bucket=name):
                for obj in listed.get("Versions", []) + listed.get("DeleteMarkers", []):
                    client.delete_object(Bucket=name, Key=obj["Key"], VersionId=obj["VersionId"])
        client.delete_bucket(Bucket=name)
    storage._s3_client.cache_clear()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """An untrained tiny Marian model (Marian tokenizer layout), built once per test session."""
    from support.models import build_digits_model

    return build_digits_model(tmp_path_factory.mktemp("models") / "tiny-digits")


@pytest.fixture(scope="session")
def tiny_m2m100(tmp_path_factory):
    """An untrained tiny M2M100 (a forced-BOS family) with the real M2M100 tokenizer class."""
    from support.models import build_digits_m2m100

    return build_digits_m2m100(tmp_path_factory.mktemp("m2m") / "tiny-m2m100")


@pytest.fixture(scope="session")
def digits_translator(tiny_model, tmp_path_factory):
    """The tiny model trained to read 3–7 digits into German (a good base model, and a good candidate)."""
    from support.models import train_digits_model

    return train_digits_model(tiny_model, tmp_path_factory.mktemp("models") / "digits-translator")
