"""The history-scale benchmark still runs (its --tiny mode): 200 consumed objects laid down as 52 weekly commits
would leave them, on moto's S3 in a process of its own, then one measured run. What it may cost is the benchmark's
business; that the history is read as shards, not object by object, is checked here."""

from support.runs import tiny_bench
from tasks.data import shards


def test_the_benchmark_reads_the_history_as_shards_and_reports_one_json_line():
    result = tiny_bench("history_scale.py")
    assert (result["history_objects"], result["new_objects"], result["history_pairs"]) == (200, 10, 200 * 50)
    assert result["consumed_total"] == 210 and result["history_merges"] >= 1
    assert 1 <= result["shards_read"] <= shards.MAX_SHARDS
    # consumed.json read once, the shards listed once, each shard fetched (a HEAD and a GET): never per object.
    assert result["storage_requests"] <= 2 * result["shards_read"] + 10 < result["history_objects"]
    assert result["pull_validate_seconds"] > 0
    # The watcher: a quiet listing tick reads one listing page and its state; S3's notifications announce the
    # ten new objects with a few SQS requests and none to S3.
    assert result["watcher_tick_listing"]["s3_requests"] == 2
    assert result["watcher_events"]["announced"] == 10 and result["watcher_events"]["s3_requests"] == 0
    assert 1 <= result["watcher_events"]["sqs_requests"] <= 3
