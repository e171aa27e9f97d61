"""A year of history on S3: what pull + validate cost a run whose pipeline has consumed 20,000 objects before.

    python bench/history_scale.py          # 20,000 consumed objects (1,000,000 pairs of history) + 10 new ones
    python bench/history_scale.py --tiny   # 200 consumed objects: a seconds-long smoke test (CI)

The goal (issue 21): pull + validate ≤ 2 minutes on 2 cores and ≤ 200 storage requests for the carried history,
where keeping one cleaned copy per object cost three requests per object and run (60,000 here).

S3 is moto's server in a process of its own on 127.0.0.1, reached through `AWS_ENDPOINT_URL` as MinIO or real S3
would be. The history is laid down as 52 weekly commits would have left it, not by running 52 weeks (that would
validate the history 52 times): each week's objects at the source, its cleaned copies as one shard, its entries
in consumed.json, then the pipeline's own merge (tasks/data/shards.compact) as the week's commit runs it. The
consumed objects are really at the source, so pull lists the whole prefix as it would. Then one run is measured:
pull and validate of 10 new objects, every carried row read and accounted for, and its commit.

Storage requests are counted as boto3 sends them, by where they go: the state area (the carried history:
consumed.json and the shards), the data prefix (the listing and the new objects), the run directory.

The watcher is measured on the same history: a quiet tick of the listing watcher in its steady state (every
history object announced and settled), whose listing grows with the history, and the triggerer's poll of an SQS
queue receiving the bucket's notifications (mt_airflow.events, MT_DATA_EVENTS_QUEUE) until the new objects are
announced, which sends nothing to S3.

The last line of stdout is one JSON object: history_objects, history_pairs, new_objects, pull_validate_seconds,
storage_requests (to the state area during pull + validate), requests by place, shards read, carried rows, the
commit's seconds and requests (it may merge shards), watcher_tick_listing (S3 requests, the watcher state's
bytes, seconds) and watcher_events (SQS requests, S3 requests, keys announced, seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]

WEEKS = 52
PAIRS_PER_OBJECT = 50
NEW_OBJECTS = 10
DATA, ARTIFACTS = "s3://incoming/en-de", "s3://artifacts/runs"


@contextmanager
def moto_server():
    """moto's S3 in its own process (the bench's work and the server's do not share one interpreter)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.2)
        os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
                          AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        yield
    finally:
        server.terminate()
        server.wait()


def pair(n: int) -> tuple[str, str]:
    """A distinct, plausible pair for each n."""
    return (f"Order {n} ships from warehouse {n % 97} within {n % 13 + 1} days.",
            f"Bestellung {n} wird innerhalb von {n % 13 + 1} Tagen aus Lager {n % 97} versandt.")


def source_object(first: int) -> bytes:
    return "".join(json.dumps({"translation": dict(zip(("en", "de"), pair(n)))}) + "\n"
                   for n in range(first, first + PAIRS_PER_OBJECT)).encode()


def cleaned_copy(key: str, first: int) -> str:
    """The rows validate keeps of that object: its clean.jsonl records (screening's format)."""
    return "".join(json.dumps({"translation": dict(zip(("en", "de"), pair(n))), "file": key, "line": line})
                   + "\n" for line, n in enumerate(range(first, first + PAIRS_PER_OBJECT), start=1))


def run_config(run_id: str):
    from tasks import config

    return config.build({"data_uri": DATA + "/", "min_clean_pairs": 1, "alignment_screen": False},
                        dag_id="history_scale", run_id=run_id, artifact_root=ARTIFACTS)


def lay_history(objects: int) -> dict:
    """`objects` consumed objects over 52 weekly commits; returns how long it took and what it left."""
    from tasks import layout
    from tasks.data import screening, shards
    from tasks.io import storage

    client = storage.s3_client()
    for bucket in ("incoming", "artifacts"):
        client.create_bucket(Bucket=bucket)
    started, merges = time.perf_counter(), 0
    per_week = -(-objects // WEEKS)
    with ThreadPoolExecutor(8) as pool:  # boto3 keeps 10 connections
        for week in range(1, WEEKS + 1):
            cfg = run_config(f"week-{week}")
            numbers = range((week - 1) * per_week, min(week * per_week, objects))
            if not numbers:
                break
            keys = {n: f"week{week:02d}/part-{n:05d}.jsonl" for n in numbers}
            bodies = {n: source_object(n * PAIRS_PER_OBJECT) for n in numbers}
            list(pool.map(lambda n: client.put_object(Bucket="incoming", Key=f"en-de/{keys[n]}", Body=bodies[n]),
                          numbers))
            shard, entries, line = [], {}, 0
            for n in numbers:
                shard.append(cleaned_copy(keys[n], n * PAIRS_PER_OBJECT))
                entries[f"{DATA}/{keys[n]}"] = {
                    "etag": hashlib.md5(bodies[n]).hexdigest(), "size": len(bodies[n]),
                    "pulled_at": f"2026-{week:03d}", "consumed_by": cfg.run_id, "consumed_at": f"2026-{week:03d}",
                    "cache": shards.run_shard(cfg), "lines": [line, PAIRS_PER_OBJECT], "rows": PAIRS_PER_OBJECT,
                    "kept": PAIRS_PER_OBJECT, "rules": screening.rules_fingerprint(cfg)}
                line += PAIRS_PER_OBJECT
            storage.write_text(cfg.state_uri(shards.run_shard(cfg)), "".join(shard))
            storage.update_json(cfg.state_uri(layout.CONSUMED),
                                lambda state: {**(state or {}), "objects": {**(state or {}).get("objects", {}),
                                                                            **entries}})
            merges += "merged" in shards.compact(cfg)
    return {"seconds": round(time.perf_counter() - started, 1), "merges": merges}


def count_requests(client) -> Counter:
    """A counter of every request the client sends from now on, by place: state, data, run."""
    counts: Counter = Counter()

    def sent(request, **_):
        path = request.url.split("://", 1)[-1].split("/", 1)[-1]
        counts["state" if "/state/" in path else "data" if path.startswith("incoming") else "run"] += 1

    client.meta.events.register("before-send.s3", sent)
    return counts


def events_queue() -> str:
    """An SQS queue (on the same moto server) receiving the data bucket's object-created notifications."""
    import boto3

    from tasks.io import storage

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="incoming-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    storage.s3_client().put_bucket_notification_configuration(Bucket="incoming", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    return url


def watcher_tick_by_listing(cfg, client) -> dict:
    """A quiet tick of the listing watcher in its steady state: every history object announced and settled (as
    52 weeks of ticks leave the state), nothing new. Its requests grow with the history: the listing pages."""
    from mt_airflow import watch
    from tasks import layout
    from tasks.io import storage

    state = watch.state_uri(ARTIFACTS, DATA)
    listed = storage.list_objects(DATA, hidden=True)
    storage.write_json(state, {"announced": {o.uri: {"etag": o.etag, "at": "2026-12-01T00:00:00+00:00",
                                                     "times": 1, "settled": True} for o in listed}})
    requests = count_requests(client)
    started = time.perf_counter()
    found = watch.find(DATA, state, [cfg.state_uri(layout.CONSUMED)])
    watch.remember(state, found)
    seconds = time.perf_counter() - started
    assert not found.due, "a settled key was announced again"
    return {"s3_requests": sum(requests.values()), "state_bytes": len(storage.read_text(state).encode()),
            "seconds": round(seconds, 2)}


def watcher_by_events(queue: str, new: int, s3) -> dict:
    """What the triggerer's poll of the events queue costs to announce the new objects: SQS requests only, none
    to S3, however long the history. The notifications were sent as the objects landed."""
    import asyncio

    from mt_airflow import events

    client = events.sqs_client(queue)
    counts, to_s3 = Counter(), count_requests(s3)
    client.meta.events.register("before-send.sqs", lambda **_: counts.update(["sqs"]))
    announced: set[str] = set()

    async def poll():
        stream = events.QueueProducer(queue, client).open_stream()
        while len(announced) < new:
            body, _ = await anext(stream)
            announced.update(events.keys_under(DATA, events.created_objects(body)))
        await stream.aclose()

    events.WAIT_SECONDS = 1
    started = time.perf_counter()
    asyncio.run(poll())
    return {"sqs_requests": counts["sqs"], "s3_requests": sum(to_s3.values()), "announced": len(announced),
            "seconds": round(time.perf_counter() - started, 2)}


def measure(history: int) -> dict:
    from tasks import config, layout
    from tasks.data import consumed, pull, validate
    from tasks.io import storage

    laid = lay_history(history)
    cfg = run_config("week-53")
    config.save(cfg)
    queue = events_queue()
    client = storage.s3_client()
    for n in range(NEW_OBJECTS):
        client.put_object(Bucket="incoming", Key=f"en-de/week53/new-{n:02d}.jsonl",
                          Body=source_object(10_000_000 + n * PAIRS_PER_OBJECT))
    requests = count_requests(client)
    started = time.perf_counter()
    pulled = pull.run(cfg)
    validated = validate.run(cfg)
    seconds = time.perf_counter() - started
    read = dict(requests)
    requests.clear()
    started = time.perf_counter()
    committed = consumed.commit(cfg)
    commit_seconds = time.perf_counter() - started
    manifest = storage.read_json(cfg.uri(layout.PULL_MANIFEST))
    report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    assert report["carried_rows"] == history * PAIRS_PER_OBJECT, "a carried row went missing"
    by_events = watcher_by_events(queue, NEW_OBJECTS, client)
    by_listing = watcher_tick_by_listing(cfg, client)
    return {
        "history_objects": len(manifest["carried"]), "history_pairs": report["carried_rows"],
        "new_objects": pulled["files"], "pull_validate_seconds": round(seconds, 2),
        "storage_requests": read.get("state", 0), "requests_by_place": read,
        "shards_read": len({c["cache"] for c in manifest["carried"]}), "clean_pairs": validated["clean_pairs"],
        "commit_seconds": round(commit_seconds, 2), "commit_requests": dict(requests),
        "consumed_total": committed["consumed_total"], "history_laid_seconds": laid["seconds"],
        "history_merges": laid["merges"], "watcher_tick_listing": by_listing, "watcher_events": by_events,
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000, help="consumed objects in the history")
    parser.add_argument("--tiny", action="store_true", help="200 consumed objects: a smoke test")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp, moto_server():
        os.environ.setdefault("MT_LOCAL_DATA_ROOTS", tmp)
        result = measure(200 if args.tiny else args.objects)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
