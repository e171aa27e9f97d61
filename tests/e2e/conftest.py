"""End-to-end fixtures: a migrated Airflow metadata DB, data in moto's S3, a Hub connection to a local hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.corpora import digit_pairs, write_jsonl, write_tsv

HUB_TOKEN = "hf_writer"


@pytest.fixture(scope="session")
def airflow_db():
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run([str(airflow), "db", "migrate"], env=dict(os.environ), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture
def dag(airflow_db):
    """Parsed afresh for each test, as the scheduler parses the file: dag.test() leaves the run's conf in the
    DAG object's params, so a shared one would carry one test's conf into the next."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    assert bag.import_errors == {}
    return bag.dags["translation_finetune"]


@pytest.fixture
def domain_bucket(s3, tmp_path):
    """Fresh domain data in S3: the digit-reading task as JSONL and TSV, plus rows that must be rejected."""
    s3.create_bucket(Bucket="domain-data")
    s3.create_bucket(Bucket="artifacts")
    pairs = digit_pairs(1500, seed=11)
    files = {
        "batch-1/part-a.jsonl": write_jsonl(tmp_path / "a.jsonl", pairs[:900] + [("", "leer"), pairs[0]]),
        "batch-1/part-b.tsv": write_tsv(tmp_path / "b.tsv", pairs[900:] + [("one two", "eins zwei " * 20)]),
        "README.txt": tmp_path / "a.jsonl",  # not a data file: listed and ignored
    }
    for key, path in files.items():
        s3.upload_file(str(path), "domain-data", f"en-de/{key}")
    return "s3://domain-data/en-de/"


@pytest.fixture
def hub_connection(hub, monkeypatch):
    """The `huggingface_default` connection pointing at the local hub, as a deployment would configure it."""
    monkeypatch.setenv("AIRFLOW_CONN_HUGGINGFACE_DEFAULT", json.dumps(
        {"conn_type": "generic", "password": HUB_TOKEN, "extra": {"endpoint": hub.url}}))
    return hub


@pytest.fixture
def run_conf(domain_bucket, tiny_model, monkeypatch):
    monkeypatch.setenv("MT_ARTIFACT_ROOT", "s3://artifacts/runs")
    return {
        "data_uri": domain_bucket,
        "base_model": str(tiny_model),
        "alignment_screen": False,  # an untrained base cannot read a pair; test_dag_run screens with a trained one
        "hub_repo_id": "mlops/digits-en-de",
        "min_clean_pairs": 500,
        "learning_rate": 3e-3,
        "warmup_steps": 0.1,
        "max_tokens_per_batch": 512,
        "num_train_epochs": 100,
        "max_steps": 300,
        "eval_every_steps": 50,
        "precision": "fp32",
        "max_source_length": 32,
        "max_target_length": 32,
        "num_beams": 2,
    }
