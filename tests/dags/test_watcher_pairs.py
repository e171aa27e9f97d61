"""The watcher and a pipeline with several target languages: it lists each pair's prefix and reads each pair's
consumed state where that pair's runs write it, so a key the runs consumed is settled, never announced again."""

import importlib.util
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from mt_airflow import pairs, watch
from support.corpora import digit_pairs, write_jsonl
from tasks import config, layout
from tasks.io import storage

REPO = Path(__file__).resolve().parents[2]


def _watched_prefixes(pipelines_file: Path) -> dict:
    spec = importlib.util.spec_from_file_location("watcher_dag_under_test",
                                                  REPO / "dags" / "translation_data_watcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.watched_prefixes(pipelines_file)


def _consume(run: config.RunConfig, *keys: Path) -> None:
    """What the pair's mark_consumed leaves in its state (tasks/data/consumed.py), reduced to what is compared."""
    storage.write_json(run.state_uri(layout.CONSUMED),
                       {"objects": {str(key): {"etag": storage.stat(str(key)).etag} for key in keys}})


def test_the_watcher_reads_each_pairs_consumed_state_where_its_runs_write_it(tmp_path):
    data = tmp_path / "data" / "support"
    de_key = write_jsonl(data / "en-de" / "w1" / "part.jsonl", digit_pairs(5))
    nl_key = write_jsonl(data / "en-nl" / "w1" / "part.jsonl", digit_pairs(6))
    write_jsonl(data / "readme-pairs.jsonl", digit_pairs(3))  # no pair pulls it: not watched
    entry = {"domain": "support", "source_lang": "en", "target_langs": ["de", "nl", "fr"],  # fr: no folder yet
             "data_uri": f"{data}/", "base_model": "Helsinki-NLP/opus-mt-en-mul", "hub_repo_id": "org/mt-support",
             "schedule": None}
    (tmp_path / "pipelines.yaml").write_text(yaml.safe_dump({"pipelines": [entry]}))
    ((data_uri, watched),) = _watched_prefixes(tmp_path / "pipelines.yaml").items()
    assert data_uri == f"{data}/"  # one Asset: the pipeline is scheduled on its data_uri
    root = str(tmp_path / "artifacts")
    cfg = config.build({k: v for k, v in entry.items() if k not in ("domain", "schedule")},
                       dag_id=watched[0][0], run_id="scheduled__2026-12-01", artifact_root=root)
    de, nl, fr = pairs.expand(cfg)
    assert [p[3] for p in watched] == [de.data_uri, nl.data_uri, fr.data_uri]
    state = watch.state_uri(root, data_uri)

    found = watch.find(data_uri, state, watch.consumed_states(root, watched))
    assert set(found.new) == {str(de_key), str(nl_key)} and not found.settled
    watch.remember(state, found)
    _consume(de, de_key)  # each language's run consumed its own key, in the state its run config names
    _consume(nl, nl_key)
    in_30_days = datetime.now(timezone.utc) + timedelta(days=30)  # unconsumed keys would be due again by then
    later = watch.find(data_uri, state, watch.consumed_states(root, watched), now=in_30_days)
    assert later.due == {} and set(later.settled) == {str(de_key), str(nl_key)}  # before: announced again forever



def test_one_prefix_spelled_two_ways_is_watched_once(tmp_path, monkeypatch):
    """`s3://b/p` and `s3://b/p/` are one Asset and one state file: two watch tasks shared that file, and the
    main DAG's consumption settled a key that the entry's failed run never consumed, so it was never announced
    again."""
    monkeypatch.setenv("MT_DATA_URI", "s3://translation-data/legal/en-de")
    monkeypatch.setenv("MT_HUB_REPO_ID", "org/opus-mt-en-de-main")
    entry = {"domain": "legal", "source_lang": "en", "target_lang": "de",
             "data_uri": "s3://translation-data/legal/en-de/", "base_model": "Helsinki-NLP/opus-mt-en-de",
             "hub_repo_id": "org/opus-mt-en-de-legal"}
    (tmp_path / "pipelines.yaml").write_text(yaml.safe_dump({"pipelines": [entry]}))
    watched = _watched_prefixes(tmp_path / "pipelines.yaml")
    assert list(watched) == ["s3://translation-data/legal/en-de/"]
    assert [dag_id for dag_id, *_ in watched["s3://translation-data/legal/en-de/"]] == [
        "translation_finetune", "translation_finetune__legal_en_de"]
