"""A run loads one commit of each Hub model it names, whatever the Hub does meanwhile: through the real
huggingface_hub client against the local Hub server."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.runs import cli_env, make_run
from tasks import hub_models, layout
from tasks.io import storage

WEIGHTS_AND_SIDES = ["config.json", "generation_config.json", "source.spm", "target.spm", "tokenizer_config.json",
                     "vocab.json"]


@pytest.mark.parametrize("files, kept", [
    # opus-mt repositories hold the weights four times over; one copy is loaded.
    (["README.md", ".gitattributes", "pytorch_model.bin", "tf_model.h5", "rust_model.ot", "flax_model.msgpack",
      "model.safetensors", *WEIGHTS_AND_SIDES, "onnx/model.onnx"], sorted([*WEIGHTS_AND_SIDES, "model.safetensors"])),
    (["pytorch_model.bin", "tf_model.h5", "training_args.bin", *WEIGHTS_AND_SIDES],
     sorted([*WEIGHTS_AND_SIDES, "pytorch_model.bin"])),
    (["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
      "config.json", "sentencepiece.bpe.model"],
     ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
      "model.safetensors.index.json", "sentencepiece.bpe.model"]),
])
def test_only_what_loading_needs_is_downloaded(files, kept):
    assert hub_models.model_files(files) == kept


@pytest.fixture
def base_on_hub(hub, api, tiny_model, monkeypatch, request):
    """The tiny model as a Hub repository of its own (one per test: the Hugging Face cache is shared)."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_reader")
    repo = "org/base-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.split("[")[0][-40:]).strip("-")
    api.create_repo(repo)
    api.upload_folder(folder_path=str(tiny_model), repo_id=repo)
    return repo, api.model_info(repo).sha


def _change_upstream(api, repo):
    api.upload_file(path_or_fileobj=b'{"changed": "upstream"}', path_in_repo="generation_config.json", repo_id=repo)
    return api.model_info(repo).sha


def test_a_run_loads_the_commit_its_first_step_pinned_while_the_hub_moves_on(tmp_path, base_on_hub, api, tiny_model):
    repo, first = base_on_hub
    run = make_run(tmp_path / "run", base_model=repo)
    folder, label = hub_models.local_copy(run, repo)  # e.g. validate's alignment screen
    assert label == f"{repo}@{first[:12]}" and Path(folder).name == first
    assert sorted(p.name for p in Path(folder).iterdir()) == hub_models.model_files(
        [p.name for p in Path(tiny_model).iterdir()])
    pinned = storage.read_json(run.uri(layout.HUB_REVISIONS))[repo]
    assert pinned["revision"] == first and "model.safetensors" in pinned["files"]

    second = _change_upstream(api, repo)  # the base model is updated on the Hub while the run goes on
    assert second != first
    again, label = hub_models.local_copy(run, repo)  # train, evaluate, a retry: the same commit
    assert label == f"{repo}@{first[:12]}"
    assert Path(again, "generation_config.json").read_bytes() == (tiny_model / "generation_config.json").read_bytes()
    assert hub_models.pinned_revisions(run) == {repo: first}

    point = make_run(tmp_path / "point", base_model=repo)  # a learning-curve point of the run
    hub_models.carry_over(run, point)
    assert hub_models.local_copy(point, repo)[1] == f"{repo}@{first[:12]}"
    later = make_run(tmp_path / "later", base_model=repo)  # next week's run takes the new commit
    assert hub_models.local_copy(later, repo)[1] == f"{repo}@{second[:12]}"


@pytest.mark.parametrize("garbled", [{"revision": "main", "files": ["config.json"]},
                                     {"revision": "a" * 40, "files": ["../../etc/passwd"]},
                                     {"revision": "a" * 40, "files": []}, "not a pin"])
def test_a_pin_that_is_not_a_commit_and_model_files_is_made_again(tmp_path, base_on_hub, garbled):
    repo, first = base_on_hub
    run = make_run(tmp_path / "run", base_model=repo)
    storage.write_json(run.uri(layout.HUB_REVISIONS), {repo: garbled, "other/model": garbled})
    assert hub_models.local_copy(run, repo)[1] == f"{repo}@{first[:12]}"
    assert hub_models.pinned_revisions(run) == {repo: first}


def test_offline_the_cached_copy_is_pinned(tmp_path, base_on_hub, api, monkeypatch):
    from huggingface_hub import constants

    from huggingface_hub import snapshot_download

    repo, first = base_on_hub
    snapshot_download(repo, endpoint=api.endpoint, token="hf_reader")  # cached by name, as an image bakes it in
    _change_upstream(api, repo)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    run = make_run(tmp_path / "run", base_model=repo)
    folder, label = hub_models.local_copy(run, repo)
    assert label == f"{repo}@{first[:12]}" and Path(folder).name == first


def test_a_local_model_is_loaded_as_it_is(tmp_path, tiny_model):
    run = make_run(tmp_path / "run", base_model=str(tiny_model))
    assert hub_models.local_copy(run, str(tiny_model)) == (str(tiny_model), str(tiny_model))
    assert not storage.exists(run.uri(layout.HUB_REVISIONS))


@pytest.mark.parametrize("files", [["README.md", "pytorch_model.bin", "model.fp16.safetensors", "config.json"]])
def test_a_weights_variant_alone_is_not_taken_for_the_weights(files):
    assert hub_models.model_files(files) == ["config.json", "pytorch_model.bin"]


def test_offline_a_cache_holding_only_what_loading_needed_is_pinned(tmp_path, base_on_hub, api, monkeypatch):
    """The cache an earlier run's download left (the model files only, no refs/main) while the repository holds
    more: offline, that copy is pinned and loaded."""
    from huggingface_hub import constants

    repo, first = base_on_hub
    hub_models.local_copy(make_run(tmp_path / "earlier", base_model=repo), repo)
    api.upload_file(path_or_fileobj=b"tensorflow weights", path_in_repo="tf_model.h5", repo_id=repo)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder, label = hub_models.local_copy(make_run(tmp_path / "run", base_model=repo), repo)
    assert label == f"{repo}@{first[:12]}" and (Path(folder) / "config.json").exists()


def test_a_hub_that_cannot_be_reached_pins_the_cached_copy_and_an_uncached_model_fails(tmp_path, base_on_hub,
                                                                                     monkeypatch):
    repo, first = base_on_hub
    hub_models.local_copy(make_run(tmp_path / "earlier", base_model=repo), repo)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert hub_models.local_copy(make_run(tmp_path / "run", base_model=repo), repo)[1] == f"{repo}@{first[:12]}"
    with pytest.raises(Exception) as failed:
        hub_models.local_copy(make_run(tmp_path / "other", base_model="org/never-cached"), "org/never-cached")
    assert not isinstance(failed.value, FileNotFoundError)  # the Hub's own error, not the cache's


def test_a_pinned_commit_that_left_the_hub_fails_saying_so(tmp_path, base_on_hub):
    repo, _ = base_on_hub
    run = make_run(tmp_path / "run", base_model=repo)
    storage.write_json(run.uri(layout.HUB_REVISIONS), {repo: {"revision": "f" * 40, "files": ["config.json"]}})
    with pytest.raises(Exception, match="is no longer on the Hub") as failed:
        hub_models.local_copy(run, repo)
    assert "hub_revisions.json" in str(failed.value)


def test_train_and_evaluate_load_the_commit_the_run_pinned(tmp_path, base_on_hub, api):
    """What really runs: the train step fine-tunes the pinned commit, and evaluate scores that commit as the base
    though the Hub moved on in between."""
    from support.corpora import digit_pairs
    from support.runs import write_splits
    from tasks.evaluate import step as evaluate
    from tasks.train import step as train

    repo, first = base_on_hub
    run = make_run(tmp_path / "run", base_model=repo, max_steps=2, max_tokens_per_batch=512)
    pairs = digit_pairs(300, seed=5)
    write_splits(run, tmp_path, train=pairs[:200], validation=pairs[200:250], test=pairs[250:])
    report = train.run(run)
    assert report["init_from"] == f"base {repo}@{first[:12]}"
    assert Path(report["base_model"]).name == first  # loaded from the pinned snapshot
    _change_upstream(api, repo)
    base_folder, base_label = evaluate._models(run, {"found": False}, tmp_path / "scratch")["base"]
    assert (Path(base_folder).name, base_label) == (first, f"{repo}@{first[:12]}")


def test_pods_sharing_the_model_cache_download_once_and_go_on_through_a_hub_outage(tmp_path, base_on_hub):
    """Two steps of a run in pods that mount the same model cache (MT_MODEL_CACHE, which the launcher mounts as
    HF_HUB_CACHE), each with a home of its own: the first downloads the pinned commit there, the second loads it from
    there while the Hub cannot be reached. A pod without that cache fails the same way the Hub does."""
    repo, first = base_on_hub
    run = make_run(tmp_path / "run", base_model=repo)
    code = ("import sys\nfrom tasks import config, hub_models\n"
            "print(hub_models.local_copy(config.load(sys.argv[1]), sys.argv[2])[0])")

    def pod(name: str, cache: Path, endpoint: str) -> subprocess.CompletedProcess:
        env = {**cli_env(), "HF_HOME": str(tmp_path / name), "HF_HUB_CACHE": str(cache), "HF_ENDPOINT": endpoint}
        return subprocess.run([sys.executable, "-c", code, run.run_dir, repo], env=env, capture_output=True,
                              text=True, timeout=300)

    shared = tmp_path / "shared-cache"
    validate = pod("validate-pod", shared, os.environ["HF_ENDPOINT"])
    assert validate.returncode == 0, validate.stderr[-2000:]
    folder = Path(validate.stdout.split()[-1])
    assert shared in folder.parents and folder.name == first and (folder / "model.safetensors").is_file()
    train = pod("train-pod", shared, "http://127.0.0.1:9")  # nothing listens there: the Hub is down
    assert train.returncode == 0, train.stderr[-2000:]
    assert train.stdout.split()[-1] == str(folder)
    alone = pod("evaluate-pod", tmp_path / "own-cache", "http://127.0.0.1:9")
    assert alone.returncode != 0 and "cannot find the appropriate snapshot folder" in alone.stderr


def test_a_copy_a_killed_download_left_is_not_pinned(tmp_path, base_on_hub, monkeypatch):
    """A pod killed while downloading leaves a snapshot of config and tokenizer files without the weights. With the
    Hub down, a new run must not pin that: every step would load a model without weights."""
    repo, _ = base_on_hub
    folder, _ = hub_models.local_copy(make_run(tmp_path / "killed", base_model=repo), repo)
    (Path(folder) / "model.safetensors").unlink()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    run = make_run(tmp_path / "run", base_model=repo)
    with pytest.raises(Exception) as failed:
        hub_models.local_copy(run, repo)
    assert not isinstance(failed.value, FileNotFoundError)  # the Hub's own error: no copy was fit to pin
    assert not storage.exists(run.uri(layout.HUB_REVISIONS))


@pytest.mark.parametrize("files, complete", [
    (["config.json", "model.safetensors", "source.spm"], True),
    (["config.json", "source.spm", "tokenizer_config.json"], False),  # killed before the weights
    (["model.safetensors"], False),
    (["config.json", "model-00001-of-00002.safetensors", "model.safetensors.index.json"], False),  # one shard of two
    (["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
      "model.safetensors.index.json"], True),
    (["config.json", "pytorch_model.bin"], True),
])
def test_a_copy_is_complete_with_its_config_and_every_weights_shard(files, complete):
    assert hub_models._complete(files) is complete


def test_with_the_hub_down_the_newest_complete_copy_is_pinned(tmp_path, base_on_hub, api, monkeypatch):
    """Pinned downloads record no refs/main, so a shared cache holds one snapshot per commit runs pinned."""
    repo, _ = base_on_hub
    hub_models.local_copy(make_run(tmp_path / "week-1", base_model=repo), repo)
    second = _change_upstream(api, repo)
    hub_models.local_copy(make_run(tmp_path / "week-2", base_model=repo), repo)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert hub_models.local_copy(make_run(tmp_path / "week-3", base_model=repo), repo)[1] == f"{repo}@{second[:12]}"


def test_a_model_cache_this_user_cannot_write_is_passed_over_with_a_warning(tmp_path, base_on_hub, monkeypatch,
                                                                         caplog):
    """A shared cache whose root the image's user does not own (fsGroup does not reach most ReadWriteMany shares):
    the step downloads into a cache of its own and says what to fix, instead of failing."""
    import logging
    import tempfile

    from huggingface_hub import constants

    repo, first = base_on_hub
    shared, real_access = Path(constants.HF_HUB_CACHE), os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) not in (shared, *shared.parents)
                        and real_access(path, mode))  # as root, every folder is writable
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="tasks.hub_models"):
        folder, label = hub_models.local_copy(make_run(tmp_path / "run", base_model=repo), repo)
    assert label == f"{repo}@{first[:12]}" and Path(folder).is_relative_to(tmp_path / f"hf-hub-{os.getuid()}")
    assert (Path(folder) / "model.safetensors").is_file()
    assert "cannot be written by uid" in caplog.text and "make the cache's root writable" in caplog.text
