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

    from tasks import config
    from tasks.data import consumed

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
    for step in ("pull", "validate", "split", "champion", "train", "evaluate", "gate"):
        assert tis[(f"language.{step}", 0)] == tis[(f"language.{step}", 1)] == "success", step
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
    # en-nl's refusal is a decision: its data counts as consumed. en-de passed but was held back: its data
    # stays new, so the next run trains it again and releases it, instead of dropping it (new_only) or waiting.
    assert tis[("mark_consumed", 0)] == "skipped" and tis[("mark_consumed", 1)] == "success"
    assert consumed.load(config.load(str(run_dir / "pairs" / "en-de"))) == {}


def _state(tis, step):
    return [tis.get((f"language.{step}", i)) for i in range(3)]


def test_languages_are_independent_until_the_release_gate(dag, multilingual_model, tmp_path, hub, monkeypatch):
    """Three languages in one run: en-de has new data and passes, en-nl has nothing new (its data was consumed
    before), en-fr fails validation. Each affects only itself: de is trained and gated, nl ends early, fr
    fails; the release gate does not run (a language failed), so nothing is published and only languages
    whose release was decided consume. Without fr, the next run publishes de although nl has nothing new."""
    from tasks import config
    from tasks.data import consumed, pull, validate

    monkeypatch.setenv("MT_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("AIRFLOW_CONN_HUGGINGFACE_DEFAULT", json.dumps(
        {"conn_type": "generic", "password": "hf_writer", "extra": {"endpoint": hub.url}}))
    data = tmp_path / "data"
    write_pair_data(data, "de", digit_pairs_to("de", 1200, seed=5))
    write_pair_data(data, "nl", digit_pairs_to("nl", 1200, seed=6))
    write_pair_data(data, "fr", digit_pairs_to("de", 30, seed=7))  # far too few pairs: validation fails
    # en-nl's data was consumed by an earlier run of this pipeline (same DAG, data URI and pair).
    earlier = config.build({"data_uri": f"{data / 'en-nl'}/", "target_lang": "nl", "min_clean_pairs": 1,
                            "alignment_screen": False},  # its default base is a Hub id: not here
                           dag_id="translation_finetune", run_id="earlier", artifact_root=str(tmp_path / "artifacts"))
    config.save(earlier)
    pull.run(earlier)
    validate.run(earlier)
    consumed.commit(earlier)
    conf = {**TINY_RECIPE, "data_uri": str(data), "target_langs": ["de", "nl", "fr"],
            "base_model": str(multilingual_model), "hub_repo_id": "mlops/digits", "min_bleu_gain": 5.0}

    dag_run = dag.test(run_conf=conf)

    tis = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "failed", tis
    for step in ("pull", "validate", "split", "champion", "train", "evaluate", "gate"):
        assert _state(tis, step)[0] == "success", (step, tis)  # en-de: untouched by the others
        assert _state(tis, step)[1] == "skipped", (step, tis)  # en-nl: nothing new
    assert _state(tis, "validate")[2] == "failed" and _state(tis, "gate")[2] == "upstream_failed"
    assert tis[("release_gate", -1)] == "upstream_failed"
    assert [r for r in hub.requests if r["method"] in ("POST", "PUT")] == []
    assert [tis[("mark_consumed", i)] for i in range(3)] == ["skipped"] * 3  # no release was decided

    del conf["target_langs"][2]
    second = dag.test(run_conf=conf)
    tis = {(ti.task_id, ti.map_index): ti.state for ti in second.get_task_instances()}
    assert second.state == "success", tis
    assert _state(tis, "gate")[:2] == ["success", "skipped"]
    assert tis[("publish", 0)] == "success" and tis[("publish", 1)] == "skipped"
    assert "mlops/digits-de" in {r["path"].split("/api/models/")[-1].split("/commit")[0]
                                 for r in hub.requests if "/commit/" in r["path"]}
    assert tis[("mark_consumed", 0)] == "success" and tis[("mark_consumed", 1)] == "skipped"
