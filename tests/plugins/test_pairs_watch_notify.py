"""Language-pair fan-out, new-data detection and the webhook's address: small pieces with known answers."""

import json
from types import SimpleNamespace

import pytest

from mt_airflow import notify, pairs, watch
from support.corpora import digit_pairs, write_jsonl
from support.webhook import WebhookReceiver
from tasks import config
from tasks.io import storage


def _cfg(tmp_path, **params):
    return config.build({"data_uri": "s3://data/support/", "hub_repo_id": "org/mt-support", **params},
                        dag_id="d", run_id="r", artifact_root=str(tmp_path))


def test_a_single_pair_run_is_its_own_pair(tmp_path):
    cfg = _cfg(tmp_path)
    assert pairs.expand(cfg) == [cfg]


def test_each_target_language_gets_its_own_data_repository_and_run_directory(tmp_path):
    cfg = _cfg(tmp_path, target_langs=["de", "nl"],
               data_snapshot=["s3://data/support/en-nl/a.jsonl", "s3://data/support/en-de/b.tsv"],
               retract_data=["s3://data/support/en-de/vendor-x/"])
    de, nl = pairs.expand(cfg)
    assert de.retract_data == ["s3://data/support/en-de/vendor-x/"] and nl.retract_data == []
    assert (de.target_lang, de.data_uri, de.hub_repo_id) == ("de", "s3://data/support/en-de/", "org/mt-support-de")
    assert nl.run_dir == storage.join(cfg.run_dir, "pairs", "en-nl") and nl.target_langs == []
    assert de.data_snapshot == ["s3://data/support/en-de/b.tsv"] and nl.data_snapshot == ["s3://data/support/en-nl/a.jsonl"]
    # Each pair keeps its own frozen test set and consumed objects, as if it were a pipeline of its own.
    assert de.state_dir == config.state_dir_for(str(tmp_path), "d", "s3://data/support/en-de/", "en", "de")
    assert nl.state_dir == config.state_dir_for(str(tmp_path), "d", "s3://data/support/en-nl/", "en", "nl")


@pytest.mark.parametrize("params, message", [
    ({"target_langs": ["en"]}, "holds source_lang"),
    ({"target_langs": ["de", "de"]}, "repeats a language"),
    ({"target_langs": ["DE"]}, "target_langs.0"),
])
def test_bad_target_languages_are_refused(tmp_path, params, message):
    with pytest.raises(config.ConfigError, match=message):
        _cfg(tmp_path, **params)


def test_the_watcher_announces_new_and_changed_data_files_once(tmp_path):
    data, state = tmp_path / "data", str(tmp_path / "state.json")
    part = write_jsonl(data / "2026-11" / "part.jsonl", digit_pairs(5))
    (data / "README.txt").write_text("not data")
    assert watch.find_new(str(data), state) == {str(part): storage.list_objects(str(data))[0].etag}
    watch.remember(state, watch.find_new(str(data), state))
    assert watch.find_new(str(data), state) == {}
    write_jsonl(part, digit_pairs(6))  # rewritten: a new ETag is new data
    assert list(watch.find_new(str(data), state)) == [str(part)]


def test_a_retrain_reads_the_keys_of_the_events_that_triggered_it():
    events = {"asset-a": [SimpleNamespace(extra={"new_keys": ["s3://b/2.jsonl", "s3://b/1.jsonl"]})],
              "asset-b": [SimpleNamespace(extra={"new_keys": ["s3://b/1.jsonl"]}), SimpleNamespace(extra=None)]}
    assert watch.new_keys(events) == ["s3://b/1.jsonl", "s3://b/2.jsonl"]
    assert watch.new_keys(None) == [] and watch.new_keys({}) == []


@pytest.mark.parametrize("conn, url", [
    ({"conn_type": "http", "extra": {"url": "https://hooks.example/T1"}}, "https://hooks.example/T1"),
    ({"conn_type": "http", "host": "https://chat.example/hook/abc"}, "https://chat.example/hook/abc"),
    ({"conn_type": "http", "host": "127.0.0.1", "port": 8099, "schema": "hooks/mt"}, "http://127.0.0.1:8099/hooks/mt"),
    ({"conn_type": "https", "host": "alerts.internal"}, "https://alerts.internal"),
])
def test_webhook_url_from_the_connection(conn, url):
    from airflow.sdk import Connection

    assert notify.webhook_url(Connection(conn_id="c", **{**conn, "extra": json.dumps(conn.get("extra", {}))})) == url


def test_a_refusal_is_posted_and_a_dead_receiver_does_not_raise(monkeypatch):
    context = {"dag_run": SimpleNamespace(dag_id="translation_finetune", run_id="manual__1"),
               "ti": SimpleNamespace(task_id="release_gate")}
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_MT_WEBHOOK", json.dumps({"conn_type": "http", "extra": {"url": receiver.url}}))
        notify.notify_refusal(context, "en-nl: BLEU gain +0.40 < min_bleu_gain 1.0")
        dead_url = receiver.url
    assert receiver.received[0]["json"] == {
        "event": "refusal", "dag_id": "translation_finetune", "run_id": "manual__1", "task_id": "release_gate",
        "message": "en-nl: BLEU gain +0.40 < min_bleu_gain 1.0", "run_url": None}
    monkeypatch.setenv("AIRFLOW_CONN_MT_WEBHOOK", json.dumps({"conn_type": "http", "extra": {"url": dead_url}}))
    notify.notify_refusal(context, "nobody listens")  # logged, not raised: a refusal stays a success
    monkeypatch.delenv("AIRFLOW_CONN_MT_WEBHOOK")
    notify.notify_refusal(context, "no connection at all")
