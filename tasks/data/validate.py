"""validate: the pulled objects (raw/) and the carried cleaned copies → clean.jsonl + rejects.jsonl +
validation_report.json.

The objects are those of the run's pull manifest, each under its own key: what pull copied is exactly what is
read, and every object of the manifest ends with its rows counted or as an unreadable file, named. Each row
ends in exactly one place (tasks/data/batch.py): kept, rejected with every reason it failed (the pair filters
of tasks/data/filters.py, an unreadable record, `leakage` into the frozen test set), or dropped as a duplicate;
the report proves it per object. Compressed files are read decompressed, binary and empty files are refused.

With training_data = all, the cleaned copies of the objects earlier runs consumed come first (carried): they are
not filtered again, but duplicates and leakage are judged across the whole corpus. A copy cleaned by other rules
than this run's (its fingerprint, tasks/data/screening.rules, differs: a threshold tightened, a skip_filters entry
removed, a new language-ID model, the alignment screen switched on) is screened again like new data, its rows
counted apart (`rescreened`); the rows that pass become a new copy, stamped with this run's rules, so it is
screened again once, not every week. The rows of each new object that pass the filters become its cleaned copy,
kept in the run directory until mark_consumed makes it the pipeline's (tasks/data/consumed.py), for the runs
after this one.

The batch fails the run, naming counts, thresholds and the files at fault, when a file cannot be read, when
fewer than `min_clean_pairs` pairs are left to train on, or when more than `max_reject_rate` of the new rows
are rejected. Rows are streamed: memory grows with the number of distinct kept pairs, never with file sizes.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections import Counter
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from tasks import layout
from tasks.config import RunConfig
from tasks.data import alignment, langid, screening, shards, testset, textnorm
from tasks.data.batch import EXAMPLES_PER_REASON, Batch
from tasks.io import formats, storage

log = logging.getLogger(__name__)

__all__ = ["BadBatchError", "EXAMPLES_PER_REASON", "run", "result", "screen_files", "data_files"]


class BadBatchError(RuntimeError):
    """The batch as a whole is not fit to train on; the message names the counts and the threshold."""


def run(config: RunConfig) -> dict:
    report_uri = config.uri(layout.VALIDATION_REPORT)
    report = storage.read_json_or(report_uri)
    if report is not None:
        log.info("validate already done for this run: %s", report_uri)
    else:
        manifest = storage.read_json(config.uri(layout.PULL_MANIFEST))
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            files = [(o["key"], storage.local_file_for(config.uri(layout.RAW, o["local"]), scratch / o["local"]))
                     for o in manifest["objects"]]
            rules = screening.rules_fingerprint(config)
            copies = _carried_copies(config, manifest.get("carried", []), scratch)
            carried = [(c["key"], copies[c["key"]]) for c in manifest.get("carried", []) if c.get("rules") == rules]
            # Cleaned by other rules: screened again, into a new copy of this run's.
            rescreen = [(c["key"], copies[c["key"]]) for c in manifest.get("carried", []) if c.get("rules") != rules]
            caches = {key: scratch / "caches" / f"{number}.jsonl"
                      for number, (key, _) in enumerate(rescreen + files)}
            report = screen_files(config, files, scratch / layout.CLEAN, scratch / layout.REJECTS,
                                  testset.held_out_keys(config, scratch), carried=carried, rescreen=rescreen,
                                  caches=caches)
            report["rules"] = {"fingerprint": rules, **screening.rules(config)}
            storage.upload_file(scratch / layout.CLEAN, config.uri(layout.CLEAN))
            storage.upload_file(scratch / layout.REJECTS, config.uri(layout.REJECTS))
            # The run's copies, the pipeline's only once mark_consumed commits.
            index = shards.concatenate({k: p for k, p in caches.items() if k not in report["unreadable_files"]},
                                       scratch / "copies.jsonl")
            storage.upload_file(scratch / "copies.jsonl", config.uri(layout.CLEANED_COPIES))
            storage.write_json(config.uri(layout.CLEANED_INDEX), index)
        if report["alignment"].get("histogram", {}).get("edges"):
            storage.write_bytes(config.uri(layout.ALIGNMENT_PLOT), alignment.plot(report["alignment"]))
        # Written even for a bad batch, so the run directory explains the failure.
        storage.write_json(report_uri, report)
    log_summary(report)
    fail_if_unusable(report, config.uri(layout.REJECTS))
    return summarize(report)


def _carried_copies(config: RunConfig, carried: list[dict], scratch: Path) -> dict[str, Path]:
    """The carried objects' cleaned copies (key → local file), read shard by shard."""
    try:
        return shards.read(config, {c["key"]: c for c in carried}, scratch / "carried")
    except shards.MissingCopyError as err:
        raise BadBatchError(f"{err} since this run's pull. Trigger a new run: its pull pulls each object again if "
                            "it is still at the source, or drops it from the corpus and says so") from None


def data_files(folder: Path) -> list[tuple[str, Path]]:
    """(name relative to the folder, path) of every file below it, hidden ones (temp files) left out."""
    found = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in name.split("/")):
            found.append((name, path))
    return found


def screen_files(config: RunConfig, files: list[tuple[str, Path]], clean_path: Path, rejects_path: Path,
                 leakage_keys: Mapping[int, str] = MappingProxyType({}), *, carried: list[tuple[str, Path]] = (),
                 rescreen: list[tuple[str, Path]] = (), caches: dict[str, Path] | None = None) -> dict:
    """Read, screen, deduplicate and write every row of `files` (after the carried cleaned copies, then the
    carried copies to screen again); return the report. With `caches`, each readable file's rows (and each
    re-screened copy's) that pass the filters are written to its cache path."""
    workers = screening.worker_count(sum(path.stat().st_size for _, path in files))
    # backslashreplace: a lone surrogate from a JSON escape is written as that same escape, never a crash.
    with screening.ScreeningPool(config, workers) as pool, \
            clean_path.open("w", encoding="utf-8", errors="backslashreplace") as clean, \
            rejects_path.open("w", encoding="utf-8", errors="backslashreplace") as rejects:
        batch = Batch(leakage_keys, clean, rejects)
        for name, path in carried:
            with path.open(encoding="utf-8") as records:
                batch.take_carried(name, records, config.source_lang, config.target_lang)
        for name, path in rescreen:
            batch.rescreen(name)
            with path.open(encoding="utf-8") as records, _cache(caches, name) as cache:
                batch.take(name, pool.screen(name, screening.cleaned_rows(records, config.source_lang,
                                                                          config.target_lang)), cache)
        for name, path in files:
            _screen_file(config, batch, pool, name, path, clean_path.parent, caches)
    # The alignment screen needs the whole batch (each pair is compared with pairs of similar length).
    with rejects_path.open("a", encoding="utf-8", errors="backslashreplace") as batch.rejects:
        aligned = alignment.apply(config, batch, clean_path, rejects_path, caches)
    return _report(config, batch, workers) | {"alignment": aligned}


@contextlib.contextmanager
def _cache(caches: dict[str, Path] | None, name: str):
    """The open cleaned copy of `name`, or None when this batch keeps none."""
    path = caches.get(name) if caches else None
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", errors="backslashreplace") as cache:
        yield cache


def _screen_file(config: RunConfig, batch: Batch, pool, name: str, path: Path, scratch: Path,
                 caches: dict[str, Path] | None) -> None:
    counts = batch.counts(name)
    plain = path
    try:
        plain, compressed = formats.plain(path, name, scratch)
        detected = formats.detect(plain, name)
        how = f"{detected.how}; {compressed}-compressed" if compressed else detected.how
        log.info("reading %s as %s (%s)", name, detected.format, how)
        counts.update(format=detected.format, detected_by=how, **({"compression": compressed} if compressed else {}))
        rows = detected.reader.rows(plain, name, formats.Languages(config.source_lang, config.target_lang))
        with _cache(caches, name) as cache:
            batch.take(name, pool.screen(name, rows), cache)
    except formats.UnreadableFile as err:
        batch.unreadable[name] = str(err)
        log.error("unreadable file: %s", err)
    finally:
        if plain != path:  # a decompressed copy: gone once read, so a batch never holds them all at once
            plain.unlink(missing_ok=True)


def _report(config: RunConfig, batch: Batch, workers: int) -> dict:
    totals = batch.totals()
    new, carried, again = totals["new"], totals["carried"], totals["rescreened"]
    rows_in, kept, rejected, dedup = (new[k] for k in ("rows", "kept", "rejected", "deduplicated"))
    leakage = batch.reasons["leakage"] - batch.rescreened_reasons["leakage"]  # of the new rows
    accounting = f"{rows_in} rows in = {kept} kept + {rejected} rejected + {dedup} deduplicated"
    if batch.carried:
        accounting += (f"; {carried['rows']} rows carried from {len(batch.carried)} consumed object(s) = "
                       f"{carried['kept']} kept + {carried['deduplicated']} deduplicated + {carried['leakage']} "
                       "leakage")
    if batch.rescreened:
        accounting += (f"; {again['rows']} rows of {len(batch.rescreened)} consumed object(s) cleaned by other rules, "
                       f"screened again = {again['kept']} kept + {again['rejected']} rejected + "
                       f"{again['deduplicated']} deduplicated")
    report = {
        "rows_in": rows_in, "kept": kept, "rejected": rejected, "deduplicated": dedup, "leakage": leakage,
        "carried_rows": carried["rows"], "carried_kept": carried["kept"],
        "rescreened_rows": again["rows"], "rescreened_kept": again["kept"], "rescreened_rejected": again["rejected"],
        "clean_pairs": kept + carried["kept"] + again["kept"],
        "reject_rate": round((rejected - leakage) / rows_in, 4) if rows_in else 0.0,
        "accounting": accounting,
        "files": dict(sorted(batch.files.items())),
        "carried": dict(sorted(batch.carried.items())),
        "rescreened": dict(sorted(batch.rescreened.items())),
        "unreadable_files": batch.unreadable,
        "reasons": {r: {"count": n, "examples": batch.examples[r]} for r, n in batch.reasons.most_common()}
        | ({"duplicate": {"count": dedup, "examples": batch.examples["duplicate"]}} if dedup else {}),
        "kept_lengths": {name: _stats(hist) for name, hist in batch.lengths.items()},
        "thresholds": {"min_clean_pairs": config.min_clean_pairs, "max_reject_rate": config.max_reject_rate,
                       "skip_filters": config.skip_filters, "alignment_screen": config.alignment_screen,
                       "alignment_min_margin": config.alignment_min_margin,
                       "max_misaligned_rate": config.max_misaligned_rate},
        "workers": workers,
        "source_key": textnorm.SOURCE_KEY,  # what leakage was judged by (split tells a run of an earlier key apart)
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
    if report["clean_pairs"] < config.min_clean_pairs:
        carried = f" and {report['carried_rows']} carried" if report["carried_rows"] else ""
        problems.append(f"only {report['clean_pairs']} usable pairs from {report['rows_in']} new rows{carried} "
                        f"(min_clean_pairs = {config.min_clean_pairs})")
    misaligned = report["reasons"].get("misaligned", {}).get("count", 0)
    screened = report["kept"] + report["rescreened_kept"] + misaligned
    if screened and misaligned / screened > config.max_misaligned_rate:
        problems.append(f"{misaligned} of {screened} screened pairs misaligned ({misaligned / screened:.1%} > "
                        f"max_misaligned_rate {config.max_misaligned_rate:.1%}): the targets do not belong to their "
                        "sources (shifted or re-sorted lines?). If the base model cannot translate this pair, set "
                        "alignment_screen = false")
    if report["reject_rate"] > config.max_reject_rate:
        rejected = report["rejected"] - report["leakage"]
        problems.append(f"reject rate {report['reject_rate']:.1%} > max_reject_rate {config.max_reject_rate:.1%} "
                        f"({rejected} of {report['rows_in']} rows rejected)")
    at_fault = list(report["unreadable_files"])
    if problems:
        # Worst first: the files that gave the fewest usable rows for what they held (none read counts worst).
        by_rate = sorted(((n, c) for n, c in report["files"].items() if n not in at_fault),
                         key=lambda nc: (nc[1]["kept"] / nc[1]["rows"] if nc[1]["rows"] else -1.0, nc[0]))
        at_fault += [f"{name} ({c['kept']} kept of {c['rows']} rows, {c['rejected']} rejected)"
                     for name, c in by_rate[:5]]
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
    for name, c in report.get("carried", {}).items():
        log.info("  %-40s carried rows %7d  kept %7d  dup %7d  leakage %7d", name, c["rows"], c["kept"],
                 c["deduplicated"], c["leakage"])
    for name, c in report.get("rescreened", {}).items():
        log.info("  %-40s screened again rows %7d  kept %7d  rejected %7d  dup %7d", name, c["rows"], c["kept"],
                 c["rejected"], c["deduplicated"])
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
    return {k: report.get(k) for k in ("rows_in", "kept", "rejected", "deduplicated", "carried_kept", "clean_pairs")}
