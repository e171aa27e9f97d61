"""A step never trusts an artifact it did not write: a planted or stale gate decision is decided again or refused,
and publish uploads nothing that was not evaluated and promoted for this very run."""

from __future__ import annotations

import json

import pytest

from support.runs import make_promoted_run
from tasks import layout
from tasks.evaluate import gate
from tasks.io import digest, storage
from tasks.publish import step as publish
from tasks.publish.local_registry import LocalRegistry


@pytest.fixture
def promoted(tmp_path, tiny_model):
    cfg = make_promoted_run(tmp_path / "runs", tiny_model, publish_target="local",
                            registry_uri=str(tmp_path / "registry"))
    return cfg, LocalRegistry(str(tmp_path / "registry"), cfg.hub_repo_id)


def _refused_run(tmp_path, tiny_model):
    return make_promoted_run(tmp_path / "runs", tiny_model, run_id="refused", promote=False,
                             publish_target="local", registry_uri=str(tmp_path / "registry"))


def test_a_planted_promote_decision_is_decided_again_on_the_real_scores(tmp_path, tiny_model):
    cfg = _refused_run(tmp_path, tiny_model)
    planted = {**gate.read_decision(cfg), "decision": "promote", "promote": True, "scores_sha256": "0" * 64}
    storage.write_json(cfg.uri(layout.GATE), planted)
    assert gate.bound_decision(cfg)["decision"] == "refuse"
    assert gate.read_decision(cfg)["decision"] == "refuse"  # stored again, bound to the real scores
    stored = storage.read_bytes(cfg.uri(layout.SCORES))
    assert gate.read_decision(cfg)["scores_sha256"] == digest.of_bytes(stored)
    assert json.loads(stored)["candidate"]["bleu"] == gate.read_decision(cfg)["bleu"]["candidate"]


def test_publish_refuses_a_decision_not_bound_to_the_runs_scores(tmp_path, tiny_model):
    cfg = _refused_run(tmp_path, tiny_model)
    edited = {**gate.read_decision(cfg), "decision": "promote", "promote": True}  # the right hash, a new verdict
    storage.write_json(cfg.uri(layout.GATE), edited)
    with pytest.raises(gate.UnverifiedDecision, match="decide refuse"):
        publish.run(cfg)
    storage.write_json(cfg.uri(layout.GATE), {**edited, "scores_sha256": "f" * 64})
    with pytest.raises(gate.UnverifiedDecision, match="not decided on this run's scores"):
        publish.run(cfg)
    assert not (tmp_path / "registry").exists()


def test_publish_refuses_scores_changed_after_the_gate(promoted):
    cfg, registry = promoted
    scores = storage.read_json(cfg.uri(layout.SCORES))
    scores["candidate"]["bleu"] = 99.0
    storage.write_json(cfg.uri(layout.SCORES), scores)
    with pytest.raises(gate.UnverifiedDecision):
        publish.run(cfg)
    assert registry.latest() is None


def test_publish_refuses_a_model_that_was_not_the_one_evaluated(promoted):
    cfg, registry = promoted
    storage.write_text(cfg.uri(layout.MODEL, "config.json"),
                       storage.read_text(cfg.uri(layout.MODEL, "config.json")).replace("}", ', "swapped": 1}', 1))
    with pytest.raises(publish.UnverifiedModel, match="not the model that was evaluated"):
        publish.run(cfg)
    assert registry.latest() is None


def test_the_untouched_run_publishes(promoted):
    cfg, registry = promoted
    assert publish.run(cfg)["published"] is True
    assert registry.latest().run_tag.startswith("run-")
