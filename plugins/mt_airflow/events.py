"""New data announced by S3 itself: event notifications on an SQS queue, read by Airflow's triggerer.

Listing a prefix costs more as its history grows (one LIST request per 1,000 keys, every tick). With
`MT_DATA_EVENTS_QUEUE` set to an SQS queue URL that receives the data bucket's `s3:ObjectCreated:*`
notifications (directly, or through an SNS topic), each watched S3 prefix's Asset gets an `AssetWatcher`: the
triggerer long-polls the queue (one request per 20 s, whatever the history) and a data file landing under a
watched prefix becomes an Asset event at once, with `{"new_keys": [...], "data_uri": ...}` as its payload, as the
polling watcher's events carry. The polling watcher then lists such a prefix once a day only, as a safety net
(and to announce again what a failed run left unconsumed).

One queue serves every watched prefix: the watchers share one poll of it (Airflow's shared trigger streams), each
keeps the records under its own prefix, and a message is deleted only once every watcher has moved past it and
the events it gave were stored in Airflow's database ("ack mode"); a message whose event was not stored comes back
when its visibility timeout ends. A message that is not an S3 notification is refused and deleted, with a log
line. Messages for prefixes nobody watches are deleted too: that is what the queue is for.

The shared poll is per triggerer process: with several triggerer replicas, a replica can receive (and delete) a
notification for a prefix whose watcher runs on another. The polling watcher's daily listing announces such a file
within a day, and the pipeline's schedule remains; run one triggerer where announcements must be prompt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import unquote_plus

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer, reject_shared_stream_event

from tasks.data import pull

log = logging.getLogger(__name__)

WAIT_SECONDS = 20  # SQS's longest long poll: an idle queue costs three requests a minute
RETRY_FIRST, RETRY_AT_MOST = 5.0, 300.0  # seconds between failed receives
_REGION = re.compile(r"^https://sqs[.-]([a-z0-9-]+)\.amazonaws\.com(\.cn)?/")


def created_objects(body: str) -> list[str]:
    """The s3:// URI of each object an S3 event notification says was created. The notification may come
    straight from S3 or wrapped by SNS; S3's test event (sent when notifications are configured) holds none.
    Anything else raises ValueError."""
    try:
        message = json.loads(body)
        if isinstance(message, dict) and message.get("Type") == "Notification" and "Message" in message:
            message = json.loads(message["Message"])  # S3 → SNS topic → this queue
    except (TypeError, ValueError) as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise ValueError("not an S3 event notification (not a JSON object)")
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise ValueError("not an S3 event notification (no 'Records' list)")
    created = []
    for record in records:
        try:
            if not record["eventName"].startswith("ObjectCreated:"):
                continue  # a removal: nothing to train on
            bucket, obj = record["s3"]["bucket"]["name"], record["s3"]["object"]
            created.append(f"s3://{bucket}/{unquote_plus(obj['key'])}")
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"an S3 event record without {error}") from None
    return created


def keys_under(data_uri: str, created: list[str]) -> list[str]:
    """The created objects that the pull step would take from `data_uri`: under the prefix, and data files."""
    prefix = data_uri.rstrip("/") + "/"
    return sorted({uri for uri in created if uri.startswith(prefix) and not pull.key_problem(uri[len(prefix):])})


def sqs_client(queue_url: str):
    """boto3's SQS client in the queue's own region (taken from an AWS queue URL); `AWS_ENDPOINT_URL` or
    `AWS_ENDPOINT_URL_SQS` point it elsewhere (ElasticMQ, LocalStack, moto), as for S3."""
    import boto3

    found = _REGION.match(queue_url)
    return boto3.client("sqs", region_name=found.group(1) if found else None)


class QueueProducer(SharedStreamProducer):
    """One poll of the queue for every watcher sharing it; deletes a message once it is fully resolved."""

    def __init__(self, queue_url: str, client=None):
        self.queue_url = queue_url
        self.client = client  # made when the stream opens, unless given (bench/history_scale.py counts requests)

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        """Receive forever. A failed receive (the network, throttling, a permission or a queue not there yet) is
        logged and tried again after a pause that doubles up to RETRY_AT_MOST seconds: the watchers keep
        running, and the daily listing covers the gap."""
        from botocore.exceptions import BotoCoreError, ClientError

        self.client = self.client or await asyncio.to_thread(sqs_client, self.queue_url)
        pause = RETRY_FIRST
        while True:
            try:
                reply = await asyncio.to_thread(self.client.receive_message, QueueUrl=self.queue_url,
                                                MaxNumberOfMessages=10, WaitTimeSeconds=WAIT_SECONDS)
            except (BotoCoreError, ClientError) as error:
                log.error("cannot receive from %s (again in %.0f s): %s", self.queue_url, pause, error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RETRY_AT_MOST)
                continue
            pause = RETRY_FIRST
            for message in reply.get("Messages", []):
                yield message["Body"], message["ReceiptHandle"]

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """Delete what every watcher took (their events stored) or refused; leave what failed, for SQS to deliver
        again when its visibility timeout ends. A message broadcast while no watcher listened is left too."""
        done = [item.broker_payload for item in batch if item.outcome.is_clean or item.outcome.rejected]
        for start in range(0, len(done), 10):  # SQS deletes at most ten per request
            entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(done[start:start + 10])]
            reply = await asyncio.to_thread(self.client.delete_message_batch, QueueUrl=self.queue_url,
                                            Entries=entries)
            for failed in reply.get("Failed", []):
                log.warning("could not delete message %s from %s: %s", failed.get("Id"), self.queue_url,
                            failed.get("Message"))


class NewDataTrigger(BaseEventTrigger):
    """Fires when an S3 notification on `queue_url` names a data file under `data_uri` (an `s3://` prefix)."""

    def __init__(self, queue_url: str, data_uri: str):
        super().__init__()
        self.queue_url = queue_url
        self.data_uri = data_uri.rstrip("/") + "/"

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{__name__}.{type(self).__name__}", {"queue_url": self.queue_url, "data_uri": self.data_uri}

    def shared_stream_key(self):
        return ("mt-data-events", self.queue_url)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> SharedStreamProducer:
        return QueueProducer(kwargs["queue_url"])

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for body in shared_stream:
            try:
                keys = keys_under(self.data_uri, created_objects(body))
            except ValueError as error:
                log.warning("refused a message on %s: %s: %.200s", self.queue_url, error, body)
                reject_shared_stream_event()
                continue
            if keys:
                yield TriggerEvent({"new_keys": keys, "data_uri": self.data_uri})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Never called by the triggerer of Airflow 3.3 and later, which runs `filter_shared_stream` for a trigger
        with a shared stream key. Polling alone, watchers of one queue would delete each other's messages."""
        raise RuntimeError(f"{type(self).__name__} needs a triggerer with shared trigger streams (Airflow 3.3 or "
                           f"later); unset MT_DATA_EVENTS_QUEUE to watch {self.data_uri} by listing it")
        yield  # an async generator, as the triggerer expects
