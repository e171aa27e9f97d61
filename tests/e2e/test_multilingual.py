"""One run, two language pairs: each pair is fine-tuned, evaluated and gated in its own mapped task
instance, and nothing is published unless every language passes. Real tiny models, real sacrebleu."""

import json

import pytest

from support.multilingual import (
    TINY_RECIPE,
    build_multilingual_digits_model,
    digit_pairs_to,
    unrelated_pairs,
    write_pair_data,
)
from support.webhook import WebhookReceiver
from tasks.io import storage


@pytest.fixture(scope="module")
def multilingual_model(tmp_path_factory):
    return build_multilingual_digits_model(tmp_path_factory.mktemp("models") / "tiny-digits-de-nl")


@pytest.fixture
def webhook(monkeypatch):
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_MT_WEBHOOK", json.dumps({"conn_type": "http",
                                                                   "extra": {"url": receiver.url}}))
        yield receiver


def test_a_language_that_does_not_gain_holds_back_the_whole_release(dag, multilingual_model, tmp_path, hub,
                                                                      webhook, monkeypatch):
    """en→de learns (real data); en→nl gets targets shuffled across sentences and cannot: its gate refuses,
    so neither model is published, the webhook hears why, and the run's note says it in one line."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    monkeypatch.setenv("MT_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("AIRFLOW_CONN_HUGGINGFACE_DEFAULT", json.dumps(
        {"conn_type": "generic", "password": "hf_writer", "extra": {"endpoint": hub.url}}))
    write_pair_data(tmp_path / "data", "de", digit_pairs_to("de", 1200, seed=5))
    write_pair_data(tmp_path / "data", "nl", unrelated_pairs("nl", 1200, seed=6))
    conf = {**TINY_RECIPE, "data_uri": str(tmp_path / "data"), "target_langs": ["de", "nl"],
            "base_model": str(multilingual_model), "hub_repo_id": "mlops/digits", "min_bleu_gain": 10.0}

    dag_run = dag.test(run_conf=conf)

    tis = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", tis
    for step in ("pull", "validate", "split", "train", "evaluate", "gate"):
        assert tis[(step, 0)] == tis[(step, 1)] == "success", step
    assert tis[("release_gate", -1)] == "skipped" and tis[("publish", -1)] == "skipped"

    run_dir = tmp_path / "artifacts" / "translation_finetune" / storage.safe_name(dag_run.run_id)
    de = storage.read_json(str(run_dir / "pairs" / "en-de" / "gate.json"))
    nl = storage.read_json(str(run_dir / "pairs" / "en-nl" / "gate.json"))
    assert de["decision"] == "promote" and de["bleu"]["gain"] >= 10.0
    assert nl["decision"] == "refuse" and nl["bleu"]["gain"] < 10.0
    assert json.loads((run_dir / "pairs" / "en-nl" / "config.json").read_text())["data_uri"].endswith("/en-nl/")
    assert [r for r in hub.requests if r["method"] in ("POST", "PUT")] == []  # nothing reached the Hub

    (refusal,) = webhook.events("refusal")
    assert refusal["dag_id"] == "translation_finetune" and refusal["run_id"] == dag_run.run_id
    assert "en-nl: BLEU gain" in refusal["message"] and "en-de" not in refusal["message"]
    with create_session() as session:
        note = DagRun.find(dag_id="translation_finetune", run_id=dag_run.run_id, session=session)[0].note
    assert note.startswith("refused (en-nl); nothing published | en-de passed the gate: +"), note
    assert "en-nl refused: BLEU gain" in note
