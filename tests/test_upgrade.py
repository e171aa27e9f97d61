"""What a run's summary and the promotion history say about runs that meet state from earlier versions, and about
releases in a local registry."""

from mt_airflow import history
from support.runs import make_run
from tasks import layout, summary
from tasks.io import storage

LOCAL_TAG = "run-20261207-3e5bc010"
HUB_COMMIT = "4f1a8a85321b2b67c0ffee0123456789abcdef01"


def _ran(root, run_id: str, publish: dict | None = None, **validation):
    cfg = make_run(root, run_id=run_id)
    storage.write_json(cfg.uri(layout.PULL_MANIFEST), {"objects": [{"key": "week2.jsonl"}], "message": "1 new object",
                                                       "carried": [{"key": "week1.jsonl"}]})
    storage.write_json(cfg.uri(layout.VALIDATION_REPORT), {"rows_in": 200, "kept": 200, "rejected": 0,
                                                           "deduplicated": 0, **validation})
    if publish:
        storage.write_json(cfg.uri(layout.PUBLISH), {"published": True, "repo_id": "org/digits", "endpoint": "x",
                                                     "pr_url": None, **publish})
    return cfg


def test_carried_copies_screened_again_are_counted_as_carried(tmp_path):
    """The first run after an upgrade screens every carried copy again (they bear no rules stamp): its 535 carried
    pairs are in training, and the summary says so, not '0 pairs carried'."""
    cfg = _ran(tmp_path, "run-2", carried_kept=0, rescreened_rows=600, rescreened_kept=535, clean_pairs=735)
    said = summary.summarize_run(cfg)
    assert said["carried_kept"] + said["rows_kept"] == said["training_pairs"] == 735
    (rows,) = [line for line in summary.format_summary(said) if line.startswith("rows:")]
    assert "with 535 pairs carried from 1 earlier object(s) (535 of them screened again" in rows


def test_carried_copies_kept_as_they_were_are_counted_once(tmp_path):
    cfg = _ran(tmp_path, "run-2", carried_kept=535, rescreened_rows=0, rescreened_kept=0, clean_pairs=735)
    (rows,) = [line for line in summary.format_summary(summary.summarize_run(cfg)) if line.startswith("rows:")]
    assert "with 535 pairs carried from 1 earlier object(s): 735 to split and train on" in rows


def test_a_local_release_is_named_by_its_whole_run_tag(tmp_path):
    """Two local releases of one day differ only after the date: the summary and the history name each whole, as
    the registry's versions/ folder and a pinned `revision=` need it."""
    _ran(tmp_path, "run-a", publish={"target": "local", "revision": LOCAL_TAG, "tag": LOCAL_TAG})
    cfg = _ran(tmp_path, "run-b", publish={"target": "local", "revision": "run-20261207-0a1b2c3d",
                                           "tag": "run-20261207-0a1b2c3d"})
    assert summary.summarize_run(cfg)["published"].startswith("org/digits@run-20261207-0a1b2c3d ")
    rows = history.collect(str(tmp_path))["test_dag"]
    assert sorted(row.revision for row in rows) == sorted(["run-20261207-0a1b2c3d", LOCAL_TAG])


def test_a_hub_release_is_named_by_its_short_commit_and_tag(tmp_path):
    cfg = _ran(tmp_path, "run-a", publish={"target": "hub", "revision": HUB_COMMIT, "tag": LOCAL_TAG})
    assert summary.summarize_run(cfg)["published"] == f"org/digits@{HUB_COMMIT[:12]} tag {LOCAL_TAG} (x)"
    (row,) = history.collect(str(tmp_path))["test_dag"]
    assert row.revision == HUB_COMMIT[:12]
