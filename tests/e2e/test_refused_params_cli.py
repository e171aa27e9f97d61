"""`airflow dags test` with a conf the Params refuse answers in words, as the trigger form and the REST API do
(tests/live/test_trigger_form.py): the field, what is allowed and the setting that governs it, never the JSON
schema's regular expression. The DAG never starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.live import REFUSED_CONFS

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("conf, field, words", REFUSED_CONFS)
def test_airflow_dags_test_refuses_a_bad_param_in_words(airflow_db, conf, field, words):
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "dags", "test", "translation_finetune",
                           "--conf", json.dumps(conf)], env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    answer = next(line for line in output.splitlines()
                  if line.startswith("airflow.sdk.exceptions.ParamValidationError"))
    assert f"Invalid input for param {field}: {next(iter(conf.values()))!r} is not a " in answer, answer
    assert words in answer and "(?" not in answer and "^" not in answer, answer
    assert "task_id=prepare" not in output and "Marking run" not in output  # refused before any task ran
