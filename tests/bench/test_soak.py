"""The soak benchmark still runs (its --tiny mode: three weeks of the real DAG on moto's S3, with their faults)
and finds its invariants hold; and its checks do fail on a history that breaks them, so a zero means something."""

import json
import sys

from support.corpora import write_jsonl
from support.runs import REPO_ROOT, tiny_bench
from tasks.io import storage


def test_three_weeks_of_runs_keep_every_invariant():
    result = tiny_bench("soak.py", timeout=1500)
    assert result["weeks"] == 3 and result["runs"] == 3
    assert [week["fault"] for week in result["log"]] == ["first week", "one language refused", "broken file"]
    assert result["log"][2]["state"] == "failed"  # the broken file fails de's batch: nothing of it is consumed
    assert result["invariant_failures"] == 0, result["failures"]


def test_the_checks_catch_a_history_that_breaks_them(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from soak import Checks, Source

    source = Source(tmp_path / "landed", root=str(tmp_path / "data"))
    kept = source.land("de", "w01/part.jsonl", [("one", "eins")])
    source.land("de", "w02/part.jsonl", [("two", "zwei")])  # at the source, never consumed
    state_dir = tmp_path / "state"
    run_dir = tmp_path / "run"
    storage.write_json(str(run_dir / "validation_report.json"), {"rules": {"fingerprint": "now"}})
    entry = {"etag": storage.stat(kept).etag, "consumed_by": "week-1", "rules": "before", "cache": "shards/a.jsonl"}
    storage.write_json(str(state_dir / "consumed.json"), {"objects": {kept: entry}})
    checks = Checks(source)
    # After a refused commit the copies are the pipeline's, not the refused run's rules: no stale copies to find.
    checks.consumption(1, "de", str(state_dir), [{"dir": str(run_dir), "gate": "refuse"}])
    checks.consumption(2, "de", str(state_dir), [{"dir": str(run_dir), "gate": "promote"}])
    storage.write_json(str(state_dir / "consumed.json"), {"objects": {kept: {**entry, "consumed_by": "week-2"}}})
    checks.consumption(3, "de", str(state_dir), [])
    write_jsonl(state_dir / "test_set.jsonl", [("one", "eins")])
    checks.test_set(3, "de", str(state_dir))
    write_jsonl(state_dir / "test_set.jsonl", [("two", "zwei")])
    checks.test_set(4, "de", str(state_dir))
    found = json.dumps(checks.failures)
    assert "w02/part.jsonl is at the source but not consumed after a commit" in found
    assert "1 carried copies cleaned by older rules" in found
    assert "consumed twice (week-1, then week-2)" in found
    assert "week 4: en-de: the frozen test set changed" in found and "week 1: en-de: 1 carried" not in found
    assert len(checks.failures) == 5  # week 1 too: w02/part.jsonl at the source, not consumed after a commit
