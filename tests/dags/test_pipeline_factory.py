"""The DAG factory: one DAG per dags/pipelines.yaml entry, and a broken entry costs only its own DAG."""

import shutil
from pathlib import Path

import pytest
import yaml

from mt_airflow import pipelines

REPO = Path(__file__).resolve().parents[2]
GOOD = {"domain": "legal", "source_lang": "en", "target_lang": "de", "data_uri": "s3://data/legal/en-de/",
        "base_model": "Helsinki-NLP/opus-mt-en-de", "hub_repo_id": "org/opus-mt-en-de-legal"}


def _bag(folder: Path, document) -> "DagBag":
    from airflow.dag_processing.dagbag import DagBag

    for name in ("translation_finetune.py", "translation_data_watcher.py"):
        shutil.copy(REPO / "dags" / name, folder / name)
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    (folder / "pipelines.yaml").write_text(text)
    return DagBag(dag_folder=str(folder))


def test_the_shipped_pipelines_become_dags_with_their_values_as_defaults():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import AssetOrTimeSchedule

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    legal = bag.dags["translation_finetune__legal_en_de"]
    support = bag.dags["translation_finetune__support_en_de_nl"]
    assert legal.params["hub_repo_id"] == "my-org/opus-mt-en-de-legal"
    assert legal.params["launcher"] == "kubernetes"  # from `defaults`
    assert support.params["target_langs"] == ["de", "nl"] and support.params["min_bleu_gain"] == 0.5
    # each language fine-tunes a model that already translates into it
    assert support.params["target_base_models"] == {"de": "Helsinki-NLP/opus-mt-en-de",
                                                    "nl": "Helsinki-NLP/opus-mt-en-nl"}
    assert support.params["num_train_epochs"] == 2
    assert isinstance(legal.timetable, AssetOrTimeSchedule)
    assert legal.timetable.timetable.expression == "0 3 * * 1"
    assert legal.timetable.asset_condition.uri == "s3://translation-data/legal/en-de"
    assert "domain:support" in support.tags
    # Same definition as the main DAG: same tasks, same order.
    assert set(support.task_ids) == set(bag.dags["translation_finetune"].task_ids)
    watcher = bag.dags["translation_data_watcher"]
    watched = {a.uri for t in watcher.tasks for a in t.outlets}
    assert watched == {"s3://translation-data/legal/en-de", "s3://translation-data/support"}  # no MT_DATA_URI


def test_a_broken_entry_becomes_a_marker_dag_that_names_entry_and_field(tmp_path):
    bad_value = {**GOOD, "domain": "medical", "thresholds": {"min_bleu_gain": "lots"}}
    missing = {k: v for k, v in GOOD.items() if k != "data_uri"} | {"domain": "finance"}
    bag = _bag(tmp_path, {"pipelines": [GOOD, bad_value, missing]})

    assert bag.import_errors == {}
    assert "translation_finetune" in bag.dags and "translation_finetune__legal_en_de" in bag.dags
    medical = bag.dags["translation_finetune__invalid_2_medical"]
    assert "pipeline #2 ('medical')" in medical.description
    assert "field thresholds.min_bleu_gain" in medical.description and "'lots'" in medical.description
    assert medical.schedule is None and "invalid-pipeline" in medical.tags
    finance = bag.dags["translation_finetune__invalid_3_finance"]
    assert "pipeline #3 ('finance'): field data_uri: Field required" in finance.description
    warnings = " ".join(w for ws in bag.captured_warnings.values() for w in ws)
    assert "field thresholds.min_bleu_gain" in warnings


def test_an_unreadable_file_leaves_the_main_dag_and_the_watcher_alone(tmp_path):
    bag = _bag(tmp_path, "pipelines:\n  - domain: legal\n    source_lang: [en\n")
    assert bag.import_errors == {}
    assert {"translation_finetune", "translation_data_watcher", "translation_finetune__invalid_file"} <= set(bag.dags)
    assert "cannot be read" in bag.dags["translation_finetune__invalid_file"].description


@pytest.mark.parametrize("change, message", [
    ({"schedule": "every monday"}, "field schedule: not a cron expression or preset"),
    ({"target_langs": ["de", "nl"]}, "field target_lang / target_langs: give exactly one of them"),
    ({"source_lang": "EN"}, "field source_lang: String should match pattern"),
    ({"params": {"learning_rte": 0.1}}, "field params.learning_rte: Extra inputs are not permitted"),
    ({"params": {"launcher": "slurm"}}, "field params.launcher: Input should be 'local', 'docker' or 'kubernetes'"),
    ({"hub_repo_id": "no-namespace"}, "field hub_repo_id: Value error, 'no-namespace' is not a Hub repository id"),
    ({"domain": "Legal Team"}, "field domain: String should match pattern"),
    ({"colour": "blue"}, "field colour: Extra inputs are not permitted"),
    # Valid cron, but February never has a 30th: the scheduler only logs that it found no next run.
    ({"schedule": "0 3 30 2 *"}, "field schedule: it never fires"),
])
def test_entry_errors_name_the_entry_and_the_field(change, message):
    good, broken = pipelines.parse({"pipelines": [{**GOOD, **change}]})
    assert good == [] and len(broken) == 1
    assert broken[0].message.startswith("pipeline #1 (")
    assert message in broken[0].message


def test_ids_derive_from_domain_and_languages_and_must_be_unique():
    multi = {**GOOD, "domain": "support", "target_lang": None, "target_langs": ["de", "nl"]}
    good, broken = pipelines.parse({"defaults": {"min_bleu_gain": 2.0}, "pipelines": [GOOD, multi, GOOD]})
    assert [p.dag_id for p in good] == ["translation_finetune__legal_en_de", "translation_finetune__support_en_de_nl"]
    assert good[0].params["min_bleu_gain"] == 2.0
    assert good[1].params["target_lang"] == "de" and good[1].languages == "en→de,nl"
    assert len(broken) == 1 and "already used by pipeline #1" in broken[0].message


def test_two_pipelines_never_publish_to_the_same_repository():
    """Each would gate its candidate against the other's champion, on its own test set, and replace it."""
    medical = {**GOOD, "domain": "medical"}  # GOOD's hub_repo_id
    shouting = {**GOOD, "domain": "law", "hub_repo_id": "ORG/opus-mt-en-de-legal"}  # the Hub ignores case
    support = {**GOOD, "domain": "support", "target_lang": None, "target_langs": ["de", "nl"],
               "hub_repo_id": "org/opus-mt-en-de"}  # publishes to org/opus-mt-en-de-de and -nl
    clashing = {**GOOD, "domain": "it", "hub_repo_id": "org/opus-mt-en-de-nl"}
    good, broken = pipelines.parse({"pipelines": [GOOD, medical, shouting, support, clashing]})
    assert [p.domain for p in good] == ["legal", "support"]
    assert [b.index for b in broken] == [1, 2, 4]
    assert broken[0].message == (
        "pipeline #2 ('medical'): field hub_repo_id: it publishes to org/opus-mt-en-de-legal, as pipeline #1 "
        "('legal') does: each would judge its model against the other's and replace it; give each pipeline its own "
        "hub_repo_id")
    assert "publishes to org/opus-mt-en-de-nl, as pipeline #4 ('support') does" in broken[2].message
    # Local registries: the same repository in two registries is two places; in one, the same place.
    local = {"publish_target": "local", "registry_uri": "s3://models/registry"}
    good, broken = pipelines.parse({"pipelines": [
        {**GOOD, "params": local}, {**medical, "params": {**local, "registry_uri": "s3://models/other"}},
        {**GOOD, "domain": "law", "params": {**local, "registry_uri": "s3://models/registry/"}}]})
    assert [p.domain for p in good] == ["legal", "medical"] and [b.index for b in broken] == [2]


def test_each_target_language_can_have_its_own_base_model():
    multi = {**GOOD, "domain": "support", "target_lang": None, "target_langs": ["de", "nl"],
             "base_model": {"de": "Helsinki-NLP/opus-mt-en-de", "nl": "Helsinki-NLP/opus-mt-en-nl"}}
    single = {**GOOD, "base_model": {"de": "Helsinki-NLP/opus-mt-en-de"}}
    shared = {**multi, "domain": "shared", "base_model": "facebook/nllb-200-distilled-600M",
              "hub_repo_id": "org/nllb-en-shared"}
    (support, legal, nllb), broken = pipelines.parse({"pipelines": [multi, single, shared]})
    assert broken == []
    assert support.params["base_model"] == "Helsinki-NLP/opus-mt-en-de"
    assert support.params["target_base_models"] == multi["base_model"]
    assert legal.params["base_model"] == "Helsinki-NLP/opus-mt-en-de" and "target_base_models" not in legal.params
    assert nllb.params["base_model"] == "facebook/nllb-200-distilled-600M" and "target_base_models" not in nllb.params


def test_the_pairs_of_a_run_fine_tune_their_own_base_models(tmp_path):
    from mt_airflow import pairs
    from tasks import config

    multi = {**GOOD, "domain": "support", "target_lang": None, "target_langs": ["de", "nl"],
             "data_uri": str(tmp_path / "data"),
             "base_model": {"de": "Helsinki-NLP/opus-mt-en-de", "nl": "Helsinki-NLP/opus-mt-en-nl"}}
    (support,), _ = pipelines.parse({"pipelines": [multi]})
    run = config.build(support.params, dag_id=support.dag_id, run_id="manual_1",
                       artifact_root=str(tmp_path / "artifacts"))
    assert {p.target_lang: p.base_model for p in pairs.expand(run)} == multi["base_model"]


TWO = {**GOOD, "domain": "support", "target_lang": None, "target_langs": ["de", "nl"]}


@pytest.mark.parametrize("change, message", [
    ({"base_model": {"de": "Helsinki-NLP/opus-mt-en-de"}},
     "field base_model: no base model for nl; name one for every target language (de, nl), or one model for all"),
    ({"base_model": {"de": "a/b", "nl": "c/d", "fr": "e/f"}},
     "field base_model.fr: 'fr' is not a target language of this pipeline (de, nl)"),
    ({"params": {"target_base_models": {"fr": "e/f"}}},
     "field params.target_base_models.fr: 'fr' is not a target language of this pipeline (de, nl)"),
    ({"base_model": {"de": "a/b", "nl": "c/d"}, "params": {"target_base_models": {"nl": "c/d"}}},
     "field base_model / params.target_base_models: give the base models of the target languages in one place"),
    ({"base_model": {"de": "a/b", "nl": "../up"}}, "field base_model: Value error, '../up' is not allowed"),
    ({"base_model": ["a/b"]}, "field base_model"),
])
def test_per_language_base_model_errors_name_the_entry_and_the_field(change, message):
    good, broken = pipelines.parse({"pipelines": [{**TWO, **change}]})
    assert good == [] and len(broken) == 1
    assert broken[0].message.startswith("pipeline #1 ('support'): ")
    assert message in broken[0].message


def test_with_s3_notifications_for_every_watched_prefix_the_watcher_lists_daily(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    def watcher(folder=REPO / "dags"):
        dag = (DagBag(dag_folder=str(folder)) if folder == REPO / "dags" else
               _bag(folder, {"pipelines": [GOOD, {**GOOD, "domain": "local", "data_uri": str(tmp_path / "in"),
                                                            "hub_repo_id": "org/opus-mt-en-de-local"}]})
               ).dags["translation_data_watcher"]
        return dag.timetable.expression, dag.description

    assert watcher() == ("*/10 * * * *", "Watches 2 data prefix(es) every 10 minutes.")
    monkeypatch.setenv("MT_DATA_EVENTS_QUEUE", "https://sqs.eu-west-1.amazonaws.com/123456789012/data-events")
    # The shipped pipelines all read S3: the triggerer announces their files, the listing is a daily safety net.
    assert watcher() == ("0 0 * * *", "Lists 2 data prefix(es) daily; S3 notifications announce new files.")
    # A folder sends no notifications: it is still listed every 10 minutes.
    (tmp_path / "dags").mkdir()
    assert watcher(tmp_path / "dags")[0] == "*/10 * * * *"


def test_the_deployments_launcher_is_every_pipelines_default_unless_the_file_says_otherwise(monkeypatch):
    monkeypatch.setenv("MT_LAUNCHER", "docker")
    (entry,), _ = pipelines.parse({"pipelines": [GOOD]})
    (own,), _ = pipelines.parse({"defaults": {"launcher": "kubernetes"}, "pipelines": [GOOD]})
    assert (entry.params["launcher"], own.params["launcher"]) == ("docker", "kubernetes")
    monkeypatch.setenv("MT_LAUNCHER", "slurm")
    _, (broken,) = pipelines.parse({"pipelines": [GOOD]})
    assert "field launcher (from MT_LAUNCHER): Input should be 'local', 'docker' or 'kubernetes'" in broken.message


SHIPPED_LEGAL = """\
pipelines:
  - domain: legal
    source_lang: en
    target_lang: de
    data_uri: s3://data/legal/en-de/
    base_model: Helsinki-NLP/opus-mt-en-de
    hub_repo_id: org/opus-mt-en-de-legal
    thresholds:
      min_bleu_gain: 1.0
    schedule: "0 3 * * 1"
    thresholds:
      max_champion_regression: 0.5
  - domain: medical
    source_lang: en
    target_lang: de
    data_uri: s3://data/medical/en-de/
    base_model: Helsinki-NLP/opus-mt-en-de
    hub_repo_id: org/opus-mt-en-de-medical
"""


def test_a_field_given_twice_is_refused_not_silently_replaced(tmp_path):
    """YAML keeps a repeated key's last value: the legal pipeline lost its min_bleu_gain of 1.0 without a word."""
    path = tmp_path / "pipelines.yaml"
    path.write_text(SHIPPED_LEGAL)
    good, broken = pipelines.load(path)
    assert [p.domain for p in good] == ["medical"]  # the others still load
    assert broken[0].message == ("pipelines.yaml: pipeline #1 ('legal'): field thresholds is given twice "
                                 "(lines 8 and 11): YAML would keep only the last; give each once")
    path.write_text("defaults:\n  launcher: docker\n  launcher: local\npipelines: []\n")
    (whole,) = pipelines.load(path)[1]
    assert "field defaults.launcher is given twice (lines 2 and 3)" in whole.message
    path.write_text(SHIPPED_LEGAL.split("  - domain: medical")[0] + "pipelines: []\n")  # drops every pipeline
    (whole,) = pipelines.load(path)[1]
    assert "key pipelines is given twice (lines 1 and 13)" in whole.message


def test_a_yaml_merge_key_is_no_repetition(tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text("pipelines:\n  - <<: {source_lang: fr, target_lang: de}\n    source_lang: en\n" + "".join(
        f"    {key}: {value}\n" for key, value in GOOD.items() if key not in ("source_lang", "target_lang")))
    (legal,), broken = pipelines.load(path)
    assert broken == [] and legal.params["source_lang"] == "en"


def test_an_entry_never_publishes_where_the_main_dag_does(monkeypatch):
    """With MT_DATA_URI and MT_HUB_REPO_ID set, the main DAG retrains weekly and publishes there: an entry on the
    same repository would judge its model against the main DAG's, and replace it, every week."""
    monkeypatch.setenv("MT_DATA_URI", GOOD["data_uri"])
    monkeypatch.setenv("MT_HUB_REPO_ID", "ORG/opus-mt-en-de-legal")
    other = {**GOOD, "domain": "medical", "hub_repo_id": "org/opus-mt-en-de-medical"}
    good, (broken,) = pipelines.parse({"pipelines": [GOOD, other]})
    assert [p.domain for p in good] == ["medical"] and broken.index == 0
    assert broken.message.startswith("pipeline #1 ('legal'): field hub_repo_id: it publishes to "
                                     "org/opus-mt-en-de-legal, as the main DAG translation_finetune does "
                                     "(MT_HUB_REPO_ID)")
    monkeypatch.delenv("MT_DATA_URI")  # the main DAG runs only when triggered: it publishes where its form says
    assert len(pipelines.parse({"pipelines": [GOOD]})[0]) == 1


def test_a_bad_default_is_named_as_the_files_default():
    _, (broken,) = pipelines.parse({"defaults": {"min_bleu_gian": 1.0}, "pipelines": [GOOD]})
    assert "field defaults.min_bleu_gian: Extra inputs are not permitted" in broken.message


def test_an_alias_of_its_own_mapping_breaks_the_entry_not_the_dag_files(tmp_path):
    """YAML lets an alias name the mapping it sits in: the repeated-key check followed it forever, and the
    RecursionError failed both DAG files (every pipeline, the main DAG and the watcher) instead of one entry."""
    entry = "".join(f"    {key}: {value}\n" for key, value in GOOD.items()).replace("    ", "  - ", 1)
    bag = _bag(tmp_path, "pipelines:\n" + entry + "    params: &p {colour: *p}\n")
    assert bag.import_errors == {}
    assert {"translation_finetune", "translation_data_watcher", "translation_finetune__invalid_1_legal"} <= set(
        bag.dag_ids)
    assert "field params.colour: Extra inputs are not permitted" in bag.dags[
        "translation_finetune__invalid_1_legal"].description


@pytest.mark.timeout(60)
def test_aliases_that_fan_out_are_looked_at_once(tmp_path):
    """Each level names the one before it ten times: 10^8 mappings to walk, one of each to look at."""
    levels = "".join(f"  l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    path = tmp_path / "pipelines.yaml"
    path.write_text("defaults:\n  l0: &a0 {k: 1}\n" + levels + "pipelines: []\n")
    assert pipelines.repeated_keys(yaml.load(path.read_text(), Loader=pipelines._Loader)) == []  # noqa: S506
