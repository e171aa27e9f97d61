"""publish against the local hub with the real huggingface_hub client: one release per run, review mode,
retries of transient failures, clear refusals, and a token that never leaks.

Injected failures carry "Retry-After: 0" (or use a 10 ms backoff), so retries cost almost nothing here.
"""

import logging
import shutil
import traceback
from pathlib import Path

import pytest
from huggingface_hub import HfApi, snapshot_download

from devtools.local_hub import LocalHub
from support.runs import make_promoted_run
from tasks import layout
from tasks.io import storage
from tasks.publish import registry, release
from tasks.publish import step as publish
from tasks.publish.hub_registry import HubAccessError, HubRegistry, RetryPolicy

REPO = "mlops/digits-en-de"
TOKEN = "hf_canary_Zq7xV2mLp9"  # recognizable: must never appear in a log, an error or a file
FAST = RetryPolicy(attempts=4, base_delay_s=0.01)


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub", tokens={TOKEN: "write", "hf_reader": "read"}) as running:
        yield running


@pytest.fixture
def run_config(tmp_path, tiny_model):
    return make_promoted_run(tmp_path / "artifacts", tiny_model, hub_repo_id=REPO)


def hub_registry(hub, token=TOKEN):
    return HubRegistry(REPO, token=token, endpoint=hub.url, retry=FAST)


def publish_again(cfg, hub, token=TOKEN):
    """A re-run of the step for the same DAG run whose publish.json is gone (cleared state, lost disk)."""
    Path(cfg.uri(layout.PUBLISH)).unlink(missing_ok=True)
    return publish.run(cfg, registry=hub_registry(hub, token))


def posts(hub):
    return [r["endpoint"] for r in hub.requests if r["method"] in ("POST", "PUT", "DELETE")]


def statuses(hub, endpoint):
    return [r["status"] for r in hub.requests if r["endpoint"] == endpoint]


def test_first_publish_is_one_tagged_commit_with_model_card_and_evaluation(hub, run_config):
    record = publish.run(run_config, registry=hub_registry(hub))

    head, initial = hub.commits(REPO)
    tag = registry.run_tag(run_config.dag_id, run_config.run_id)
    assert tag.startswith("run-20261127-")
    assert record == {"published": True, "target": "hub", "repo_id": REPO, "run_tag": tag,
                      "revision": head["oid"], "url": f"{hub.url}/{REPO}/commit/{head['oid']}",
                      "endpoint": hub.url, "pr_url": None, "commit_url": f"{hub.url}/{REPO}/commit/{head['oid']}",
                      "tag": tag}
    assert hub.tags(REPO)[tag]["target"] == head["oid"]
    assert head["title"].startswith(f"{tag}: en-de model from run {run_config.run_id}, BLEU 61.7")
    assert f"mt-retrain-run: test_dag/{run_config.run_id}" in head["message"].splitlines()
    assert {"model.safetensors", "config.json", "generation_config.json", "source.spm", "target.spm", "README.md",
            "train_report.json", "eval/scores.json", "eval/gate.json", "provenance/pull_manifest.json",
            "provenance/validation_report.json", registry.RELEASE_FILE} <= set(head["files"])
    assert b'"run_tag": "' + tag.encode() in head["files"][registry.RELEASE_FILE]
    # The client's protocol, once: create the repo, check the card's metadata, upload, commit, tag.
    assert posts(hub) == ["create_repo", "validate_yaml", "preupload", "commit", "create_tag"]
    assert publish.result(run_config) == record


def test_a_rerun_of_the_same_run_makes_no_second_commit(hub, run_config):
    first = publish.run(run_config, registry=hub_registry(hub))
    assert publish.run(run_config, registry=hub_registry(hub)) == first  # publish.json short-cuts a retry
    hub.clear_requests()
    again = publish_again(run_config, hub)
    assert again == first
    assert len(hub.commits(REPO)) == 2 and list(hub.tags(REPO)) == [first["tag"]]
    assert posts(hub) == ["create_repo"]  # found by its tag: nothing uploaded, nothing committed


def test_a_commit_whose_answer_was_lost_is_not_made_twice(hub, run_config, caplog):
    # The Hub applies the commit, then a gateway answers 504: the retry must find the commit, not repeat it.
    hub.fail_next("commit", status=504, after_serving=True, headers={"Retry-After": "0"})
    record = publish.run(run_config, registry=hub_registry(hub))
    assert posts(hub) == ["create_repo", "validate_yaml", "preupload", "commit", "create_tag"]  # one upload
    assert statuses(hub, "commit") == [504]
    head, _ = hub.commits(REPO)
    assert record["revision"] == head["oid"] and hub.tags(REPO)[record["tag"]]["target"] == head["oid"]
    assert "on commit: HTTP 504; retry 1/3 in 0.0 s (Retry-After)" in caplog.text


def test_a_run_committed_but_never_tagged_gets_its_tag_on_rerun(hub, run_config):
    hub.fail_next("create_tag", status=500, times=FAST.attempts)
    with pytest.raises(Exception) as err:
        publish.run(run_config, registry=hub_registry(hub))
    assert err.value.response.status_code == 500
    assert statuses(hub, "create_tag") == [500] * FAST.attempts
    assert hub.tags(REPO) == {} and publish.result(run_config) is None
    committed, _ = hub.commits(REPO)

    hub.clear_requests()
    record = publish_again(run_config, hub)  # found by the marker in main's history
    assert posts(hub) == ["create_repo", "create_tag"]
    assert len(hub.commits(REPO)) == 2
    assert hub.tags(REPO)[record["tag"]]["target"] == committed["oid"] == record["revision"]


def test_review_mode_opens_one_pull_request_and_leaves_main_alone(hub, tmp_path, tiny_model, caplog):
    caplog.set_level(logging.INFO)
    cfg = make_promoted_run(tmp_path / "artifacts", tiny_model, hub_repo_id=REPO, create_pr=True)
    record = publish.run(cfg, registry=hub_registry(hub))

    (pr,) = hub.pull_requests(REPO)
    pr_url = f"{hub.url}/{REPO}/discussions/{pr['num']}"
    assert (record["pr_url"], record["url"], record["revision"]) == (pr_url, pr_url, pr["head"])
    assert record["tag"] is None and record["commit_url"] is None
    assert pr["title"].startswith(record["run_tag"]) and pr["status"] == "open"
    assert f"mt-retrain-run: test_dag/{cfg.run_id}" in pr["description"]
    assert [c["title"] for c in hub.commits(REPO)] == ["initial commit"]  # main unchanged
    assert hub.tags(REPO) == {}  # a revision in review is no release to pin
    assert "README.md" in hub.files(REPO, pr["ref"])
    assert f"waits for review in pull request {pr_url}" in caplog.text

    again = publish_again(cfg, hub)
    assert again == record and len(hub.pull_requests(REPO)) == 1


def test_review_mode_opens_one_pull_request_even_when_the_answer_was_lost(hub, tmp_path, tiny_model):
    cfg = make_promoted_run(tmp_path / "artifacts", tiny_model, hub_repo_id=REPO, create_pr=True)
    hub.fail_next("commit", status=502, after_serving=True, headers={"Retry-After": "0"})
    record = publish.run(cfg, registry=hub_registry(hub))
    (pr,) = hub.pull_requests(REPO)
    assert record["pr_url"] == f"{hub.url}/{REPO}/discussions/{pr['num']}" and statuses(hub, "commit") == [502]


def test_5xx_twice_then_success(hub, run_config, caplog):
    hub.fail_next("commit", status=503, times=2, headers={"Retry-After": "0"})
    record = publish.run(run_config, registry=hub_registry(hub))
    assert statuses(hub, "commit") == [503, 503, 200]
    assert [c["oid"] for c in hub.commits(REPO)][:1] == [record["revision"]] and len(hub.commits(REPO)) == 2
    assert caplog.text.count("on commit: HTTP 503; retry") == 2


def test_429_waits_as_long_as_retry_after_says(hub, run_config, caplog):
    hub.fail_next("create_repo", status=429, headers={"Retry-After": "1"})
    record = publish.run(run_config, registry=hub_registry(hub))
    assert statuses(hub, "create_repo") == [429, 200]
    assert f"{REPO} on create_repo: HTTP 429; retry 1/3 in 1.0 s (Retry-After)" in caplog.text
    assert hub.tags(REPO)[record["tag"]]


def test_a_connection_reset_is_retried(hub, run_config, caplog):
    hub.fail_next("create_tag", reset=True)
    record = publish.run(run_config, registry=hub_registry(hub))
    assert statuses(hub, "create_tag") == [0, 200]
    assert "on create_tag: RemoteProtocolError; retry 1/3" in caplog.text
    assert hub.tags(REPO)[record["tag"]]


def test_a_long_retry_after_gives_up_instead_of_blocking_the_worker(hub, run_config):
    hub.fail_next("create_repo", status=429, headers={"Retry-After": "3600"})
    with pytest.raises(Exception) as err:
        publish.run(run_config, registry=hub_registry(hub))
    assert err.value.response.status_code == 429
    assert statuses(hub, "create_repo") == [429]


def _all_text(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("token, role", [("hf_canary_WRONG_4f1d", None), ("hf_reader", "read")])
def test_401_and_403_fail_at_once_naming_the_repo_never_the_token(hub, run_config, tmp_path, caplog, capsys,
                                                                  token, role):
    caplog.set_level(logging.DEBUG)
    hub_registry(hub).api.create_repo(REPO)  # so that a read token gets past create_repo(exist_ok=True)
    hub.clear_requests()
    with pytest.raises(HubAccessError) as err:
        publish.run(run_config, registry=hub_registry(hub, token))
    message = str(err.value)
    assert f"the Hub token lacks write access to {REPO} at {hub.url}" in message
    assert "Use a token with write permission" in message
    assert "HTTP 401" in message if role is None else "HTTP 403 on commit" in message
    assert "commit" not in posts(hub) and hub.tags(REPO) == {}
    assert [r for r in hub.requests if r["status"] in (401, 403)][-1]["injected"] is False
    assert len([r for r in hub.requests if r["status"] in (401, 403)]) <= 2  # no retries
    shown = "".join(traceback.format_exception(err.value)) + repr(err.value) + caplog.text
    out = capsys.readouterr()
    for secret in (token, TOKEN):
        assert secret not in shown + out.out + out.err
        assert secret.encode() not in _all_text(tmp_path)


def test_no_token_at_all_says_so(hub, run_config):
    with pytest.raises(HubAccessError, match=f"no Hub token was given, so the request has no write access to {REPO}"):
        publish.run(run_config, registry=HubRegistry(REPO, endpoint=hub.url, retry=FAST))


def test_the_token_is_in_no_log_file_or_record_of_a_successful_publish(hub, run_config, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    hub.fail_next("commit", status=503, headers={"Retry-After": "0"})
    record = publish.run(run_config, token=TOKEN, endpoint=hub.url)  # the way the DAG calls it
    out = capsys.readouterr()
    assert record["published"] and TOKEN not in str(record)
    assert TOKEN not in caplog.text + out.out + out.err
    assert TOKEN.encode() not in _all_text(tmp_path)


def test_a_refused_gate_sends_nothing(hub, tmp_path, tiny_model):
    cfg = make_promoted_run(tmp_path / "artifacts", tiny_model, hub_repo_id=REPO, promote=False)
    outcome = publish.run(cfg, registry=hub_registry(hub))
    assert outcome["published"] is False and outcome["reason"].startswith("gate refused: BLEU gain over base +0.00 <")
    assert hub.requests == [] and publish.result(cfg) is None


def test_publish_reads_the_release_gates_verdict_itself(hub, tmp_path, tiny_model):
    """This language passed its gate but another one was refused: the release gate held the run back. Publish,
    run by hand all the same (a cleared task), must not release it, nor without a verdict at all."""
    cfg = make_promoted_run(tmp_path / "artifacts", tiny_model, hub_repo_id=REPO)
    other = make_promoted_run(tmp_path / "artifacts-nl", tiny_model, hub_repo_id=REPO, promote=False,
                              run_id=cfg.run_id, target_lang="nl")
    release.decide([cfg, other])
    outcome = publish.run(cfg, registry=hub_registry(hub))
    assert outcome["published"] is False
    assert outcome["reason"].startswith("not released: not every language passed its gate: en-nl: BLEU gain")
    Path(cfg.uri(layout.RELEASE_GATE)).unlink()
    assert publish.run(cfg, registry=hub_registry(hub)) == {"published": False,
                                                            "reason": "the release gate did not run"}
    assert hub.requests == [] and publish.result(cfg) is None


def test_a_language_that_pulled_new_data_but_has_no_gate_decision_holds_the_release_back(hub, tmp_path,
                                                                                          tiny_model):
    """A language whose validate failed and was marked success by hand (its later steps then ran on a batch judged
    bad, or not at all) has no decision: the release gate must not take it for one that had nothing new."""
    cfg = make_promoted_run(tmp_path / "artifacts", tiny_model, hub_repo_id=REPO)
    other = make_promoted_run(tmp_path / "artifacts-nl", tiny_model, hub_repo_id=REPO, run_id=cfg.run_id,
                              target_lang="nl")
    Path(other.uri(layout.GATE)).unlink()
    outcome = release.decide([cfg, other])
    assert outcome["released"] is False and outcome["message"] == (
        "not every language passed its gate: en-nl: it pulled new data but did not reach its gate (a failed step "
        "marked success?)")
    assert publish.run(cfg, registry=hub_registry(hub))["published"] is False and hub.requests == []
    # A language whose pull found nothing new skipped its steps: the others are released.
    manifest = storage.read_json(other.uri(layout.PULL_MANIFEST))
    storage.write_json(other.uri(layout.PULL_MANIFEST), {**manifest, "nothing_new": True})
    assert release.decide([cfg, other]) == {"released": True, "message": "released: en-de", "refused": {},
                                            "decisions": {"en-de": "promote"}}


def test_no_gate_decision_means_no_publish(hub, run_config):
    Path(run_config.uri("gate.json")).unlink()
    outcome = publish.run(run_config, registry=hub_registry(hub))
    assert outcome == {"published": False, "reason": "no gate decision for this pair: nothing new was pulled, "
                                                     "or its run ended before the gate"}
    assert hub.requests == []


def test_the_hub_refuses_a_card_with_a_broken_model_index_and_nothing_is_committed(hub, tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: mit\nmodel-index:\n- name: x\n  results:\n  - task: {}\n---\n")
    release = registry.Release(dag_id="d", run_id="r", run_tag=registry.run_tag("d", "r"), title="t")
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        hub_registry(hub).publish(folder, release)
    assert statuses(hub, "validate_yaml") == [400] and "commit" not in posts(hub)


# --- a release replaces only the model its gate compared against ------------------------------------------
RUNS = ["manual__2026-11-20T06:00:00+00:00", "manual__2026-11-27T06:00:00+00:00", "manual__2026-12-04T06:00:00+00:00"]


def looked_up(hub, tmp_path, tiny_model, run_id, **params):
    """A promoted run whose champion step looked at the Hub now, as the DAG's champion task does."""
    return make_promoted_run(tmp_path / "art", tiny_model, run_id=run_id, hub_repo_id=REPO,
                             champion_source=hub_registry(hub), **params)


@pytest.mark.parametrize("create_pr", [False, True])
def test_a_release_that_landed_after_the_champion_lookup_is_never_replaced(hub, tmp_path, tiny_model, create_pr):
    first = publish.run(looked_up(hub, tmp_path, tiny_model, RUNS[0]), registry=hub_registry(hub))
    late = looked_up(hub, tmp_path, tiny_model, RUNS[1], create_pr=create_pr)  # its gate saw `first`
    meanwhile = publish.run(looked_up(hub, tmp_path, tiny_model, RUNS[2]), registry=hub_registry(hub))
    hub.clear_requests()

    with pytest.raises(registry.RegistryMovedError) as err:
        publish.run(late, registry=hub_registry(hub))
    message = str(err.value)
    assert f"The gate compared the candidate against {first['revision']}" in message
    assert f"now serves {meanwhile['revision']} (release {meanwhile['run_tag']})" in message
    assert "Nothing was published or replaced" in message
    assert hub.branches(REPO)["main"] == meanwhile["revision"] and hub.pull_requests(REPO) == []
    assert "commit" not in posts(hub) and publish.result(late) is None  # refused before uploading anything


def test_a_commit_landing_between_the_check_and_the_commit_is_refused_by_the_hub(hub, tmp_path, tiny_model):
    first = publish.run(looked_up(hub, tmp_path, tiny_model, RUNS[0]), registry=hub_registry(hub))
    late = looked_up(hub, tmp_path, tiny_model, RUNS[1])
    other_client = HfApi(endpoint=hub.url, token=TOKEN)
    hub.before_next("commit", lambda: other_client.upload_file(
        path_or_fileobj=b"edited by hand", path_in_repo="model.safetensors", repo_id=REPO,
        commit_message="Replace the weights by hand"))

    with pytest.raises(registry.RegistryMovedError) as err:
        publish.run(late, registry=hub_registry(hub))
    edit = hub.commits(REPO)[0]
    assert edit["title"] == "Replace the weights by hand" and hub.branches(REPO)["main"] == edit["oid"]
    # The first release, then this run's commit (logged on arrival, refused by the Hub itself because its
    # parent was no longer main), then the hand edit served while that commit waited.
    assert statuses(hub, "commit") == [200, 412, 200]
    assert f"against {first['revision']}; {REPO} now serves {edit['oid']} (release {first['run_tag']})" \
        in str(err.value)
    assert not any(c["title"].startswith(registry.run_tag("test_dag", RUNS[1])) for c in hub.commits(REPO))


def test_a_first_release_is_refused_when_another_landed_since_the_lookup(hub, tmp_path, tiny_model):
    late = looked_up(hub, tmp_path, tiny_model, RUNS[1])  # nothing published yet: no champion
    other = publish.run(looked_up(hub, tmp_path, tiny_model, RUNS[0]), registry=hub_registry(hub))
    with pytest.raises(registry.RegistryMovedError, match=f"against no release; {REPO} now serves "
                       f"{other['revision']} \\(release {other['run_tag']}\\)"):
        publish.run(late, registry=hub_registry(hub))
    assert hub.branches(REPO)["main"] == other["revision"]


def test_a_published_run_still_finds_its_release_after_main_moved_on(hub, tmp_path, tiny_model):
    cfg = looked_up(hub, tmp_path, tiny_model, RUNS[0])
    first = publish.run(cfg, registry=hub_registry(hub))
    publish.run(looked_up(hub, tmp_path, tiny_model, RUNS[1]), registry=hub_registry(hub))
    assert publish_again(cfg, hub) == first  # its own release is found, not taken for a move


# --- a release holds exactly its own files --------------------------------------------------------------------
def sharded_and_changed(tiny_model, folder):
    """tiny_model's files with other weights, saved in shards (a bigger model, or another max_shard_size)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.5)
    model.save_pretrained(folder, max_shard_size="100KB")
    return folder


def same_weights(folder, other) -> bool:
    import torch
    from transformers import AutoModelForSeq2SeqLM

    expected = AutoModelForSeq2SeqLM.from_pretrained(other).state_dict()
    return all(torch.equal(weights, expected[name])
               for name, weights in AutoModelForSeq2SeqLM.from_pretrained(folder).state_dict().items())


@pytest.mark.parametrize("create_pr", [False, True])
def test_a_release_deletes_the_files_of_the_previous_one_that_it_lacks(hub, tmp_path, tiny_model, create_pr):
    first = looked_up(hub, tmp_path, tiny_model, RUNS[0])
    storage.write_text(first.uri(layout.REPORT), "# the first run's report\n")
    publish.run(first, registry=hub_registry(hub))
    HfApi(endpoint=hub.url, token=TOKEN).upload_file(  # as the Hub writes one into every new repository
        path_or_fileobj=b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n", path_in_repo=".gitattributes",
        repo_id=REPO, commit_message="Add .gitattributes")
    second_model = sharded_and_changed(tiny_model, tmp_path / "sharded")
    second = publish.run(looked_up(hub, tmp_path, second_model, RUNS[1], create_pr=create_pr),
                         registry=hub_registry(hub))  # no report.md this time

    served = hub.files(REPO, second["revision"])  # main, or the pull request's head
    assert "model.safetensors" not in served and "eval/report.md" not in served
    assert {p.name for p in second_model.iterdir()} <= set(served) and ".gitattributes" in served
    assert (hub.branches(REPO)["main"] == second["revision"]) is not create_pr
    local = snapshot_download(REPO, revision=second["revision"], endpoint=hub.url, token=TOKEN,
                              local_dir=str(tmp_path / "served"))
    assert same_weights(local, second_model)  # not the first release's model.safetensors


def test_a_model_uploaded_by_hand_is_compared_before_a_release_replaces_it(hub, tmp_path, tiny_model):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(REPO)
    api.upload_folder(repo_id=REPO, folder_path=str(tiny_model), commit_message="production model, by hand")
    by_hand = hub.branches(REPO)["main"]
    cfg = looked_up(hub, tmp_path, tiny_model, RUNS[0])
    champion_check = next(c for c in storage.read_json(cfg.uri(layout.GATE))["checks"]
                          if c["name"] == "champion_regression")
    assert champion_check["value"] is not None and f"{REPO}@{by_hand} (not released" in champion_check["reason"]
    published = publish.run(cfg, registry=hub_registry(hub))
    assert hub.commits(REPO)[1]["oid"] == by_hand and hub.branches(REPO)["main"] == published["revision"]


def test_a_first_release_is_refused_when_a_model_was_uploaded_by_hand_since_the_lookup(hub, tmp_path, tiny_model):
    late = looked_up(hub, tmp_path, tiny_model, RUNS[0])  # the repository did not exist: no champion
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(REPO)
    api.upload_folder(repo_id=REPO, folder_path=str(tiny_model), commit_message="production model, by hand")
    with pytest.raises(registry.RegistryMovedError, match="against no release"):
        publish.run(late, registry=hub_registry(hub))
    assert hub.commits(REPO)[0]["title"] == "production model, by hand"


def test_the_staged_copy_is_what_must_be_the_evaluated_model(run_config, tmp_path, monkeypatch):
    copytree = shutil.copytree

    def copy_then_change(source, target):  # the model changed while it was copied: the copy is what goes up
        copytree(source, target)
        (Path(target) / "config.json").write_text((Path(target) / "config.json").read_text() + " ")

    monkeypatch.setattr(publish.shutil, "copytree", copy_then_change)
    release_ = publish.make_release(run_config, storage.read_json(run_config.uri(layout.GATE)))
    with pytest.raises(publish.UnverifiedModel, match="not the model that was evaluated"):
        publish.stage(run_config, tmp_path / "stage", release_)


def test_two_attempts_of_one_run_at_once_end_with_its_one_release(hub, tmp_path, tiny_model):
    """A worker taken for lost while its publish still runs: Airflow starts another attempt of the same run. The
    attempt whose commit the Hub refuses (its parent is no longer main) finds main moved by its own run's release:
    that is its release, not a move."""
    cfg = looked_up(hub, tmp_path, tiny_model, RUNS[0])
    other = {}
    hub.before_next("commit", lambda: other.update(publish.run(cfg, registry=hub_registry(hub))))

    record = publish_again(cfg, hub)
    assert record == other and record["published"] and record["tag"] == registry.run_tag("test_dag", RUNS[0])
    assert statuses(hub, "commit") == [412, 200]  # this attempt's, logged on arrival, then the other's
    assert [c["title"].split(":")[0] for c in hub.commits(REPO)[:-1]] == [record["tag"]]
    assert hub.tags(REPO)[record["tag"]]["target"] == hub.branches(REPO)["main"] == record["revision"]
