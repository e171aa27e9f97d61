"""The promotion history is read from run directories as the steps leave them, whatever is present."""

import pytest

from mt_airflow import history, history_app
from tasks.io import storage

DAG = "translation_finetune__legal_en_de"


def _run(root, run_id, *, gain=None, decision=None, published=None, pair=None, config=None, **extra):
    run_dir = storage.join(str(root), DAG, storage.safe_name(run_id), *(["pairs", pair] if pair else []))
    src, tgt = (pair or "en-de").split("-")
    storage.write_json(storage.join(run_dir, "config.json"), config or {
        "dag_id": DAG, "run_id": run_id, "source_lang": src, "target_lang": tgt, "target_langs": []})
    if decision:
        storage.write_json(storage.join(run_dir, "gate.json"), {
            "decision": decision, "reasons": [f"BLEU gain {gain:+.2f}"], "bleu": {"gain": gain}, **extra})
        storage.write_json(storage.join(run_dir, "eval", "scores.json"),
                           {"base": {"bleu": 10.0}, "candidate": {"bleu": 10.0 + gain}})
        storage.write_json(storage.join(run_dir, "validation_report.json"), {"rows_in": 120, "kept": 100})
    if published:
        storage.write_json(storage.join(run_dir, "publish.json"), published)
    return run_dir


TRAINED = {"steps": 450, "epochs_completed": 10, "tokens_seen": 4_000_000, "seconds_total": 725.0, "precision": "bf16",
           "device": "cuda:0", "world_size": 2, "resumed_from_step": None,
           "cuda_graphs": {"captured": 3, "replayed": 446, "eager": 1, "shapes": 3, "off": 'a "quoted" <reason>'}}


@pytest.fixture
def store(tmp_path):
    _run(tmp_path, "scheduled__2026-11-20T00:00:00+00:00", gain=0.4, decision="refuse")
    _run(tmp_path, "scheduled__2026-11-27T00:00:00+00:00", gain=2.5, decision="promote", p_value=0.01,
         published={"published": True, "revision": "0123456789abcdef", "url": "http://hub/org/m/commit/0123"})
    _run(tmp_path, "manual__2026-11-28T08:00:00+00:00")  # failed before the gate: config only
    storage.write_json(storage.join(str(tmp_path), DAG, "scheduled__2026-11-27T00_00_00_00_00", "model",
                                    "config.json"), {"model_type": "marian"})  # a model's config is no run
    storage.write_json(storage.join(str(tmp_path), DAG, "scheduled__2026-11-27T00_00_00_00_00", "model",
                                    "train_report.json"), TRAINED)
    storage.write_json(storage.join(str(tmp_path), "_watcher", "state.json"), {"announced": {}})
    return tmp_path


def test_rows_come_from_whatever_each_run_left(store):
    (rows,) = history.collect(str(store)).values()
    assert [r.decision for r in rows] == ["refuse", "promote", None]  # oldest first
    refused, promoted, failed = rows
    assert (refused.bleu_base, refused.bleu_candidate, refused.gain) == (10.0, 10.4, 0.4)
    assert (promoted.p_value, promoted.revision, promoted.rows_kept) == (0.01, "0123456789ab", 100)
    assert promoted.training == "12m05s on 2 × cuda" and "24m10s of GPU time" in promoted.training_cost
    assert refused.training is None and refused.training_cost is None  # no train report: a blank, not an error
    assert promoted.release_url == "http://hub/org/m/commit/0123"
    assert failed.date == "2026-11-28T08:00:00" and failed.bleu_candidate is None


def test_a_multi_language_run_is_one_pipeline_per_pair(tmp_path):
    run = "manual__2026-11-27T09:00:00+00:00"
    _run(tmp_path, run, config={"dag_id": DAG, "run_id": run, "source_lang": "en", "target_lang": "de",
                                "target_langs": ["de", "nl"]})
    for pair, gain in (("en-de", 3.0), ("en-nl", 0.2)):
        _run(tmp_path, run, gain=gain, decision="promote" if gain > 1 else "refuse", pair=pair)
    pipelines = history.collect(str(tmp_path))
    assert list(pipelines) == [f"{DAG} (en-de)", f"{DAG} (en-nl)"]
    assert pipelines[f"{DAG} (en-nl)"][0].run_path == f"{DAG}/{storage.safe_name(run)}/pairs/en-nl"


def test_page_and_report_render_every_row_and_the_chart(store):
    rows = history.collect(str(store))[DAG]
    svg = history_app.chart(rows)
    assert svg.count("<circle") == 2 and "refuse" in svg and "promote" in svg  # runs with a candidate score
    html = history_app.table(rows)
    assert html.count('class="report"') == 3 and "+2.50" in html and "0.01" in html and "0123456789ab" in html
    assert html.index("manual__") < html.index("scheduled__2026-11-27") < html.index("scheduled__2026-11-20")
    # The training column: wall time and where, the whole cost line (escaped) as its tooltip.
    assert "<th>training</th>" in html and '>12m05s on 2 × cuda</td>' in html
    assert 'then off: a &#34;quoted&#34; &lt;reason&gt;"' in html and "<reason>" not in html
    found = history.report(str(store), f"{DAG}/scheduled__2026-11-27T00_00_00_00_00")
    assert found["records"]["gate.json"]["decision"] == "promote" and found["report_md"] is None


def test_records_the_page_cannot_read_leave_a_blank_not_a_broken_page(tmp_path):
    """Anyone who can write a run directory can write its train report: the page still serves every run."""
    for day, trained in (("20", ["not", "a", "report"]), ("21", {**TRAINED, "cuda_graphs": {"replayed": 1}}),
                         ("22", {**TRAINED, "seconds_total": float("nan")})):
        run_dir = _run(tmp_path, f"scheduled__2026-11-{day}T00:00:00+00:00", gain=1.5, decision="promote")
        storage.write_json(storage.join(run_dir, "model", "train_report.json"), trained)
        if day == "20":  # records that are JSON but no records at all
            storage.write_json(storage.join(run_dir, "launches.json"), ["not", "a", "record"])
            storage.write_json(storage.join(run_dir, "pull_manifest.json"), 42)
    rows = history.collect(str(tmp_path))[DAG]
    assert [(r.training, r.training_cost) for r in rows] == [(None, None), ("12m05s on 2 × cuda", None), (None, None)]
    assert history_app.table(rows).count('class="report"') == 3


@pytest.mark.parametrize("name, record", [
    ("gate.json", {"decision": "promote", "bleu": {"gain": "n/a", "champion": "n/a"}}),
    ("gate.json", {"decision": "promote", "bleu": ["x"]}),
    ("gate.json", {"decision": "promote", "bleu": 2.5, "reasons": 5}),
    ("gate.json", {"decision": ["promote"], "p_values": ["x"]}),
    ("gate.json", {"decision": "promote", "checks": [1]}),
    ("gate.json", {"decision": "promote", "bleu": {"gain": True}, "reasons": [{"not": "text"}]}),
    ("eval/scores.json", {"base": ["x"], "candidate": {"bleu": float("nan")}}),
    ("pull_manifest.json", {"pulled_at": 5}),
    ("config.json", {"dag_id": DAG, "run_id": 5, "target_langs": []}),
    ("config.json", {"dag_id": ["x"], "run_id": "bad", "source_lang": 1, "target_langs": []}),
    ("publish.json", {"published": True, "revision": None, "url": 5}),
    ("validation_report.json", {"rows_in": "x", "kept": {"a": 1}}),
])
def test_one_runs_garbled_field_leaves_blanks_not_a_broken_page_for_every_pipeline(tmp_path, name, record):
    _run(tmp_path, "scheduled__2026-11-20T00:00:00+00:00", gain=1.5, decision="promote")
    bad = _run(tmp_path, "scheduled__2026-11-27T00:00:00+00:00", gain=2.5, decision="promote")
    storage.write_json(storage.join(bad, name), record)
    (rows,) = history.collect(str(tmp_path)).values()
    html = history_app.table(rows)
    assert html.count('class="report"') == 2 and "+1.50" in html
    history_app.chart(rows)


def test_a_row_reads_the_pull_manifest_only_for_a_run_id_without_a_date(tmp_path, monkeypatch):
    """The manifest holds the pipeline's whole carried history: a year of weekly runs made the page read hundreds
    of MB for one date each."""
    for run_id in ("scheduled__2026-11-27T00:00:00+00:00", "nightly-retrain"):
        run_dir = _run(tmp_path, run_id, gain=2.5, decision="promote")
        storage.write_json(storage.join(run_dir, "pull_manifest.json"), {"pulled_at": "2026-11-29T10:00:00",
                                                                         "carried": [{"uri": "s3://d/x"}] * 1000})
    read, real = [], storage.read_record
    monkeypatch.setattr(storage, "read_record", lambda uri: read.append(uri) or real(uri))
    (rows,) = history.collect(str(tmp_path)).values()
    assert [(r.run_id, r.date) for r in rows] == [("scheduled__2026-11-27T00:00:00+00:00", "2026-11-27T00:00:00"),
                                                  ("nightly-retrain", "2026-11-29T10:00:00")]
    assert [uri for uri in read if uri.endswith("pull_manifest.json")] == [
        storage.join(str(tmp_path), DAG, "nightly-retrain", "pull_manifest.json")]


@pytest.mark.parametrize("url, linked", [
    ("https://hub.example/org/m/commit/0123", True),
    ("/srv/registry/org/m/versions/run-20261207-3e5bc010", False),  # a local registry's version folder
    ("s3://registry/org/m/versions/run-20261207-3e5bc010", False),
    ("javascript:alert(document.cookie)", False),
])
def test_only_a_release_address_a_browser_can_open_is_a_link(tmp_path, url, linked):
    tag = "run-20261207-3e5bc010"
    _run(tmp_path, "scheduled__2026-11-27T00:00:00+00:00", gain=2.5, decision="promote",
         published={"published": True, "revision": tag, "tag": tag, "url": url})
    (rows,) = history.collect(str(tmp_path)).values()
    html = history_app.table(rows)
    assert (f'href="{url}"' in html) is linked and tag in html  # the revision is shown either way


def test_the_column_bills_every_try_of_the_train_step_once_the_launcher_recorded_them(tmp_path):
    run = "scheduled__2026-12-04T00:00:00+00:00"
    run_dir = _run(tmp_path, run, gain=1.5, decision="promote")
    storage.write_json(storage.join(run_dir, "model", "train_report.json"), TRAINED)
    launch = {"try": 1, "launcher": "kubernetes", "gpus": 2, "started": "2026-12-04T00:10:00+00:00"}
    storage.write_json(storage.join(run_dir, "launches.json"), {
        "train": [{**launch, "outcome": "killed", "seconds": 300.0}, {**launch, "try": 2, "outcome": "succeeded",
                                                                      "seconds": 542.0}]})
    (row,) = history.collect(str(tmp_path))[DAG]
    assert row.training == "14m02s on 2 × cuda, 2 tries"  # the killed try's 5 minutes were billed too
    assert row.training_cost.endswith("; the steps, from launch to end: train 14m02s over 2 tries (1 killed): "
                                      "14m02s from launch to end, 28m04s of GPU time requested")
    assert history.report(str(tmp_path), f"{DAG}/{storage.safe_name(run)}")["records"]["launches.json"]["train"]


def test_the_report_page_shows_the_hub_commits_the_run_loaded(tmp_path):
    run = "scheduled__2026-12-06T00:00:00+00:00"
    run_dir = _run(tmp_path, run, gain=1.5, decision="promote")
    pinned = {"Helsinki-NLP/opus-mt-en-de": {"revision": "0123456789abcdef" * 2 + "01234567",
                                             "files": ["config.json", "pytorch_model.bin"]}}
    storage.write_json(storage.join(run_dir, "hub_revisions.json"), pinned)
    assert history.report(str(tmp_path), f"{DAG}/{storage.safe_name(run)}")["records"]["hub_revisions.json"] == pinned


@pytest.mark.parametrize("run_path", ["../etc", f"{DAG}/../../etc", f"{DAG}/nope", "_watcher/state.json"])
def test_the_report_reads_only_known_run_directories(store, run_path):
    with pytest.raises(FileNotFoundError):
        history.report(str(store), run_path)


def test_a_page_view_on_s3_reads_only_the_runs_that_changed_since_the_last(s3):
    """A year of weekly runs of several pipelines is thousands of run directories: a page view must not read every
    record of every run again (it took 8 GETs a run, 4,000 for ten pipelines' year, one after the other)."""
    import collections

    s3.create_bucket(Bucket="artifacts")
    root = "s3://artifacts/mt"
    runs = [_run(root, f"scheduled__2026-{week:02d}-01T00:00:00+00:00", gain=1.0 + week, decision="promote")
            for week in range(1, 13)]
    calls = collections.Counter()
    s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
    assert len(history.collect(root)[DAG]) == 12
    assert calls["GetObject"] == 12 * 4  # config, validation, scores, gate: the records the listing shows
    calls.clear()
    storage.write_json(storage.join(runs[3], "gate.json"), {"decision": "refuse", "reasons": ["rewritten"]})
    storage.write_bytes(storage.join(runs[5], "config.json"), b"")  # half-written: no row, not a broken page
    calls.clear()
    rows = history.collect(root)[DAG]
    assert set(calls) == {"ListObjectsV2", "GetObject"} and calls["GetObject"] == 4 + 1  # the two changed runs
    assert [r.decision for r in rows].count("refuse") == 1 and len(rows) == 11
    s3.delete_object(Bucket="artifacts", Key=f"mt/{DAG}/{storage.safe_name('scheduled__2026-01-01T00:00:00+00:00')}"
                                             "/config.json")
    assert len(history.collect(root)[DAG]) == 10


def test_a_run_id_without_a_date_gets_its_date_once_the_pull_wrote_it(s3):
    """A run triggered under an id of the team's own (`nightly-retrain`) is dated by its pull manifest. A page viewed
    before the pull finished cached its row without a date; the manifest is not among the records whose ETags key
    the cache, so the row stayed undated (sorted first) while no other record changed: a run that pulled nothing
    new writes no other."""
    s3.create_bucket(Bucket="artifacts")
    root = "s3://artifacts/dateless"
    run_dir = _run(root, "nightly-retrain")
    assert [r.date for r in history.collect(root)[DAG]] == [None]
    storage.write_json(storage.join(run_dir, "pull_manifest.json"), {"pulled_at": "2026-11-29T10:00:00"})
    assert [r.date for r in history.collect(root)[DAG]] == ["2026-11-29T10:00:00"]
