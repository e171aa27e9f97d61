"""Run tags, and the champion lookup (`latest()` + `download()`) of the Hub and of the local registry."""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from devtools.local_hub import LocalHub
from support.runs import folder_or_s3, make_promoted_run
from tasks import layout
from tasks.io import storage
from tasks.publish import local_registry, registry
from tasks.publish import step as publish
from tasks.publish.hub_registry import HubRegistry, RetryPolicy

REPO = "mlops/digits-en-de"
TOKEN = "hf_registry_writer"


@pytest.mark.parametrize("dag_id, run_id, tag", [
    ("translation_finetune", "manual__2026-11-27T06:51:49+00:00", "run-20261127-"),
    ("translation_finetune", "scheduled__2026-01-04T00:00:00+00:00", "run-20260104-"),
    ("translation_finetune", "my-api-run", "run-20260301-"),  # no date in the id: today's
])
def test_run_tag_is_dated_and_keyed_by_the_run(dag_id, run_id, tag):
    made = registry.run_tag(dag_id, run_id, today=datetime(2026, 3, 1, tzinfo=timezone.utc))
    assert made == tag + registry.run_key(dag_id, run_id) and len(made) == len("run-20260101-") + 8
    assert registry.tag_in(f"{made}: en-de model") == made
    assert registry.run_key_of_tag(made) == registry.run_key(dag_id, run_id)


def test_run_keys_tell_runs_and_dags_apart_and_markers_lead_back_to_them():
    keys = {registry.run_key(d, r) for d in ("a", "b") for r in ("run-1", "run-2")}
    assert len(keys) == 4
    release = registry.Release(dag_id="a", run_id="run/with/slashes", run_tag="run-20260101-00000000", title="t",
                               details="scores")
    assert release.description == "scores\n\nmt-retrain-run: a/run/with/slashes\n"
    assert registry.key_of_marker(release.description) == registry.run_key("a", "run/with/slashes")
    assert registry.key_of_marker("no marker here") is None
    assert registry.tag_in("v1.0") is None


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub", tokens={TOKEN: "write"}) as running:
        yield running


def test_hub_champion_is_the_last_run_published_to_main(hub, tmp_path, tiny_model):
    hub_registry = HubRegistry(REPO, token=TOKEN, endpoint=hub.url, retry=RetryPolicy(base_delay_s=0.01))
    assert hub_registry.latest() is None  # no repo yet: the first run has no champion
    runs = ["manual__2026-11-20T06:00:00+00:00", "manual__2026-11-27T06:00:00+00:00"]
    # Each run looks its champion up first, as the DAG does: a release builds on what its gate compared against.
    first, second = (publish.run(make_promoted_run(tmp_path / "art", tiny_model, run_id=r, hub_repo_id=REPO,
                                                   champion_source=hub_registry), registry=hub_registry)
                     for r in runs)
    in_review = publish.run(make_promoted_run(tmp_path / "art", tiny_model, run_id="manual__2026-12-04T06:00:00",
                                              hub_repo_id=REPO, create_pr=True, champion_source=hub_registry),
                            registry=hub_registry)
    assert in_review["pr_url"]

    champion = hub_registry.latest()
    assert (champion.run_tag, champion.revision, champion.tagged) == (second["run_tag"], second["revision"], True)
    assert hub_registry.find_run(first["run_tag"]).revision == first["revision"]
    assert hub_registry.find_run(in_review["run_tag"]).pr_url == in_review["pr_url"]
    assert hub_registry.find_run(registry.run_tag("test_dag", "never-ran")) is None

    local = hub_registry.download(champion, tmp_path / "champion")
    assert json.loads((local / registry.RELEASE_FILE).read_text())["run_tag"] == second["run_tag"]
    assert (local / "model.safetensors").read_bytes() == hub.files(REPO, second["tag"])["model.safetensors"]


def test_hub_champion_follows_main_even_after_edits_by_hand(hub, tmp_path, tiny_model):
    hub_registry = HubRegistry(REPO, token=TOKEN, endpoint=hub.url)
    record = publish.run(make_promoted_run(tmp_path / "art", tiny_model, hub_repo_id=REPO), registry=hub_registry)
    hub_registry.api.upload_file(path_or_fileobj=b"typo fixed", path_in_repo="NOTES.md", repo_id=REPO,
                                 commit_message="Fix a typo")
    champion = hub_registry.latest()
    assert champion.run_tag == record["run_tag"]
    assert champion.revision == hub.branches(REPO)["main"] != record["revision"]  # what main serves now


@pytest.fixture(params=["folder", "s3"])
def registry_uri(request, tmp_path):
    return folder_or_s3(request, tmp_path, request.param, "models", "registry")


def test_local_registry_keeps_versions_side_by_side_with_the_same_champion_lookup(registry_uri, tmp_path,
                                                                                   tiny_model):
    local = local_registry.LocalRegistry(registry_uri, REPO)
    assert local.latest() is None
    params = {"hub_repo_id": REPO, "publish_target": "local", "registry_uri": registry_uri}

    def looked_up_and_published(run_id):
        cfg = make_promoted_run(tmp_path / "art", tiny_model, run_id=run_id, champion_source=local, **params)
        return cfg, publish.run(cfg)

    runs = [looked_up_and_published(r) for r in ("manual__2026-11-20T06:00:00+00:00",
                                                 "manual__2026-11-27T06:00:00+00:00")]
    configs, (first, second) = [cfg for cfg, _ in runs], [record for _, record in runs]
    assert (first["target"], first["revision"], first["tag"]) == ("local", first["run_tag"], first["run_tag"])

    index = storage.read_json(storage.join(registry_uri, REPO, local_registry.INDEX_FILE))
    assert [v["run_tag"] for v in index["versions"]] == [first["run_tag"], second["run_tag"]]
    assert index["current"] == second["run_tag"] == local.latest().run_tag
    versions = {o.relpath.split("/")[0] for o in storage.list_objects(storage.join(registry_uri, REPO, "versions"))}
    assert versions == {first["run_tag"], second["run_tag"]}

    Path(configs[0].uri(layout.PUBLISH)).unlink()  # a re-run of the first run that lost its record
    assert publish.run(configs[0]) == first
    assert len(storage.read_json(storage.join(registry_uri, REPO, local_registry.INDEX_FILE))["versions"]) == 2
    assert local.find_run(first["run_tag"]).url == first["url"] and local.latest().run_tag == second["run_tag"]

    files = local.download(local.latest(), tmp_path / "champion")
    assert (files / "README.md").exists() and json.loads((files / registry.RELEASE_FILE).read_text())["run_id"] \
        == configs[1].run_id


def test_local_registry_publish_is_idempotent_and_finishes_an_interrupted_one(tmp_path, tiny_model):
    uri = str(tmp_path / "registry")
    cfg = make_promoted_run(tmp_path / "art", tiny_model, hub_repo_id=REPO, publish_target="local",
                            registry_uri=uri)
    release = publish.make_release(cfg, storage.read_json(cfg.uri("gate.json")))
    local = local_registry.LocalRegistry(uri, REPO)
    folder = publish.stage(cfg, tmp_path / "stage", release)
    # Interrupted after the files were complete, before index.json named them.
    storage.upload_tree(folder, storage.join(uri, REPO, "versions", release.run_tag))
    storage.write_bytes(storage.join(uri, REPO, "versions", release.run_tag, registry.RELEASE_FILE),
                        release.manifest())
    assert local.latest() is None
    done = local.publish(folder, release)
    assert local.publish(folder, release) == done == local.latest()
    assert len(storage.read_json(storage.join(uri, REPO, local_registry.INDEX_FILE))["versions"]) == 1
    with pytest.raises(ValueError, match="no pull requests"):
        local.publish(folder, registry.Release(**{**release.__dict__, "create_pr": True}))


def test_local_registry_refuses_to_replace_a_version_the_gate_never_saw(tmp_path, tiny_model):
    uri = str(tmp_path / "registry")
    local = local_registry.LocalRegistry(uri, REPO)
    params = {"hub_repo_id": REPO, "publish_target": "local", "registry_uri": uri, "champion_source": local}
    late = make_promoted_run(tmp_path / "art", tiny_model, run_id="manual__2026-11-27T06:00:00+00:00", **params)
    other = publish.run(make_promoted_run(tmp_path / "art", tiny_model, run_id="manual__2026-11-20T06:00:00+00:00",
                                          **params))
    with pytest.raises(registry.RegistryMovedError, match=f"against no release; {REPO} now serves {other['run_tag']}"):
        publish.run(late)
    index = storage.read_json(storage.join(uri, REPO, local_registry.INDEX_FILE))
    assert index["current"] == other["run_tag"] and [v["run_tag"] for v in index["versions"]] == [other["run_tag"]]
    assert not storage.exists(storage.join(uri, REPO, "versions", registry.run_tag("test_dag", late.run_id)))


def test_of_two_local_publishes_at_once_one_is_indexed_and_the_other_finds_the_registry_moved(s3, tmp_path,
                                                                                              tiny_model):
    """Both checked the same champion (none); the second indexes its release between the first's last check and
    its write. Rewriting index.json whole dropped the second's release from the index, though its files stayed."""
    s3.create_bucket(Bucket="models")
    uri = "s3://models/registry"
    local = local_registry.LocalRegistry(uri, REPO)
    params = {"hub_repo_id": REPO, "publish_target": "local", "registry_uri": uri, "champion_source": local}
    first = make_promoted_run(tmp_path / "art", tiny_model, run_id="manual__2026-11-20T06:00:00+00:00", **params)
    second = make_promoted_run(tmp_path / "art", tiny_model, run_id="manual__2026-11-20T07:00:00+00:00", **params)
    check, landed = local_registry.LocalRegistry._check_unmoved, []

    def second_lands_meanwhile(self, release, index):
        if release.run_id == first.run_id and not landed and index.get("versions") == [] and \
                storage.exists(storage.join(uri, REPO, "versions", release.run_tag, registry.RELEASE_FILE)):
            landed.append(publish.run(second))  # after the first copied its files, before it indexes them
        return check(self, release, index)

    local_registry.LocalRegistry._check_unmoved = second_lands_meanwhile
    try:
        with pytest.raises(registry.RegistryMovedError, match=f"now serves {registry.run_tag('test_dag', second.run_id)}"):
            publish.run(first)
    finally:
        local_registry.LocalRegistry._check_unmoved = check
    index = storage.read_json(storage.join(uri, REPO, local_registry.INDEX_FILE))
    assert landed and [v["run_tag"] for v in index["versions"]] == [landed[0]["run_tag"]] == [index["current"]]


def test_a_local_index_write_whose_answer_was_lost_is_not_taken_for_the_registry_moving(tmp_path, tiny_model,
                                                                                       monkeypatch):
    """S3 applied the conditional write, the answer was lost, and the retry finds the index already naming this
    release: that is the release done, not another one landing."""
    uri = str(tmp_path / "registry")
    cfg = make_promoted_run(tmp_path / "art", tiny_model, hub_repo_id=REPO, publish_target="local", registry_uri=uri,
                            champion_source=local_registry.LocalRegistry(uri, REPO))
    update = storage.update_json

    def applied_then_retried(target, change, *args, **kwargs):
        update(target, change, *args, **kwargs)  # landed; its answer lost
        return update(target, change, *args, **kwargs)

    monkeypatch.setattr(storage, "update_json", applied_then_retried)
    record = publish.run(cfg)
    index = storage.read_json(storage.join(uri, REPO, local_registry.INDEX_FILE))
    assert [v["run_tag"] for v in index["versions"]] == [record["run_tag"]] == [index["current"]]


def test_two_attempts_of_one_run_at_once_end_with_its_one_local_release(tmp_path, tiny_model, monkeypatch):
    """Another attempt of the same run indexes its release between this attempt's look for it and its check of
    index.json: main moved by this run's own release, which is no move."""
    cfg = make_promoted_run(tmp_path / "art", tiny_model, publish_target="local",
                            registry_uri=str(tmp_path / "registry"), hub_repo_id=REPO)
    looked = local_registry.LocalRegistry.find_run
    other: dict = {}

    def find_run_while_another_attempt_publishes(self, run_tag):
        found = looked(self, run_tag)
        if "started" not in other:
            other["started"] = True
            other.update(publish.run(cfg))
            Path(cfg.uri(layout.PUBLISH)).unlink()  # this attempt has not written its record yet
        return found

    monkeypatch.setattr(local_registry.LocalRegistry, "find_run", find_run_while_another_attempt_publishes)
    record = publish.run(cfg)
    other.pop("started")
    assert record == other and record["published"]
    index = json.loads((tmp_path / "registry" / REPO / "index.json").read_text())
    assert [v["run_tag"] for v in index["versions"]] == [record["tag"]] and index["current"] == record["tag"]
