"""validate: raw/ → clean.jsonl + rejects.jsonl + validation_report.json.

Each row read from raw/ ends in exactly one place: kept (clean.jsonl), rejected with every reason it failed
(rejects.jsonl), or dropped as a duplicate of an earlier kept row (also in rejects.jsonl, reason
`duplicate`, so nothing is lost). The report proves the accounting: rows in = kept + rejected + deduplicated.
The batch fails when too little usable data is left.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tasks import formats, pull, storage
from tasks.config import RunConfig

log = logging.getLogger(__name__)

CLEAN = "clean.jsonl"
REJECTS = "rejects.jsonl"
REPORT = "validation_report.json"
EXAMPLES_PER_REASON = 3


class BadBatchError(RuntimeError):
    """The batch as a whole is not fit to train on; the message names the counts and the threshold."""


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


@dataclass(frozen=True)
class PairFilter:
    """One rule: `check` returns None when the pair passes, else a short detail for the reason."""

    reason: str
    check: Callable[[str, str, RunConfig], str | None]


def _empty(src: str, tgt: str, cfg: RunConfig) -> str | None:
    sides = [name for name, text in (("source", src), ("target", tgt)) if not text]
    return f"empty {' and '.join(sides)}" if sides else None


def _too_long(src: str, tgt: str, cfg: RunConfig) -> str | None:
    longest = max(len(src), len(tgt))
    return f"{longest} characters > {cfg.max_chars}" if longest > cfg.max_chars else None


def _length_ratio(src: str, tgt: str, cfg: RunConfig) -> str | None:
    short, long_ = sorted((len(src), len(tgt)))
    if short == 0:
        return None  # reported as empty
    # Very short pairs ('OK' → 'In Ordnung') legitimately differ a lot in length.
    ratio = long_ / short
    return f"ratio {ratio:.2f} > {cfg.max_length_ratio}" if long_ > 12 and ratio > cfg.max_length_ratio else None


def _identical(src: str, tgt: str, cfg: RunConfig) -> str | None:
    return "source equals target" if src and src == tgt and any(c.isalpha() for c in src) else None


FILTERS: list[PairFilter] = [
    PairFilter("empty", _empty),
    PairFilter("too_long", _too_long),
    PairFilter("length_ratio", _length_ratio),
    PairFilter("identical", _identical),
]


def reasons_for(src: str, tgt: str, cfg: RunConfig) -> list[dict]:
    found = []
    for rule in FILTERS:
        detail = rule.check(src, tgt, cfg)
        if detail:
            found.append({"reason": rule.reason, "detail": detail})
    return found


def run(config: RunConfig) -> dict:
    report_uri = config.uri(REPORT)
    if storage.exists(report_uri):
        log.info("validate already done for this run: %s", report_uri)
        report = storage.read_json(report_uri)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            raw_dir = storage.local_dir_for(config.uri(pull.RAW), Path(scratch) / "raw")
            report = _validate_files(config, raw_dir, Path(scratch))
            storage.upload_file(Path(scratch) / CLEAN, config.uri(CLEAN))
            storage.upload_file(Path(scratch) / REJECTS, config.uri(REJECTS))
        # Written even for a bad batch, so the run directory explains the failure.
        storage.write_json(report_uri, report)
    _log_summary(report)
    _fail_if_unusable(config, report)
    return summarize(report)


def _validate_files(config: RunConfig, raw_dir: Path, out_dir: Path) -> dict:
    src_lang, tgt_lang = config.source_lang, config.target_lang
    per_file: dict[str, Counter] = defaultdict(Counter)
    reasons: Counter = Counter()
    examples: dict[str, list] = defaultdict(list)
    unreadable: dict[str, str] = {}
    seen: dict[bytes, str] = {}
    kept_lengths: list[int] = []

    with (out_dir / CLEAN).open("w", encoding="utf-8") as clean, \
            (out_dir / REJECTS).open("w", encoding="utf-8") as rejects:
        for path in sorted(p for p in raw_dir.rglob("*") if p.is_file()):
            name = path.relative_to(raw_dir).as_posix()
            counts = per_file[name]
            try:
                rows = list(formats.read_rows(path, name, src_lang, tgt_lang))
            except formats.UnreadableFile as err:
                unreadable[name] = str(err)
                continue
            for row in rows:
                counts["rows"] += 1
                origin = {"file": row.file, "line": row.line}
                if row.problem:
                    found = [{"reason": "unreadable_row", "detail": row.problem}]
                    src = tgt = None
                else:
                    src, tgt = normalize(row.source), normalize(row.target)
                    found = reasons_for(src, tgt, config)
                if found:
                    counts["rejected"] += 1
                    for f in found:
                        reasons[f["reason"]] += 1
                        if len(examples[f["reason"]]) < EXAMPLES_PER_REASON:
                            examples[f["reason"]].append({**origin, "detail": f["detail"], "source": src,
                                                          "target": tgt})
                    rejects.write(json.dumps({**origin, "reasons": found, "source": src, "target": tgt},
                                             ensure_ascii=False) + "\n")
                    continue
                key = hashlib.blake2b(f"{src}\t{tgt}".encode(), digest_size=12).digest()
                if key in seen:
                    counts["deduplicated"] += 1
                    rejects.write(json.dumps({**origin, "reasons": [{"reason": "duplicate",
                                                                      "detail": f"same pair as {seen[key]}"}],
                                              "source": src, "target": tgt}, ensure_ascii=False) + "\n")
                    continue
                seen[key] = f"{row.file}:{row.line}"
                counts["kept"] += 1
                kept_lengths.append(len(src))
                clean.write(json.dumps({"translation": {src_lang: src, tgt_lang: tgt}, **origin},
                                       ensure_ascii=False) + "\n")

    totals = Counter()
    for counts in per_file.values():
        totals.update(counts)
    rows_in, kept, rejected, dedup = (totals[k] for k in ("rows", "kept", "rejected", "deduplicated"))
    if rows_in != kept + rejected + dedup:  # a bug in this module, never a data problem
        raise AssertionError(f"row accounting broken: {rows_in} != {kept} + {rejected} + {dedup}")
    return {
        "rows_in": rows_in, "kept": kept, "rejected": rejected, "deduplicated": dedup,
        "reject_rate": round(rejected / rows_in, 4) if rows_in else 0.0,
        "accounting": f"{rows_in} rows in = {kept} kept + {rejected} rejected + {dedup} deduplicated",
        "files": {name: {k: c[k] for k in ("rows", "kept", "rejected", "deduplicated")}
                  for name, c in sorted(per_file.items())},
        "unreadable_files": unreadable,
        "reasons": {r: {"count": n, "examples": examples[r]} for r, n in reasons.most_common()},
        "kept_source_chars": _length_stats(kept_lengths),
        "min_clean_pairs": config.min_clean_pairs,
    }


def _length_stats(lengths: list[int]) -> dict:
    if not lengths:
        return {}
    ordered = sorted(lengths)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"min": ordered[0], "median": pick(0.5), "p95": pick(0.95), "max": ordered[-1],
            "mean": round(sum(ordered) / len(ordered), 1)}


def _fail_if_unusable(config: RunConfig, report: dict) -> None:
    problems = []
    if report["unreadable_files"]:
        problems.append("unreadable file(s): " + "; ".join(report["unreadable_files"].values()))
    if report["kept"] < config.min_clean_pairs:
        problems.append(f"only {report['kept']} usable pairs of {report['rows_in']} rows "
                        f"(min_clean_pairs = {config.min_clean_pairs})")
    if problems:
        worst = sorted(report["files"].items(), key=lambda kv: -kv[1]["rejected"])[:5]
        at_fault = ", ".join(f"{name} ({c['rejected']}/{c['rows']} rejected)" for name, c in worst)
        raise BadBatchError("bad batch: " + "; ".join(problems) + f". Files: {at_fault}. "
                            f"See {config.uri(REJECTS)} for every rejected row and its reasons.")


def _log_summary(report: dict) -> None:
    log.info("validation: %s", report["accounting"])
    for name, c in report["files"].items():
        log.info("  %-40s rows %6d  kept %6d  rejected %6d  dup %6d", name, c["rows"], c["kept"],
                 c["rejected"], c["deduplicated"])
    for reason, info in report["reasons"].items():
        first = info["examples"][0]
        log.info("  reason %-15s %6d  e.g. %s:%s %s", reason, info["count"], first["file"], first["line"],
                 first["detail"])
    log.info("kept source length (chars): %s", report["kept_source_chars"])


def summarize(report: dict) -> dict:
    return {k: report[k] for k in ("rows_in", "kept", "rejected", "deduplicated")}
