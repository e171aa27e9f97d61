"""What a run did, in a few lines: for the task log, the DAG's `summary` task and the demo.

It reads back what every step stored in the run directory, so it works for a run that ended early (nothing
new), failed half-way, was refused by the gate or was published.
"""

from __future__ import annotations

import logging

from tasks import cost, layout
from tasks.config import RunConfig
from tasks.io import storage

log = logging.getLogger(__name__)


def summarize_run(config: RunConfig) -> dict:
    def stored(name: str) -> dict:
        return storage.read_json_or(config.uri(name)) or {}

    manifest = stored(layout.PULL_MANIFEST) or {"objects": [], "message": "nothing pulled"}
    validation, scores = stored(layout.VALIDATION_REPORT), stored(layout.SCORES)
    decision, published = stored(layout.GATE), stored(layout.PUBLISH)
    trained, launched = stored(layout.TRAIN_REPORT), storage.read_record(config.uri(layout.LAUNCHES))
    summary = {
        "run_id": config.run_id,
        "run_dir": config.run_dir,
        "data": manifest["message"],
        "files_pulled": len(manifest["objects"]),
        "rows_pulled": validation.get("rows_in"),
        "rows_kept": validation.get("kept"),
        "rows_rejected": validation.get("rejected"),
        "rows_deduplicated": validation.get("deduplicated"),
        "carried_objects": len(manifest.get("carried", [])),
        # Carried copies this run's rules screened again (a filter changed, or copies from before the rules were
        # stamped on them: every copy, in the first run after an upgrade) are carried too, counted apart.
        "carried_kept": _carried_kept(validation),
        "carried_rescreened": validation.get("rescreened_kept"),
        "training_pairs": validation.get("clean_pairs"),
        "distinct_outputs": (scores.get("candidate", {}).get("outputs") or {}).get("distinct"),
        "test_sentences": scores.get("test_sentences"),
        "base_bleu": scores.get("base", {}).get("bleu"),
        "candidate_bleu": scores.get("candidate", {}).get("bleu"),
        "champion_bleu": (scores.get("champion") or {}).get("bleu"),
        "bleu_gain": decision.get("bleu", {}).get("gain"),
        "p_value": decision.get("p_values", {}).get("candidate_vs_base"),
        "decision": decision.get("decision"),
        "reasons": decision.get("reasons", []),
        "screening": cost.screening(validation),
        "training": cost.training(trained),
        "decoding": cost.decoding(scores),
        "launches": cost.launches(launched),
        "report": config.uri(layout.REPORT) if storage.exists(config.uri(layout.REPORT)) else None,
        "published": _published(published),
    }
    for line in format_summary(summary):
        log.info("%s", line)
    return summary


def whole_run(configs: list[RunConfig]) -> str | None:
    """The cost line of a run of several language pairs, all pairs together (logged); None for one pair, whose
    own `launches` line says it all, or when nothing was launched."""
    if len(configs) < 2:
        return None
    line = cost.whole_run([storage.read_record(config.uri(layout.LAUNCHES)) for config in configs])
    if line:
        log.info("the whole run: %s", line)
    return line


def _carried_kept(validation: dict) -> int | None:
    """The pairs carried from consumed objects into this run's training: as they were, and screened again."""
    counts = [validation.get(name) for name in ("carried_kept", "rescreened_kept")]
    return None if counts[0] is None else sum(n for n in counts if isinstance(n, int))


def short_revision(record: dict) -> str:
    """publish.json's revision as people read it: a Hub commit id to its first 12 digits; a local registry's
    revision, which is its release's run tag (`run-20261207-3e5bc010`), whole: cut short, it names no release."""
    revision = str(record.get("revision") or "")
    return revision if revision in (record.get("run_tag"), record.get("tag")) else revision[:12]


def _published(record: dict | None) -> str | None:
    if not record or not record.get("published"):
        return None
    if record.get("pr_url"):
        return f"{record['repo_id']}: pull request {record['pr_url']} awaits review"
    tag = record.get("tag")
    pinned = f" tag {tag}" if tag and tag != record["revision"] else ""  # a local revision is its tag
    return f"{record['repo_id']}@{short_revision(record)}{pinned} ({record['endpoint']})"


def format_summary(s: dict) -> list[str]:
    def num(value, fmt="{:.2f}"):
        return "n/a" if value is None else fmt.format(value)

    champion = "" if s.get("champion_bleu") is None else f", champion {num(s['champion_bleu'])}"
    p_value = "" if s.get("p_value") is None else f", p = {s['p_value']:.4f}"
    return [
        f"run {s['run_id']}  ({s['run_dir']})",
        f"data: {s['data']}",
        f"rows: {s['rows_pulled']} pulled from {s['files_pulled']} file(s), {s['rows_kept']} kept, "
        f"{s['rows_rejected']} rejected, {s['rows_deduplicated']} duplicates"
        + (f"; with {s['carried_kept']} pairs carried from {s['carried_objects']} earlier object(s)"
           + (f" ({s['carried_rescreened']} of them screened again by this run's rules)"
              if s.get("carried_rescreened") else "")
           + f": {s['training_pairs']} to split and train on" if s.get("carried_objects") else ""),
        *(f"{what}: {s[what]}" for what in ("screening", "training", "decoding", "launches") if s.get(what)),
        f"BLEU on {s['test_sentences']} test sentences: base {num(s['base_bleu'])} → candidate "
        f"{num(s['candidate_bleu'])} (gain {num(s['bleu_gain'], '{:+.2f}')}{p_value}){champion}"
        + ("" if s.get("distinct_outputs") is None else f"; distinct outputs {s['distinct_outputs']:.0%}"),
        f"gate: {(s['decision'] or 'not reached').upper()} — {'; '.join(s['reasons'])}",
        f"published: {s['published'] or 'nothing'}",
        f"report: {s['report'] or 'none'}",
    ]
