"""Language-pair fan-out, new-data detection and the webhook's address: small pieces with known answers."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
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


def test_a_folder_above_the_languages_stands_for_each_of_them(tmp_path):
    """Retracting the whole data folder of a multi-language pipeline matched no language's folder and was ignored."""
    de, nl = pairs.expand(_cfg(tmp_path, target_langs=["de", "nl"], retract_data=["s3://data/support/"],
                               data_snapshot=["s3://data/support/", "s3://data/support/en-de/b.tsv"]))
    assert (de.retract_data, nl.retract_data) == (["s3://data/support/en-de/"], ["s3://data/support/en-nl/"])
    assert (de.data_snapshot, nl.data_snapshot) == (["s3://data/support/en-de/", "s3://data/support/en-de/b.tsv"],
                                                    ["s3://data/support/en-nl/"])


@pytest.mark.parametrize("params, message", [
    # A language without snapshot entries ran as usual, pulling, publishing and consuming what was new.
    ({"target_langs": ["de", "nl"], "data_snapshot": ["s3://data/support/en-de/w1.jsonl"]},
     r"data_snapshot names nothing of target language\(s\) \['nl'\]"),
    ({"target_langs": ["de", "nl"], "retract_data": ["s3://data/support/en-fr/x.jsonl"]},
     "retract_data entries must lie in a language's folder"),
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
    found = watch.find(str(data), state)
    assert found.new == found.due == {str(part): storage.list_objects(str(data))[0].etag} and not found.again
    watch.remember(state, found)
    assert watch.find(str(data), state).due == {}
    write_jsonl(part, digit_pairs(6))  # rewritten: a new ETag is new data
    assert list(watch.find(str(data), state).new) == [str(part)]


def _consumed(path: Path, objects: dict, **more) -> str:
    storage.write_json(str(path), {"objects": {uri: {"etag": etag} for uri, etag in objects.items()}, **more})
    return str(path)


def test_a_key_a_failed_run_left_unconsumed_is_announced_again_with_a_growing_pause(tmp_path, monkeypatch):
    """Before, a key was remembered as soon as it was announced: when the run it started failed, a pipeline with
    `schedule: null` never retrained on it. Now it is announced again until every pipeline consumed it, a day
    later, then two, four and at most every seven days, so a key that fails every time cannot loop."""
    data, state = tmp_path / "data", str(tmp_path / "state.json")
    part = write_jsonl(data / "part.jsonl", digit_pairs(5))
    uri, etag = str(part), storage.stat(str(part)).etag
    de = _consumed(tmp_path / "de.json", {})  # the German pipeline's run failed: nothing consumed
    nl = _consumed(tmp_path / "nl.json", {uri: etag})  # the Dutch one consumed it
    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    watch.remember(state, watch.find(str(data), state, {str(data): [de, nl]}, now=start), now=start)
    announced_at = []
    for hours in range(1, 24 * 40):
        now = start + timedelta(hours=hours)
        found = watch.find(str(data), state, {str(data): [de, nl]}, now=now)
        if found.due:
            assert found.again == {uri: etag} and not found.new
            announced_at.append(hours)
        watch.remember(state, found, now=now)
    assert announced_at == [24, 72, 168, 336, 504, 672, 840]  # waits of 1, 2, 4, then 7 days

    _consumed(tmp_path / "de.json", {uri: etag})  # a later run of the German pipeline consumed it
    later = start + timedelta(days=60)
    found = watch.find(str(data), state, {str(data): [de, nl]}, now=later)
    assert list(found.settled) == [uri] and not found.due
    watch.remember(state, found, now=later)
    # Settled: never looked up again, however long; a quiet prefix costs the listing and the watcher's own state.
    read = []
    real = storage.read_json_or
    monkeypatch.setattr(storage, "read_json_or", lambda u, *a: read.append(u) or real(u, *a))
    quiet = watch.find(str(data), state, {str(data): [de, nl]}, now=later + timedelta(days=365))
    watch.remember(state, quiet)  # what the DAG's task does before it skips
    assert not quiet.due and read == [state]


def test_a_retracted_key_is_settled_not_announced_forever(tmp_path):
    data, state = tmp_path / "data", str(tmp_path / "state.json")
    part = write_jsonl(data / "old" / "part.jsonl", digit_pairs(5))
    retracted = _consumed(tmp_path / "de.json", {}, retracted={f"{data}/old/": {"by": "run-9"}})
    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    found = watch.find(str(data), state, {str(data): [retracted]}, now=start)
    assert list(found.settled) == [str(part)] and not found.due  # never announced: its run would pull nothing
    watch.remember(state, found, now=start)
    assert not watch.find(str(data), state, {str(data): [retracted]}, now=start + timedelta(days=2)).due


def test_a_state_written_before_announcements_were_tracked_is_read(tmp_path):
    data, state = tmp_path / "data", str(tmp_path / "state.json")
    part = write_jsonl(data / "part.jsonl", digit_pairs(5))
    storage.write_json(state, {"announced": {str(part): storage.stat(str(part)).etag}})
    consumed_it = _consumed(tmp_path / "de.json", {str(part): storage.stat(str(part)).etag})
    assert list(watch.find(str(data), state, {str(data): [consumed_it]}).settled) == [str(part)]
    assert watch.find(str(data), state, {str(data): [_consumed(tmp_path / "nl.json", {})]}).again  # not consumed: again


def test_a_new_key_every_pipeline_consumed_already_is_settled_not_announced(tmp_path):
    """A scheduled or manual run took it first, or S3's notification announced it and its run consumed it: the
    listing records it as settled, without an event that would start a run pulling nothing."""
    data, state = tmp_path / "data", str(tmp_path / "state.json")
    taken = write_jsonl(data / "w1" / "part.jsonl", digit_pairs(5))
    fresh = write_jsonl(data / "w2" / "part.jsonl", digit_pairs(6))
    de = _consumed(tmp_path / "de.json", {str(taken): storage.stat(str(taken)).etag})
    nl = _consumed(tmp_path / "nl.json", {str(taken): storage.stat(str(taken)).etag})
    found = watch.find(str(data), state, {str(data): [de, nl]})
    assert found.due == {str(fresh): storage.stat(str(fresh)).etag}
    assert found.settled == {str(taken): storage.stat(str(taken)).etag}
    watch.remember(state, found)
    assert watch.find(str(data), state, {str(data): [de, nl]}).due == {}
    write_jsonl(taken, digit_pairs(7))  # rewritten at the source: new data, whatever was consumed before
    assert list(watch.find(str(data), state, {str(data): [de, nl]}).new) == [str(taken)]


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
        "message": "en-nl: BLEU gain +0.40 < min_bleu_gain 1.0", "run_url": None,
        "text": "translation_finetune run manual__1: refusal in release_gate: en-nl: BLEU gain +0.40 &lt; "
                "min_bleu_gain 1.0"}
    monkeypatch.setenv("AIRFLOW_CONN_MT_WEBHOOK", json.dumps({"conn_type": "http", "extra": {"url": dead_url}}))
    notify.notify_refusal(context, "nobody listens")  # logged, not raised: a refusal stays a success
    monkeypatch.delenv("AIRFLOW_CONN_MT_WEBHOOK")
    notify.notify_refusal(context, "no connection at all")


def _hang_up_receiver():
    """A receiver that reads the request and closes the connection without answering."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            client.recv(65536)
            client.close()

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.mark.parametrize("url", ["hooks.example.com/services/T0/B0/TOKEN1234", "hang-up"])  # pasted without a scheme
def test_a_webhook_that_cannot_be_reached_neither_fails_the_task_nor_logs_its_url(url, monkeypatch, capsys):
    context = {"dag_run": SimpleNamespace(dag_id="translation_finetune", run_id="manual__1"),
               "ti": SimpleNamespace(task_id="release_gate")}
    server = _hang_up_receiver()
    if url == "hang-up":
        url = f"http://127.0.0.1:{server.getsockname()[1]}/services/T0/B0/TOKEN1234"
    monkeypatch.setenv("AIRFLOW_CONN_MT_WEBHOOK", json.dumps({"conn_type": "http", "extra": {"url": url}}))
    try:
        notify.notify_refusal(context, "en-nl refused")  # a refusal stays a success whatever the receiver does
    finally:
        server.close()
    logged = "".join(capsys.readouterr())
    assert "TOKEN1234" not in logged and "notification through 'mt_webhook' failed" in logged


def test_a_chat_webhook_gets_a_text_line_whose_data_cannot_ping_or_link(monkeypatch):
    """Slack and Mattermost refuse a payload without `text`; a file name in a message must not become `<!channel>`
    or a link there."""
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/")
    context = {"dag_run": SimpleNamespace(dag_id="translation_finetune", run_id="manual__2026+00:00"),
               "ti": SimpleNamespace(task_id="language.validate")}
    sent = notify.WebhookNotifier(message="bad batch: <!channel> <https://evil.example|fix>.jsonl").payload(context)
    assert sent["text"] == ("translation_finetune run manual__2026+00:00: failure in language.validate: bad batch: "
                            "&lt;!channel&gt; &lt;https://evil.example|fix&gt;.jsonl "
                            "(https://airflow.example/dags/translation_finetune/runs/manual__2026%2B00%3A00)")


def test_a_chat_webhooks_text_is_one_line_whose_data_cannot_mention_or_link_in_mattermost():
    """Mattermost ignores Slack's `<!channel>` but pings on `@channel` and renders `[text](url)` as a link; and an
    error's message may span lines, though the text is documented as one line."""
    context = {"dag_run": SimpleNamespace(dag_id="translation_finetune", run_id="manual__1"),
               "ti": SimpleNamespace(task_id="language.validate")}
    text = notify.WebhookNotifier(message="bad batch: @channel [fix](https://evil.example)\nsecond line").payload(
        context)["text"]
    assert "\n" not in text and "second line" in text
    assert "@channel" not in text and "](" not in text
    assert text.replace("\u2060", "") == ("translation_finetune run manual__1: failure in language.validate: bad batch: "
                                          "@channel [fix](https://evil.example) second line")
