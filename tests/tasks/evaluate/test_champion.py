"""The champion lookup: what the run's registry serves now, through the real huggingface_hub client against the
local Hub server, and from a local registry."""

from pathlib import Path

import pytest

from support.runs import make_promoted_run, make_run
from tasks import layout
from tasks.evaluate import champion, reuse, scoring
from tasks.io import storage
from tasks.publish import registry
from tasks.publish import step as publish
from tasks.publish.hub_registry import HubAccessError, HubRegistry, RetryPolicy
from tasks.train import step as train_step

TOKEN = "hf_writer"
REPO = "org/champ"


def _hub(hub, token=TOKEN):
    return HubRegistry(REPO, token=token, endpoint=hub.url, retry=RetryPolicy(attempts=2, base_delay_s=0.01))


@pytest.fixture
def released(tmp_path, hub, tiny_model):
    """A run of this workflow published to the Hub: the champion of every later run."""
    cfg = make_promoted_run(tmp_path / "earlier", tiny_model, run_id="scheduled__2026-11-20T00:00:00+00:00",
                            hub_repo_id=REPO)
    return publish.run(cfg, registry=_hub(hub))


def test_the_published_release_is_copied_into_the_run_and_pinned(tmp_path, hub, released, tiny_model):
    cfg = make_run(tmp_path / "now", hub_repo_id=REPO)
    record = champion.run(cfg, source=_hub(hub))
    assert record == {"found": True, "label": f"{REPO}@{released['run_tag']}", "run_tag": released["run_tag"],
                      "revision": released["revision"], "url": released["url"],
                      "model_uri": cfg.uri(layout.CHAMPION), "registry_revision": released["revision"],
                      "base_model": "Helsinki-NLP/opus-mt-en-de"}
    for name in ("config.json", "model.safetensors", "vocab.json", "source.spm"):
        assert storage.read_bytes(cfg.uri(layout.CHAMPION, name)) == (tiny_model / name).read_bytes()
    assert not storage.exists(cfg.uri(layout.CHAMPION, "eval", "scores.json"))  # only what loads the model
    assert champion.result(cfg) == record
    requests = len(hub.requests)
    assert champion.run(cfg, source=_hub(hub)) == record  # a retry reads the record
    assert len(hub.requests) == requests


def test_init_from_champion_trains_the_configured_base_once_base_model_was_switched(tmp_path, hub, released,
                                                                                   tiny_model):
    """The champion was fine-tuned from opus-mt-en-de; the team switched base_model to another model. Continuing
    from the champion would train the old model on, week after week, and never the one configured."""
    same = make_run(tmp_path / "same", hub_repo_id=REPO, init_from="champion")
    record = champion.run(same, source=_hub(hub))
    assert train_step.starting_model(same, tmp_path / "s1") == (same.uri(layout.CHAMPION),
                                                                f"champion {record['label']}")
    switched = make_run(tmp_path / "switched", hub_repo_id=REPO, init_from="champion", base_model=str(tiny_model))
    record = champion.run(switched, source=_hub(hub))
    assert record["base_model"] == "Helsinki-NLP/opus-mt-en-de"
    assert train_step.starting_model(switched, tmp_path / "s2") == (
        str(tiny_model), f"base {tiny_model} (the champion {record['label']} was fine-tuned from "
                         "Helsinki-NLP/opus-mt-en-de)")


@pytest.mark.parametrize("files, expected", [
    ({"release.json": '{"run_tag": "run-20261120-00000000", "base_model": "org/base"}'}, "org/base"),
    # A release from before release.json named its base: the card's metadata does (for a Hub base).
    ({"release.json": '{"run_tag": "run-20261120-00000000"}', "README.md": "---\nbase_model: org/old\n---\n# m"},
     "org/old"),
    ({"README.md": "# a card without metadata"}, None),
    ({"README.md": "---\n: [\n---\n# metadata that is not YAML"}, None),
    ({"README.md": "---\nbase_model: [org/a, org/b]\n---\n"}, None),
    ({}, None),
])
def test_what_a_champion_was_fine_tuned_from(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert champion.fine_tuned_from(str(tmp_path)) == expected


def test_a_model_uploaded_by_hand_to_main_is_the_champion_all_the_same(tmp_path, hub, api, tiny_model):
    api.create_repo("org/hand-made")
    api.upload_folder(repo_id="org/hand-made", folder_path=str(tiny_model), commit_message="uploaded by hand")
    main = hub.branches("org/hand-made")["main"]
    cfg = make_run(tmp_path, hub_repo_id="org/hand-made", init_from="champion")
    record = champion.run(cfg, token=TOKEN, endpoint=hub.url)
    # Users are served it: the gate compares the candidate with it, and publishing builds on exactly it.
    assert record == {"found": True, "label": f"org/hand-made@{main} (not released by this pipeline)",
                      "run_tag": None, "revision": main, "url": f"{hub.url}/org/hand-made/commit/{main}",
                      "model_uri": cfg.uri(layout.CHAMPION), "registry_revision": main, "base_model": None}
    assert storage.read_bytes(cfg.uri(layout.CHAMPION, "model.safetensors")) == \
        (tiny_model / "model.safetensors").read_bytes()
    # Its kept translations are those of its files, and init_from: champion continues from it, saying whose it is.
    assert reuse.model_fingerprint(Path(cfg.uri(layout.CHAMPION))) == reuse.model_fingerprint(tiny_model)
    assert train_step.starting_model(cfg, tmp_path / "scratch") == (cfg.uri(layout.CHAMPION),
                                                                    f"champion {record['label']}")


def test_a_main_that_serves_no_model_has_no_champion_and_says_so(tmp_path, hub, api):
    api.create_repo("org/card-only")
    api.upload_file(path_or_fileobj=b"# soon\n", path_in_repo="README.md", repo_id="org/card-only")
    main = hub.branches("org/card-only")["main"]
    record = champion.run(make_run(tmp_path, hub_repo_id="org/card-only"), token=TOKEN, endpoint=hub.url)
    assert record == {"found": False, "registry_revision": main, "reason": f"org/card-only@{main} serves no model "
                      "(no config.json with weights at its top level): nothing to compare against"}


def test_a_retry_clears_what_an_earlier_attempt_left_in_champion(tmp_path, hub, released, tiny_model):
    cfg = make_run(tmp_path / "now", hub_repo_id=REPO)
    storage.write_bytes(cfg.uri(layout.CHAMPION, "model-00001-of-00002.safetensors"), b"another release's shard")
    storage.write_bytes(cfg.uri(layout.CHAMPION, "model.safetensors"), b"another release's weights")
    assert champion.run(cfg, source=_hub(hub))["found"]
    assert not storage.exists(cfg.uri(layout.CHAMPION, "model-00001-of-00002.safetensors"))
    assert storage.read_bytes(cfg.uri(layout.CHAMPION, "model.safetensors")) == \
        (tiny_model / "model.safetensors").read_bytes()


def test_the_first_run_has_no_champion_and_says_why(tmp_path, hub):
    record = champion.run(make_run(tmp_path, hub_repo_id="org/nothing-yet"), token=TOKEN, endpoint=hub.url)
    assert record == {"found": False, "reason": "nothing published at org/nothing-yet yet",
                      "registry_revision": None}


def test_publishing_off_asks_the_hub_nothing(tmp_path, hub):
    record = champion.run(make_run(tmp_path, push_to_hub=False), token=TOKEN, endpoint=hub.url)
    assert record["found"] is False and "push_to_hub is off" in record["reason"]
    assert hub.requests == []


def test_a_token_the_hub_refuses_fails_the_step_instead_of_skipping_the_check(tmp_path, hub, released):
    cfg = make_run(tmp_path / "now", hub_repo_id=REPO)
    with pytest.raises(HubAccessError):
        champion.run(cfg, source=_hub(hub, token="hf_wrong"))
    assert champion.result(cfg) is None


def test_the_current_version_of_a_local_registry(tmp_path, tiny_model):
    root = str(tmp_path / "registry")
    first = make_promoted_run(tmp_path / "earlier", tiny_model, run_id="scheduled__2026-11-20T00:00:00+00:00",
                              publish_target="local", registry_uri=root)
    released = publish.run(first)
    cfg = make_run(tmp_path / "now", publish_target="local", registry_uri=root)
    record = champion.run(cfg)
    assert record["found"] and record["run_tag"] == released["run_tag"] == record["registry_revision"]
    assert registry.tag_in(record["label"]) == released["run_tag"]
    assert storage.read_bytes(cfg.uri(layout.CHAMPION, "model.safetensors")) == \
        (tiny_model / "model.safetensors").read_bytes()


def test_a_target_language_the_gate_cannot_score_fails_the_lookup_before_training(tmp_path, hub, monkeypatch):
    """A Japanese target where sacrebleu's [ja] extra is missing: the run stops at the lookup, before training, not
    in evaluate after hours of it."""
    import sys

    for name in [n for n in sys.modules if n.startswith("sacrebleu.tokenizers.tokenizer_")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "MeCab", None)
    cfg = make_run(tmp_path, hub_repo_id=REPO, target_lang="ja")
    with pytest.raises(scoring.ScoringUnavailable, match="'ja' needs the ja-mecab tokenizer"):
        champion.run(cfg, source=_hub(hub))
    assert champion.result(cfg) is None and not hub.requests


def test_a_release_whose_weights_were_withdrawn_is_no_champion_and_a_new_release_replaces_it(tmp_path, hub, api,
                                                                                              released, tiny_model):
    """Users are served no model once a release's weights are deleted from main: evaluate could not load it, so
    taking it for the champion would fail every later run until someone repaired main by hand."""
    from huggingface_hub import CommitOperationDelete

    api.create_commit(REPO, [CommitOperationDelete("model.safetensors")], commit_message="withdraw the model")
    main = hub.branches(REPO)["main"]
    cfg = make_run(tmp_path / "now", hub_repo_id=REPO)
    record = champion.run(cfg, source=_hub(hub))
    assert record == {"found": False, "registry_revision": main, "reason": f"{REPO}@{main} serves no model "
                      "(no config.json with weights at its top level): nothing to compare against"}
    nxt = make_promoted_run(tmp_path / "next", tiny_model, run_id="scheduled__2026-11-27T00:00:00+00:00",
                            hub_repo_id=REPO, champion_source=_hub(hub))
    assert publish.run(nxt, registry=_hub(hub))["published"]
    assert "model.safetensors" in hub.files(REPO)


@pytest.mark.parametrize("withdraw", ["folder", "weights"])
def test_a_local_version_deleted_or_emptied_by_hand_is_no_champion(tmp_path, tiny_model, withdraw):
    import shutil

    root = str(tmp_path / "registry")
    first = make_promoted_run(tmp_path / "earlier", tiny_model, run_id="scheduled__2026-11-20T00:00:00+00:00",
                              publish_target="local", registry_uri=root)
    released = publish.run(first)
    if withdraw == "folder":
        shutil.rmtree(released["url"])
    else:
        Path(released["url"], "model.safetensors").unlink()
    record = champion.run(make_run(tmp_path / "now", publish_target="local", registry_uri=root))
    assert not record["found"] and "serves no model" in record["reason"]
    assert record["registry_revision"] == released["run_tag"]  # publishing builds on what index.json names
    nxt = make_promoted_run(tmp_path / "next", tiny_model, run_id="scheduled__2026-11-27T00:00:00+00:00",
                            publish_target="local", registry_uri=root,
                            champion_source=registry_for_local(root))
    assert publish.run(nxt)["published"]


def registry_for_local(root: str):
    from tasks.publish.local_registry import LocalRegistry

    return LocalRegistry(root, "my-org/opus-mt-en-de-domain")


@pytest.mark.parametrize("released_from, configured", [
    ("Helsinki-NLP/opus-mt-en-de", "helsinki-nlp/opus-mt-en-de"),  # the Hub's ids ignore case: the same model
    ("{model}", "{model}/"),  # a local folder, with a trailing slash now
    ("{model}/", "{model}"),
])
def test_init_from_champion_continues_when_base_model_is_the_same_model_spelled_otherwise(
        tmp_path, tiny_model, released_from, configured):
    """Only a switch to another base model restarts from it: the champion's base spelled otherwise (a Hub id's case,
    a folder's trailing slash) is the base it was fine-tuned from, and restarting threw the weeks of training away."""
    cfg = make_run(tmp_path / "run", init_from="champion", base_model=configured.format(model=tiny_model))
    storage.write_json(cfg.uri(layout.CHAMPION_RECORD), {
        "found": True, "label": "org/champ@run-1", "model_uri": str(tiny_model),
        "base_model": released_from.format(model=tiny_model)})
    assert train_step.starting_model(cfg, tmp_path / "scratch") == (str(tiny_model), "champion org/champ@run-1")
