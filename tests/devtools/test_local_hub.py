"""The local hub driven by the real huggingface_hub client: publishing, refs, pull requests, downloads,
retries and auth.

Injected failures use "Retry-After: 0": the client waits Retry-After + 1 seconds before retrying.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from devtools.local_hub import LocalHub

REPO = "local-user/opus-mt-en-de-ft"
REPO_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = bytes(range(256)) * 64 + b"\x00\xff" * 100  # binary content, NUL bytes included
CONFIG = {"architectures": ["MarianMTModel"], "vocab_size": 58101}


def make_model_folder(path: Path, config: dict = CONFIG) -> dict[str, bytes]:
    """Write a small model folder; returns its files as {path in repo: bytes}."""
    card_data = ModelCardData(language=["en", "de"], license="apache-2.0", library_name="transformers",
                              pipeline_tag="translation", tags=["translation", "marian"])
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n# opus-mt-en-de-ft\n\nFine-tuned in the offline demo.\n")
    (path / "tokenizer").mkdir(parents=True, exist_ok=True)
    card.save(path / "README.md")
    (path / "model.safetensors").write_bytes(WEIGHTS)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "tokenizer" / "vocab.json").write_text(json.dumps({"<pad>": 0, "hallo": 1}))
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def published(api, tmp_path):
    """REPO with one published commit; returns (CommitInfo, files)."""
    api.create_repo(REPO)
    files = make_model_folder(tmp_path / "model")
    info = api.upload_folder(repo_id=REPO, folder_path=tmp_path / "model", commit_message="Publish fine-tuned model",
                             commit_description="BLEU 31.2 on the held-out set")
    return info, files


def statuses(hub, endpoint, method=None):
    return [r["status"] for r in hub.requests if r["endpoint"] == endpoint and method in (None, r["method"])]


def test_create_repo_twice_with_exist_ok(hub, api):
    first = api.create_repo(REPO, private=True, exist_ok=True)
    second = api.create_repo(REPO, private=True, exist_ok=True)
    assert first == second == f"{hub.url}/{REPO}"
    assert second.repo_id == REPO
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO)
    assert err.value.response.status_code == 409
    assert statuses(hub, "create_repo") == [200, 409, 409]
    assert api.model_info(REPO).private is True


def test_upload_folder_stores_exactly_the_uploaded_files(hub, api, published):
    info, files = published
    head = hub.commits(REPO)[0]
    assert head["oid"] == info.oid
    assert (head["title"], head["message"]) == ("Publish fine-tuned model", "BLEU 31.2 on the held-out set")
    assert head["files"] == files  # same paths, identical bytes
    # The client's protocol: README metadata check, upload modes, then one NDJSON commit.
    assert [r["endpoint"] for r in hub.requests if r["method"] == "POST"] == [
        "create_repo", "validate_yaml", "preupload", "commit"]
    commit = next(r for r in hub.requests if r["endpoint"] == "commit")
    assert commit["json"][0] == {"key": "header", "value": {"summary": "Publish fine-tuned model",
                                                            "description": "BLEU 31.2 on the held-out set"}}

    model = api.model_info(REPO, revision=info.oid)
    assert model.sha == info.oid
    assert sorted(s.rfilename for s in model.siblings) == sorted(files)
    assert model.card_data.license == "apache-2.0"
    assert model.pipeline_tag == "translation" and "marian" in model.tags
    assert sorted(api.list_repo_files(REPO)) == sorted(files)


def test_create_tag_and_list_repo_refs(hub, api, published):
    info, _ = published
    api.create_tag(REPO, tag="v1.0", revision=info.oid, tag_message="first release")
    refs = api.list_repo_refs(REPO)
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1.0", "refs/tags/v1.0", info.oid)]
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", info.oid)]
    assert hub.tags(REPO)["v1.0"]["message"] == "first release"
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(REPO, tag="v1.0")
    assert err.value.response.status_code == 409
    api.create_tag(REPO, tag="v1.0", exist_ok=True)


def test_list_repo_commits_shows_messages(api, published):
    info, _ = published
    commits = api.list_repo_commits(REPO)
    assert [(c.commit_id, c.title, c.message) for c in commits[:1]] == [
        (info.oid, "Publish fine-tuned model", "BLEU 31.2 on the held-out set")]
    assert commits[-1].title == "initial commit"
    assert commits[0].authors == ["local-user"]


def test_upload_folder_with_create_pr_leaves_main_unchanged(hub, api, published, tmp_path):
    info, files = published
    hub.clear_requests()
    changed = make_model_folder(tmp_path / "model", config={**CONFIG, "num_beams": 5})
    pr = api.upload_folder(repo_id=REPO, folder_path=tmp_path / "model", commit_message="Retrain with beam search",
                           create_pr=True)
    assert pr.pr_url == f"{hub.url}/{REPO}/discussions/1"
    assert (pr.pr_revision, pr.pr_num) == ("refs/pr/1", 1)
    assert hub.branches(REPO) == {"main": info.oid}
    assert hub.files(REPO) == files
    assert hub.files(REPO, "refs/pr/1") == changed
    assert [c["oid"] for c in hub.commits(REPO, "refs/pr/1")[:2]] == [pr.oid, info.oid]
    assert [(p["num"], p["status"], p["base"], p["head"]) for p in hub.pull_requests(REPO)] == [
        (1, "open", "main", pr.oid)]
    refs = api.list_repo_refs(REPO, include_pull_requests=True)
    assert [(r.ref, r.target_commit) for r in refs.pull_requests] == [("refs/pr/1", pr.oid)]
    assert [(d.num, d.is_pull_request) for d in api.get_repo_discussions(REPO)] == [(1, True)]
    # With hf_xet installed, upload_folder opens the PR first, then commits to its ref.
    assert [(r["endpoint"], r["path"]) for r in hub.requests if r["method"] == "POST"][-2:] == [
        ("create_discussion", f"/api/models/{REPO}/discussions"),
        ("commit", f"/api/models/{REPO}/commit/refs/pr/1")]


def test_create_commit_with_create_pr(hub, api, published):
    info, _ = published
    pr = api.create_commit(REPO, [CommitOperationAdd("eval.json", b'{"bleu": 31.2}')],
                           commit_message="Add eval results", create_pr=True)
    assert pr.pr_revision == "refs/pr/1"
    commit = [r for r in hub.requests if r["endpoint"] == "commit"][-1]
    assert (commit["path"], commit["query"]) == (f"/api/models/{REPO}/commit/main", {"create_pr": ["1"]})
    assert hub.branches(REPO) == {"main": info.oid}
    assert hub.files(REPO, "refs/pr/1")["eval.json"] == b'{"bleu": 31.2}'


def test_a_commit_on_a_parent_that_is_no_longer_main_is_refused_as_the_hub_does(hub, api, published):
    info, _ = published
    moved = api.create_commit(REPO, [CommitOperationAdd("NOTES.md", b"someone else")], commit_message="Elsewhere")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(REPO, [CommitOperationAdd("model.safetensors", b"new")], commit_message="Replace",
                          parent_commit=info.oid)
    assert err.value.response.status_code == 412
    assert "A commit has happened since. Please refresh and try again." in str(err.value)
    header = [r for r in hub.requests if r["endpoint"] == "commit"][-1]["json"][0]["value"]
    assert header["parentCommit"] == info.oid  # what the client sends, and the hub checks
    assert hub.branches(REPO) == {"main": moved.oid}
    on_head = api.create_commit(REPO, [CommitOperationAdd("model.safetensors", b"new")], commit_message="Replace",
                                parent_commit=moved.oid)
    assert hub.branches(REPO) == {"main": on_head.oid}


def test_a_pull_request_with_a_parent_commit_starts_from_it(hub, api, published):
    info, files = published
    api.create_commit(REPO, [CommitOperationAdd("NOTES.md", b"someone else")], commit_message="Elsewhere")
    api.create_commit(REPO, [CommitOperationAdd("eval.json", b"{}")], commit_message="Review this", create_pr=True,
                      parent_commit=info.oid)
    (pr,) = hub.pull_requests(REPO)
    assert [c["oid"] for c in hub.commits(REPO, pr["ref"])][1] == info.oid
    assert set(hub.files(REPO, pr["ref"])) == set(files) | {"eval.json"}  # no NOTES.md: main's later commit


def test_snapshot_download_at_a_tag(hub, api, published, tmp_path):
    info, files = published
    api.create_tag(REPO, tag="v1.0")
    api.upload_file(path_or_fileobj=b"later", path_in_repo="NOTES.md", repo_id=REPO, commit_message="Add notes")
    local = Path(api.snapshot_download(REPO, revision="v1.0", cache_dir=tmp_path / "cache"))
    assert local.name == info.oid
    assert {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()} == files
    one = api.hf_hub_download(REPO, "tokenizer/vocab.json", revision="v1.0", cache_dir=tmp_path / "other")
    assert Path(one).read_bytes() == files["tokenizer/vocab.json"]


def test_503_twice_then_success_is_retried_by_upload_folder(hub, api, published, tmp_path):
    # upload_folder (hf_xet installed) sends its commit through http_backoff; create_commit does not.
    hub.fail_next("commit", status=503, times=2, headers={"Retry-After": "0"})
    make_model_folder(tmp_path / "model", config={**CONFIG, "num_beams": 4})
    info = api.upload_folder(repo_id=REPO, folder_path=tmp_path / "model", commit_message="Retry me")
    assert statuses(hub, "commit") == [200, 503, 503, 200]
    assert [c["title"] for c in hub.commits(REPO)] == ["Retry me", "Publish fine-tuned model", "initial commit"]
    assert hub.commits(REPO)[0]["oid"] == info.oid


def test_create_commit_does_not_retry_a_503(hub, api, published):
    hub.fail_next("commit", status=503, headers={"Retry-After": "0"})
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(REPO, [CommitOperationAdd("x.txt", b"x")], commit_message="Not retried")
    assert err.value.response.status_code == 503
    assert statuses(hub, "commit") == [200, 503]
    assert len(hub.commits(REPO)) == 2


def test_429_with_retry_after_is_retried_by_listings(hub, api, published):
    hub.fail_next("commits", status=429, headers={"Retry-After": "0"})
    assert api.list_repo_commits(REPO)[0].title == "Publish fine-tuned model"
    assert statuses(hub, "commits") == [429, 200]


def test_downloads_retry_5xx_on_metadata_but_not_on_content(hub, api, published, tmp_path):
    _, files = published
    hub.fail_next("resolve", status=503, times=2, headers={"Retry-After": "0"}, method="HEAD")
    path = api.hf_hub_download(REPO, "config.json", cache_dir=tmp_path / "a")
    assert Path(path).read_bytes() == files["config.json"]
    assert statuses(hub, "resolve", "HEAD") == [503, 503, 200]
    hub.fail_next("resolve", status=503, method="GET")
    with pytest.raises(HfHubHTTPError) as err:
        api.hf_hub_download(REPO, "README.md", cache_dir=tmp_path / "b")
    assert err.value.response.status_code == 503


def test_missing_or_invalid_token_gets_401(hub, published):
    for token in ("hf_wrong", False):
        with pytest.raises(HfHubHTTPError) as err:
            HfApi(endpoint=hub.url, token=token).model_info(REPO)
        assert err.value.response.status_code == 401
        assert "error" in err.value.response.json()
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        HfApi(endpoint=hub.url, token="hf_wrong").whoami()
    hub.fail_next("repo_info", status=401, body={"error": "Token expired"})
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hub.url, token="hf_writer").model_info(REPO)
    assert err.value.server_message == "Token expired"


def test_unknown_repo_and_revision_map_to_client_errors(api, published):
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("local-user/nope")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_commits(REPO, revision="v9")


def test_read_only_token_gets_403_on_upload(hub, published, tmp_path):
    info, _ = published
    reader = HfApi(endpoint=hub.url, token="hf_reader")
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    assert reader.model_info(REPO).sha == info.oid
    (tmp_path / "sneaky").mkdir()
    (tmp_path / "sneaky" / "x.txt").write_text("x")
    with pytest.raises(HfHubHTTPError) as err:
        reader.upload_folder(repo_id=REPO, folder_path=tmp_path / "sneaky", commit_message="Sneaky")
    assert err.value.response.status_code == 403
    assert [(r["endpoint"], r["role"]) for r in hub.requests if r["status"] == 403] == [("preupload", "read")]
    assert len(hub.commits(REPO)) == 2


def test_dataset_repo_round_trip(hub, api, tmp_path):
    repo = "local-user/wmt-sample"
    api.create_repo(repo, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"en,de\nhello,hallo\n", path_in_repo="train.csv", repo_id=repo,
                    repo_type="dataset", commit_message="Add data")
    path = api.hf_hub_download(repo, "train.csv", repo_type="dataset", cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == b"en,de\nhello,hallo\n"
    assert api.dataset_info(repo).sha == hub.branches(repo, repo_type="dataset")["main"]


def test_state_survives_a_restart(hub, published):
    info, files = published
    with LocalHub(hub.root, tokens={"hf_other": "write"}) as again:
        assert HfApi(endpoint=again.url, token="hf_other").model_info(REPO).sha == info.oid
        assert again.files(REPO) == files


def test_cli_prints_url_then_serves_until_sigterm(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.local_hub", "--root", str(tmp_path / "cli"), "--port", "0",
         "--token", "hf_cli"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        api = HfApi(endpoint=url, token="hf_cli")
        assert api.whoami()["name"] == "local-user"
        assert api.create_repo("cli-repo").repo_id == "local-user/cli-repo"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0, proc.stderr.read()


def test_a_failure_after_serving_keeps_the_change_and_loses_the_answer(hub, api, published):
    hub.fail_next("create_tag", status=504, after_serving=True)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(REPO, tag="v2")
    assert err.value.response.status_code == 504
    assert "v2" in hub.tags(REPO)  # the Hub did it; only the client does not know
    assert [(r["status"], r["injected"]) for r in hub.requests if r["endpoint"] == "create_tag"] == [(504, True)]


def test_a_reset_drops_the_connection_without_an_answer(hub, api, published):
    from huggingface_hub.utils import httpx

    hub.fail_next("refs", reset=True)
    with pytest.raises(httpx.RemoteProtocolError):
        api.list_repo_refs(REPO)
    assert [r["status"] for r in hub.requests if r["endpoint"] == "refs"] == [0]
    assert [t.name for t in api.list_repo_refs(REPO).tags] == []  # the next request is served


def test_validate_yaml_refuses_a_model_index_the_client_cannot_read(hub, api, tmp_path):
    api.create_repo(REPO)
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "README.md").write_text(
        "---\nmodel-index:\n- name: m\n  results:\n  - task: {type: translation}\n    metrics: []\n---\n")
    with pytest.raises(ValueError, match="Invalid model-index in README.md metadata"):
        api.upload_folder(repo_id=REPO, folder_path=tmp_path / "card", commit_message="Broken card")
    assert len(hub.commits(REPO)) == 1


def test_validate_yaml_refuses_a_license_the_hub_does_not_list(hub, api, tmp_path):
    """As the Hub does (huggingface_hub#4218): `Apache-2.0` or an SPDX `-or-later` id fails the commit."""
    api.create_repo(REPO)
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "README.md").write_text("---\nlicense: Apache-2.0\n---\n")
    with pytest.raises(ValueError, match='"license" must be one of \\[apache-2.0, mit'):
        api.upload_folder(repo_id=REPO, folder_path=tmp_path / "card", commit_message="Bad license")
    (tmp_path / "card" / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    api.upload_folder(repo_id=REPO, folder_path=tmp_path / "card", commit_message="Good license")
    assert len(hub.commits(REPO)) == 2
