"""S3 notifications on an SQS queue announce new data (mt_airflow.events): the triggerer's shared poll of the queue,
driven here by Airflow's own SharedStreamManager the way the triggerer drives it, against moto's S3 and SQS."""

import asyncio
import json
import time
from datetime import datetime, timezone

import pytest

from mt_airflow import events, watch
from support.notifications import messages_in, notifying_queue

LEGAL, SUPPORT = "s3://data/legal/en-de/", "s3://data/support/en-de/"


def _s3_body(*records: tuple[str, str]) -> str:
    return json.dumps({"Records": [{"eventName": name, "s3": {"bucket": {"name": "data"},
                                                              "object": {"key": key, "eTag": "e1"}}}
                                   for name, key in records]})


def test_a_notification_names_the_created_objects_whatever_its_wrapping():
    body = _s3_body(("ObjectCreated:Put", "legal/en-de/2026+12%2Fa%2Bb.jsonl"),
                    ("ObjectRemoved:Delete", "legal/en-de/old.jsonl"))
    # S3 encodes keys like a form: '+' is a space, '%2B' a plus.
    assert events.created_objects(body) == ["s3://data/legal/en-de/2026 12/a+b.jsonl"]
    through_sns = json.dumps({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:data", "Message": body})
    assert events.created_objects(through_sns) == events.created_objects(body)
    assert events.created_objects(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []


@pytest.mark.parametrize("body, reason", [
    ("not json", "not JSON"), ("[1, 2]", "not a JSON object"), ('{"Message": "hello"}', "no 'Records' list"),
    ('{"Records": [{"eventName": "ObjectCreated:Put"}]}', "without 's3'"),
])
def test_a_message_that_is_no_s3_notification_is_refused_with_its_reason(body, reason):
    with pytest.raises(ValueError, match=reason):
        events.created_objects(body)


def test_only_data_files_under_the_watched_prefix_are_announced():
    created = [f"s3://data/legal/en-de/{key}" for key in ("w1/a.jsonl", "w1/a.tsv.gz", "notes.txt", ".tmp/b.jsonl",
                                                          "x/../../c.jsonl")]
    created += ["s3://data/legal/en-nl/a.jsonl", "s3://data/legal/en-de-old/a.jsonl"]
    assert events.keys_under(LEGAL.rstrip("/"), created) == ["s3://data/legal/en-de/w1/a.jsonl",
                                                             "s3://data/legal/en-de/w1/a.tsv.gz"]


def test_the_triggerer_rebuilds_the_trigger_from_what_it_stores():
    from airflow.sdk.module_loading import import_string

    classpath, kwargs = events.NewDataTrigger("http://sqs.local/1/q", "s3://data/legal/en-de").serialize()
    assert (classpath, kwargs) == ("mt_airflow.events.NewDataTrigger",
                                   {"queue_url": "http://sqs.local/1/q", "data_uri": LEGAL})
    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)
    # Every watched prefix on one queue shares one poll of it.
    assert events.NewDataTrigger("http://sqs.local/1/q", SUPPORT).shared_stream_key() == \
        import_string(classpath)(**kwargs).shared_stream_key()


def test_the_queue_region_is_the_queue_urls(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert events.sqs_client("https://sqs.eu-west-1.amazonaws.com/123/q").meta.region_name == "eu-west-1"
    assert events.sqs_client("http://127.0.0.1:9324/queue/q").meta.region_name == "us-east-1"


@pytest.fixture
def queue(s3, monkeypatch):
    """A bucket whose object-created notifications go to an SQS queue, and the queue's URL; its messages come back
    1 s after a receive that did not delete them."""
    import boto3

    monkeypatch.setattr(events, "WAIT_SECONDS", 1)
    s3.create_bucket(Bucket="data")
    url = notifying_queue("data", "data-events", visibility_seconds=1)
    yield url
    boto3.client("sqs").delete_queue(QueueUrl=url)


async def _watch(manager, triggers: dict, stored: bool, until, timeout: float = 30) -> dict[int, list[dict]]:
    """Each trigger's filter over its subscription, as the triggerer runs it: each event is bound to the raw
    event it came from and, when `stored`, confirmed persisted, as the triggerer does once Airflow's database
    holds it. Runs until `until(events)` holds."""
    got: dict[int, list[dict]] = {trigger_id: [] for trigger_id in triggers}

    async def one(trigger_id, trigger):
        key = trigger.shared_stream_key()
        try:
            async for event in trigger.filter_shared_stream(manager.subscribe(trigger_id=trigger_id, trigger=trigger,
                                                                              key=key)):
                seq = manager.bind_pending_event(trigger_id=trigger_id, key=key)
                got[trigger_id].append(event.payload)
                if stored and seq is not None:
                    manager.confirm_persisted([seq])
        finally:
            await manager.unsubscribe(trigger_id, key)

    tasks = [asyncio.create_task(one(i, t)) for i, t in triggers.items()]
    deadline = asyncio.get_running_loop().time() + timeout
    while not until(got) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await manager.stop_all()
    return got


def test_one_poll_announces_each_prefix_its_files_and_empties_the_queue(queue, s3, tmp_path):
    import boto3
    from airflow.triggers.shared_stream import SharedStreamManager

    for key in ("legal/en-de/w49/a.jsonl", "legal/en-de/w49/readme.txt", "support/en-de/w49/b.tsv",
                "marketing/en-fr/c.jsonl"):
        s3.put_object(Bucket="data", Key=key, Body=b"{}\n")
    boto3.client("sqs").send_message(QueueUrl=queue, MessageBody="a message someone sent by hand")
    triggers = {1: events.NewDataTrigger(queue, LEGAL), 2: events.NewDataTrigger(queue, SUPPORT)}

    def drained(got):
        return len(got[1]) == 1 and len(got[2]) == 1 and messages_in(queue) == 0

    got = asyncio.run(_watch(SharedStreamManager(ack_timeout=10), triggers, stored=True, until=drained))
    assert got == {1: [{"new_keys": ["s3://data/legal/en-de/w49/a.jsonl"], "data_uri": LEGAL}],
                   2: [{"new_keys": ["s3://data/support/en-de/w49/b.tsv"], "data_uri": SUPPORT}]}
    # Every message is gone: the two announced, the readme and the other prefix's file (nobody watches them,
    # both watchers moved past), S3's test event, and the hand-written one (refused, with a log line).
    assert messages_in(queue) == 0


def test_a_message_whose_event_was_not_stored_comes_back(queue, s3):
    from airflow.triggers.shared_stream import SharedStreamManager

    s3.put_object(Bucket="data", Key="legal/en-de/w49/a.jsonl", Body=b"{}\n")
    trigger = {1: events.NewDataTrigger(queue, LEGAL)}
    # The triggerer never confirms the event stored (it crashed, or the database refused it): the ack timeout
    # fails it, the message is not deleted and SQS delivers it again, so a later poll announces the file again.
    # (Waiting for the redelivery within this watch raced it against the ack timeout, which ends the subscriber:
    # about one run in ten missed it. The triggerer starts a failed watcher again; the second watch below is that.)
    first_seen: list[float] = []

    def past_the_ack_timeout(got) -> bool:
        if got[1] and not first_seen:
            first_seen.append(time.monotonic())
        return bool(first_seen) and time.monotonic() - first_seen[0] > 2  # 1 s, checked every 0.1 s

    lost = asyncio.run(_watch(SharedStreamManager(ack_timeout=1), trigger, stored=False,
                              until=past_the_ack_timeout, timeout=20))
    assert lost[1][0]["new_keys"] == ["s3://data/legal/en-de/w49/a.jsonl"]
    assert messages_in(queue) >= 1
    again = asyncio.run(_watch(SharedStreamManager(ack_timeout=10), trigger, stored=True,
                               until=lambda got: got[1] and messages_in(queue) == 0))
    assert again[1][0]["new_keys"] == ["s3://data/legal/en-de/w49/a.jsonl"] and messages_in(queue) == 0


def test_a_queue_that_cannot_be_read_yet_is_tried_again_not_given_up(s3, monkeypatch, caplog):
    import boto3

    monkeypatch.setattr(events, "WAIT_SECONDS", 1)
    monkeypatch.setattr(events, "RETRY_FIRST", 0.2)
    sqs = boto3.client("sqs")
    url = f"{sqs.meta.endpoint_url}/123456789012/late-queue"  # where moto will put it, once created

    async def first_message():
        stream = events.QueueProducer(url).open_stream()
        receiving = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(1)  # a few receives fail: there is no such queue
        assert not receiving.done()
        created = sqs.create_queue(QueueName="late-queue")["QueueUrl"]
        sqs.send_message(QueueUrl=created, MessageBody="hello")
        body, _ = await asyncio.wait_for(receiving, 10)
        await stream.aclose()
        return body

    assert asyncio.run(first_message()) == "hello"
    assert "cannot receive from" in caplog.text and "late-queue" in caplog.text


def test_events_make_the_polling_watcher_list_an_s3_prefix_once_a_day(monkeypatch):
    midnight = datetime(2026, 12, 7, 0, 0, tzinfo=timezone.utc)
    later = datetime(2026, 12, 7, 9, 30, tzinfo=timezone.utc)
    assert watch.listed_now(LEGAL, "scheduled", later)  # no queue: every tick lists
    monkeypatch.setenv("MT_DATA_EVENTS_QUEUE", "https://sqs.eu-west-1.amazonaws.com/123/data-events")
    assert watch.listed_now(LEGAL, "scheduled", midnight) and not watch.listed_now(LEGAL, "scheduled", later)
    assert watch.listed_now(LEGAL, "manual", later)  # someone pressed Trigger: they want a listing
    assert watch.listed_now("/data/legal/en-de/", "scheduled", later)  # a folder sends no S3 notifications


def test_an_event_from_the_triggerer_hands_its_keys_to_the_run(monkeypatch):
    from types import SimpleNamespace

    from_trigger = SimpleNamespace(extra={"from_trigger": True, "payload": {"new_keys": ["s3://data/legal/en-de/a"],
                                                                           "data_uri": LEGAL}})
    from_task = SimpleNamespace(extra={"new_keys": ["s3://data/legal/en-de/b"], "data_uri": LEGAL})
    assert watch.new_keys({"legal": [from_trigger, from_task]}) == ["s3://data/legal/en-de/a",
                                                                    "s3://data/legal/en-de/b"]
