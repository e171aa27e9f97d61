"""publish: model/ + model card + evaluation artifacts → one release in the registry (the Hub or a local one).

The step re-reads gate.json itself and trusts it only once it is shown to be this run's: decided on the run's
exact eval/scores.json (its SHA-256) and the decision those scores give again under the run's config; and it
uploads the model only if its fingerprint is the one the scores were measured on. Only a run whose decision is
"promote" can publish, whatever the orchestrator passed along, and a refused run sends nothing anywhere.

A release is one commit (or, with `create_pr`, one pull request) holding the model, tokenizer, generation
config, model card, `eval/` (scores with their sacrebleu signatures, the gate's decision, the report when there
is one) and `provenance/` (the pull manifest and the validation report). Publishing again for the same DAG run
returns the earlier release instead of making a second one, and a release never replaces a model the gate did
not compare against: when the registry moved since the champion lookup, the step fails (see
tasks/publish/registry.py). The Hub token is passed in by the caller or taken from `HF_TOKEN`; it is never
logged or written anywhere.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from tasks import hub_models, layout
from tasks.config import RunConfig
from tasks.evaluate import gate
from tasks.io import digest, storage
from tasks.publish import modelcard
from tasks.publish.registry import Registry, Release, run_tag
from tasks.publish.targets import open_registry

log = logging.getLogger(__name__)

# Run-directory files a release carries, and where in the release: the evaluation record, then provenance.
RELEASED_RECORDS = ((layout.SCORES, "eval"), (layout.GATE, "eval"), (layout.REPORT, "eval"),
                    (layout.PULL_MANIFEST, "provenance"), (layout.VALIDATION_REPORT, "provenance"))


def result(config: RunConfig) -> dict | None:
    """The stored outcome of a finished publish, or None."""
    return storage.read_json_or(config.uri(layout.PUBLISH))


class UnverifiedModel(RuntimeError):
    """The model in the run directory is not the one the gate's scores were measured on."""


def run(config: RunConfig, token: str | None = None, endpoint: str | None = None,
        registry: Registry | None = None) -> dict:
    if gate.result(config) is None:
        reason = "no gate decision for this pair: nothing new was pulled, or its run ended before the gate"
        log.info("nothing published: %s", reason)
        return {"published": False, "reason": reason}
    decision = gate.verified_decision(config)
    if not decision["promote"]:
        reason = "gate refused: " + "; ".join(decision["reasons"])
        log.info("nothing published: %s", reason)
        return {"published": False, "reason": reason}
    if not config.push_to_hub:
        log.info("nothing published: push_to_hub is off")
        return {"published": False, "reason": "push_to_hub is off"}
    # The run's languages are released together: this step reads the release gate's verdict itself, so a
    # publish task run by hand (cleared, or a run repaired in the UI) cannot release what the gate held back.
    released = storage.read_json_or(config.uri(layout.RELEASE_GATE))
    if released is None or not released["released"]:
        reason = "the release gate did not run" if released is None else f"not released: {released['message']}"
        log.info("nothing published: %s", reason)
        return {"published": False, "reason": reason}
    if (done := result(config)) is not None:
        log.info("already published by this run: %s", done["url"])
        return done

    registry = registry or open_registry(config, token=token, endpoint=endpoint)
    release = make_release(config, decision)
    with tempfile.TemporaryDirectory() as scratch:
        folder = stage(config, Path(scratch), release)
        published = registry.publish(folder, release)
    record = {"published": True, **published.record()}
    if published.pr_url:
        log.info("release %s waits for review in pull request %s", published.run_tag, published.pr_url)
    else:
        log.info("published %s@%s as %s: %s", published.repo_id, published.revision, published.run_tag,
                 published.url)
    storage.write_json(config.uri(layout.PUBLISH), record)
    return record


def make_release(config: RunConfig, decision: dict) -> Release:
    """Identity and wording of this run's release; the title carries the run tag, so a PR is findable by it."""
    tag = run_tag(config.dag_id, config.run_id)
    bleu = decision.get("bleu", {})
    title = (f"{tag}: {config.source_lang}-{config.target_lang} model from run {config.run_id}, "
             f"BLEU {bleu.get('candidate', 'n/a')} ({bleu.get('gain', 0):+.2f} over the base model)")
    details = (f"Retrained by the `{config.dag_id}` workflow from `{config.data_uri}`.\n\n"
               f"Promotion gate: **{decision['decision'].upper()}**\n"
               + "".join(f"- {check['reason']}\n" for check in decision.get("checks", [])))
    return Release(dag_id=config.dag_id, run_id=config.run_id, run_tag=tag, title=title, details=details,
                   create_pr=config.create_pr, expected_head=compared_head(config), base_model=config.base_model)


def compared_head(config: RunConfig) -> str | None:
    """What the registry served when the champion the gate compared against was looked up (from the scores the
    gate decided on); None when it served nothing. Lookups recorded before `registry_revision` existed name
    the champion's revision only."""
    lookup = storage.read_json(config.uri(layout.SCORES)).get("champion_lookup")
    if lookup is None:
        raise ValueError(f"{config.uri(layout.SCORES)} does not say which champion the gate compared against; "
                         "refusing to publish")
    return lookup.get("registry_revision", lookup.get("revision"))


def _sha256(uri: str) -> str | None:
    try:
        return digest.of_bytes(storage.read_bytes(uri))
    except FileNotFoundError:
        return None


def stage(config: RunConfig, scratch: Path, release: Release) -> Path:
    """A folder with exactly what the release holds: model, tokenizer, card, eval/ and provenance/."""
    model_dir = storage.local_dir_for(config.uri(layout.MODEL), scratch / "download")
    evaluated = (storage.read_json(config.uri(layout.SCORES)).get("candidate_model") or {}).get("fingerprint")
    folder = scratch / "upload"
    shutil.copytree(model_dir, folder)
    # The copy is what gets uploaded, so the copy is what must be the evaluated model.
    if (staged := digest.of_folder(folder)) != evaluated:
        raise UnverifiedModel(f"{config.uri(layout.MODEL)} is not the model that was evaluated (fingerprint "
                              f"{staged}, scores.json names {evaluated}): refusing to publish")
    for name, where in RELEASED_RECORDS:
        if storage.exists(config.uri(name)):
            storage.download(config.uri(name), folder / where / name.rsplit("/", 1)[-1])
    manifest = storage.read_json_or(config.uri(layout.PULL_MANIFEST), {})
    base_revision = hub_models.pinned_revisions(config).get(config.base_model)
    records = modelcard.RunRecords(
        scores=storage.read_json(config.uri(layout.SCORES)),
        decision=gate.verified_decision(config),
        validation=storage.read_json_or(config.uri(layout.VALIDATION_REPORT), {}),
        training=storage.read_json_or(config.uri(layout.TRAIN_REPORT), {}),
        provenance={"files": len(manifest.get("objects", [])),
                    "retracted": sorted(manifest.get("retractions", {})),
                    "manifest_sha256": _sha256(config.uri(layout.PULL_MANIFEST)),
                    "test_split_sha256": _sha256(config.uri(layout.split_file("test"))),
                    **({"base_model_revision": base_revision} if base_revision else {})},
    )
    card = modelcard.build(config, records, release_tag=release.run_tag, in_review=release.create_pr)
    card.save(folder / "README.md")
    return folder
