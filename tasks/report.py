"""The outcome of one run in a few numbers, gathered from what the steps stored in the run directory."""

from __future__ import annotations

import logging

from tasks import evaluate, gate, publish, pull, storage, validate
from tasks.config import RunConfig

log = logging.getLogger(__name__)


def _stored(uri: str) -> dict | None:
    return storage.read_json(uri) if storage.exists(uri) else None


def summarize_run(config: RunConfig) -> dict:
    manifest = _stored(config.uri(pull.MANIFEST)) or {"objects": [], "message": "nothing pulled"}
    validation = _stored(config.uri(validate.REPORT)) or {}
    scores = _stored(config.uri(evaluate.EVAL, evaluate.SCORES)) or {}
    decision = _stored(config.uri(gate.GATE)) or {}
    published = _stored(config.uri(publish.PUBLISH))
    summary = {
        "run_id": config.run_id,
        "run_dir": config.run_dir,
        "data": manifest["message"],
        "files_pulled": len(manifest["objects"]),
        "rows_pulled": validation.get("rows_in"),
        "rows_kept": validation.get("kept"),
        "rows_rejected": validation.get("rejected"),
        "rows_deduplicated": validation.get("deduplicated"),
        "test_sentences": scores.get("test_sentences"),
        "base_bleu": scores.get("base", {}).get("bleu"),
        "candidate_bleu": scores.get("candidate", {}).get("bleu"),
        "bleu_gain": decision.get("bleu", {}).get("gain"),
        "decision": decision.get("decision"),
        "reasons": decision.get("reasons", []),
        "published": _published(published),
    }
    for line in format_summary(summary):
        log.info("%s", line)
    return summary


def _published(record: dict | None) -> str | None:
    if not record or not record.get("published"):
        return None
    if record.get("pr_url"):
        return f"{record['repo_id']}: pull request {record['pr_url']} awaits review"
    tag = record.get("tag")
    pinned = f" tag {tag}" if tag and tag != record["revision"] else ""  # a local revision is its tag
    return f"{record['repo_id']}@{record['revision'][:12]}{pinned} ({record['endpoint']})"


def format_summary(s: dict) -> list[str]:
    def num(value, fmt="{:.2f}"):
        return "n/a" if value is None else fmt.format(value)

    return [
        f"run {s['run_id']}  ({s['run_dir']})",
        f"data: {s['data']}",
        f"rows: {s['rows_pulled']} pulled from {s['files_pulled']} file(s), {s['rows_kept']} kept, "
        f"{s['rows_rejected']} rejected, {s['rows_deduplicated']} duplicates",
        f"BLEU on {s['test_sentences']} test sentences: base {num(s['base_bleu'])} → candidate "
        f"{num(s['candidate_bleu'])} (gain {num(s['bleu_gain'], '{:+.2f}')})",
        f"gate: {(s['decision'] or 'not reached').upper()} — {'; '.join(s['reasons'])}",
        f"published: {s['published'] or 'nothing'}",
    ]
