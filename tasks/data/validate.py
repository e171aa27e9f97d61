"""validate: raw/ → clean.jsonl + rejects.jsonl + validation_report.json.

Each row read from raw/ ends in exactly one place: kept (clean.jsonl); rejected with every reason it failed
(rejects.jsonl: the pair filters of tasks/filters.py, an unreadable record, or `leakage` when its source is
in the frozen test set); or dropped as a duplicate of an earlier kept pair (also in rejects.jsonl, reason
`duplicate`, so nothing is lost). The report proves the accounting: rows in = kept + rejected +
deduplicated, checked on every run.

The batch as a whole fails the run, naming counts, thresholds and the files at fault, when a file cannot
be read, when fewer than `min_clean_pairs` pairs survive, or when more than `max_reject_rate` of the rows
are rejected. Rows are streamed: memory grows with the number of distinct kept pairs (a few hundred bytes
each), never with the size of the files.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from tasks import layout
from tasks.config import RunConfig
from tasks.data import langid, screening, testset
from tasks.io import formats, storage

log = logging.getLogger(__name__)

EXAMPLES_PER_REASON = 3
COUNTS = ("rows", "kept", "rejected", "deduplicated")


class BadBatchError(RuntimeError):
    """The batch as a whole is not fit to train on; the message names the counts and the threshold."""


def run(config: RunConfig) -> dict:
    report_uri = config.uri(layout.VALIDATION_REPORT)
    report = storage.read_json_or(report_uri)
    if report is not None:
        log.info("validate already done for this run: %s", report_uri)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            raw_dir = storage.local_dir_for(config.uri(layout.RAW), scratch / "raw")
            leakage = testset.source_keys(config, scratch)
            report = screen_files(config, data_files(raw_dir), scratch / layout.CLEAN, scratch / layout.REJECTS,
                                  leakage)
            storage.upload_file(scratch / layout.CLEAN, config.uri(layout.CLEAN))
            storage.upload_file(scratch / layout.REJECTS, config.uri(layout.REJECTS))
        # Written even for a bad batch, so the run directory explains the failure.
        storage.write_json(report_uri, report)
    log_summary(report)
    fail_if_unusable(report, config.uri(layout.REJECTS))
    return summarize(report)


def data_files(folder: Path) -> list[tuple[str, Path]]:
    """(name relative to the folder, path) of every file below it, hidden ones (temp files) left out."""
    found = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in name.split("/")):
            found.append((name, path))
    return found


def screen_files(config: RunConfig, files: list[tuple[str, Path]], clean_path: Path, rejects_path: Path,
                 leakage_keys: frozenset[int] = frozenset()) -> dict:
    """Read, screen, deduplicate and write every row of `files`; return the report."""
    batch = _Batch(config, leakage_keys)
    workers = screening.worker_count(sum(path.stat().st_size for _, path in files))
    # backslashreplace: a lone surrogate from a JSON escape is written as that same escape, never a crash.
    with screening.ScreeningPool(config, workers) as pool, \
            clean_path.open("w", encoding="utf-8", errors="backslashreplace") as clean, \
            rejects_path.open("w", encoding="utf-8", errors="backslashreplace") as rejects:
        for name, path in files:
            counts = batch.files[name]
            try:
                detected = formats.detect(path, name)
                log.info("reading %s as %s (%s)", name, detected.format, detected.how)
                counts.update(format=detected.format, detected_by=detected.how)
                rows = detected.reader.rows(path, name, formats.Languages(config.source_lang, config.target_lang))
                batch.take(name, pool.screen(name, rows), clean, rejects)
            except formats.UnreadableFile as err:
                batch.unreadable[name] = str(err)
                log.error("unreadable file: %s", err)
    return batch.report(workers)


class _Batch:
    """Everything that needs the whole batch: duplicates, leakage, counts, examples and length statistics."""

    def __init__(self, config: RunConfig, leakage_keys: frozenset[int]):
        self.config = config
        self.leakage_keys = leakage_keys
        self.files: dict[str, dict] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
        self.unreadable: dict[str, str] = {}
        self.reasons: Counter = Counter()
        self.examples: dict[str, list] = defaultdict(list)
        self.first_seen: dict[int, int] = {}  # normalized pair → where it was kept first (file index, line)
        self.exact_seen: set[int] = set()
        self.file_names: list[str] = []
        self.lengths = {k: Counter() for k in ("source_chars", "target_chars", "source_words", "target_words")}

    def take(self, name: str, screened, clean, rejects) -> None:
        counts = self.files[name]
        file_index = len(self.file_names)
        self.file_names.append(name)
        first_seen, exact_seen, leakage_keys = self.first_seen, self.exact_seen, self.leakage_keys
        src_chars, tgt_chars, src_words, tgt_words = self.lengths.values()
        for line, source, target, reasons, pair_key, exact_key, source_key, record, source_words, target_words \
                in screened:  # the fields of screening.Screened
            counts["rows"] += 1
            if not reasons and source_key in leakage_keys:
                reasons = (("leakage", "source is in the frozen test set"),)
            if reasons:
                counts["rejected"] += 1
                self._reject(name, line, source, target, reasons, rejects)
                continue
            earlier = first_seen.get(pair_key)
            if earlier is not None:
                counts["deduplicated"] += 1
                how = "" if exact_key in exact_seen else " after normalization (case, spacing, Unicode forms)"
                where = f"{self.file_names[earlier >> 40]}:{earlier & (2**40 - 1)}"
                self._reject(name, line, source, target, (("duplicate", f"same pair as {where}{how}"),), rejects)
                continue
            first_seen[pair_key] = (file_index << 40) | line
            exact_seen.add(exact_key)
            counts["kept"] += 1
            clean.write(record + "\n")
            src_chars[len(source)] += 1
            tgt_chars[len(target)] += 1
            src_words[source_words] += 1
            tgt_words[target_words] += 1

    def _reject(self, name: str, line: int, source, target, reasons, rejects) -> None:
        found = [{"reason": reason, "detail": detail} for reason, detail in reasons]
        for reason, detail in reasons:
            if reason != "duplicate":
                self.reasons[reason] += 1
            if len(self.examples[reason]) < EXAMPLES_PER_REASON:
                self.examples[reason].append({"file": name, "line": line, "detail": detail, "source": source,
                                              "target": target})
        rejects.write(json.dumps({"file": name, "line": line, "reasons": found, "source": source,
                                  "target": target}, ensure_ascii=False) + "\n")

    def report(self, workers: int) -> dict:
        totals = Counter()
        for counts in self.files.values():
            totals.update({k: counts[k] for k in COUNTS})
        rows_in, kept, rejected, dedup = (totals[k] for k in COUNTS)
        if rows_in != kept + rejected + dedup:  # a bug in this module, never a data problem
            raise AssertionError(f"row accounting broken: {rows_in} != {kept} + {rejected} + {dedup}")
        leakage = self.reasons["leakage"]
        config = self.config
        report = {
            "rows_in": rows_in, "kept": kept, "rejected": rejected, "deduplicated": dedup, "leakage": leakage,
            "reject_rate": round((rejected - leakage) / rows_in, 4) if rows_in else 0.0,
            "accounting": f"{rows_in} rows in = {kept} kept + {rejected} rejected + {dedup} deduplicated",
            "files": {name: c for name, c in sorted(self.files.items())},
            "unreadable_files": self.unreadable,
            "reasons": {r: {"count": n, "examples": self.examples[r]} for r, n in self.reasons.most_common()}
            | ({"duplicate": {"count": dedup, "examples": self.examples["duplicate"]}} if dedup else {}),
            "kept_lengths": {name: _stats(hist) for name, hist in self.lengths.items()},
            "thresholds": {"min_clean_pairs": config.min_clean_pairs, "max_reject_rate": config.max_reject_rate,
                           "skip_filters": config.skip_filters},
            "workers": workers,
            "language_id_unknown": _languages_without_id(config),
        }
        return report | _judge(config, report)


def _languages_without_id(config: RunConfig) -> list[str]:
    """The pair's languages that the language-ID model does not know: wrong_language cannot judge them."""
    if "wrong_language" in config.skip_filters:
        return []
    unknown = [lang for lang in (config.source_lang, config.target_lang) if not langid.shared().knows(lang)]
    if unknown:
        log.warning("language ID does not know %s: wrong_language is not checked on that side", unknown)
    return unknown


def _stats(histogram: Counter) -> dict:
    total = sum(histogram.values())
    if not total:
        return {}
    ordered = sorted(histogram.items())
    def quantile(q: float) -> int:
        rank, seen = q * (total - 1), 0
        for value, count in ordered:
            seen += count
            if seen > rank:
                return value
        return ordered[-1][0]
    return {"min": ordered[0][0], "median": quantile(0.5), "p95": quantile(0.95), "max": ordered[-1][0],
            "mean": round(sum(v * c for v, c in ordered) / total, 1)}


def _judge(config: RunConfig, report: dict) -> dict:
    """What makes the batch as a whole unusable, and the files to look at first."""
    problems = [f"unreadable file: {message}" for message in report["unreadable_files"].values()]
    if report["kept"] < config.min_clean_pairs:
        problems.append(f"only {report['kept']} usable pairs of {report['rows_in']} rows "
                        f"(min_clean_pairs = {config.min_clean_pairs})")
    if report["reject_rate"] > config.max_reject_rate:
        rejected = report["rejected"] - report["leakage"]
        problems.append(f"reject rate {report['reject_rate']:.1%} > max_reject_rate {config.max_reject_rate:.1%} "
                        f"({rejected} of {report['rows_in']} rows rejected)")
    at_fault = list(report["unreadable_files"])
    if problems:
        by_rate = sorted(((n, c) for n, c in report["files"].items() if n not in at_fault and c["rows"]),
                         key=lambda nc: -nc[1]["rejected"] / nc[1]["rows"])
        at_fault += [f"{name} ({c['rejected']}/{c['rows']} rejected)" for name, c in by_rate[:5]]
    return {"problems": problems, "files_at_fault": at_fault}


def fail_if_unusable(report: dict, rejects_uri: str) -> None:
    if report["problems"]:
        raise BadBatchError("bad batch: " + "; ".join(report["problems"]) +
                            f". Files: {', '.join(report['files_at_fault'])}. "
                            f"See {rejects_uri} for every rejected row and its reasons.")


def log_summary(report: dict) -> None:
    log.info("validation: %s", report["accounting"])
    for name, c in report["files"].items():
        log.info("  %-40s %-7s rows %7d  kept %7d  rejected %7d  dup %7d", name, c.get("format", "?"), c["rows"],
                 c["kept"], c["rejected"], c["deduplicated"])
    for name, message in report["unreadable_files"].items():
        log.info("  UNREADABLE %s", message)
    for reason, info in report["reasons"].items():
        first = info["examples"][0]
        log.info("  reason %-15s %7d  e.g. %s:%s %s", reason, info["count"], first["file"], first["line"],
                 first["detail"])
    lengths = report["kept_lengths"]
    if lengths.get("source_chars"):
        log.info("kept lengths: source chars %s; target chars %s", lengths["source_chars"],
                 lengths["target_chars"])


def result(config: RunConfig) -> dict | None:
    """The counts of a finished validation, or None when this run has not validated yet."""
    report = storage.read_json_or(config.uri(layout.VALIDATION_REPORT))
    return None if report is None else summarize(report)


def summarize(report: dict) -> dict:
    return {k: report[k] for k in ("rows_in", "kept", "rejected", "deduplicated")}
