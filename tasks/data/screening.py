"""Screening rows: clean each pair, run every filter on it, and compute the keys it is compared by.

This is the CPU-heavy part of validation (language ID above all) and it needs nothing from other rows, so
a large batch is screened by worker processes, a chunk of rows at a time. validate.py keeps what needs the
whole batch (duplicates, leakage, accounting, writing) in one process, and receives the chunks back in
input order, so the outputs do not depend on the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections import deque
from typing import Iterable, Iterator, NamedTuple

from tasks import hardware
from tasks.data import filters, langid, textnorm
from tasks.io.reader import Row, UnreadableFile

CHUNK_ROWS = 2000
# JSON string quoting as json.dumps(..., ensure_ascii=False) does it, in C.
_json_string = json.encoder.encode_basestring
# Below this much input, starting worker processes (about a second) costs more than it saves.
PARALLEL_MIN_BYTES = 4 * 2**20
# Past this many workers the one process that reads, deduplicates and writes is the bottleneck.
MAX_WORKERS = 8
WORKERS_ENV = "MT_VALIDATE_WORKERS"


# Bump when a change to the filters' or the cleaning's code changes which rows they keep: every carried copy
# cleaned before is screened again (once) by the next run that trains on it.
RULES_VERSION = 2  # 2 (2026-12-07): dense scripts' length, the script check, cp1251 mojibake
# The run config's settings that decide which rows a cleaned copy keeps.
RULE_SETTINGS = ("min_chars", "max_chars", "min_tokens", "max_tokens", "max_length_ratio", "langid_min_confidence",
                 "langid_min_letters", "alignment_screen", "alignment_min_margin")


def rules(config) -> dict:
    """What decides which rows a cleaned copy keeps: the filters' code version, their settings, the filters
    skipped, the language-ID model, and the alignment screen's reverse model when it reads pairs both ways (named
    only then, so the copies of pipelines without one keep their fingerprint)."""
    skipped = sorted(config.skip_filters)
    found = {"version": RULES_VERSION, **{name: getattr(config, name) for name in RULE_SETTINGS},
             "skip_filters": skipped, "language_id": None if "wrong_language" in skipped else langid.model_id()}
    reverse = (config.alignment_reverse_models or {}).get(config.target_lang) if config.alignment_screen else None
    return found | ({"alignment_reverse_model": reverse} if reverse else {})


def rules_fingerprint(config) -> str:
    """A short digest of `rules`: stamped on each cleaned copy when it is made (tasks/data/consumed.py)."""
    return hashlib.blake2b(json.dumps(rules(config), sort_keys=True).encode(), digest_size=8).hexdigest()


def cleaned_rows(records: Iterable[str], source_lang: str, target_lang: str) -> Iterator[Row]:
    """A cleaned copy's records as rows to screen again, each under the line it had in its object."""
    for record in records:
        found = json.loads(record)
        pair = found["translation"]
        yield Row(found["line"], pair[source_lang], pair[target_lang])


class Screened(NamedTuple):
    """What screening says about one row. Sent between processes as a plain tuple in this field order:
    pickling a plain tuple costs half as much as a named one, and a million cross twice."""

    line: int
    source: str | None  # cleaned text (tasks.textnorm.clean), None when the record had no pair
    target: str | None
    reasons: tuple[tuple[str, str], ...]  # (reason, detail) for every filter it failed; () passed all
    pair_key: int = 0  # the normalized pair: equal for duplicates
    exact_key: int = 0  # the cleaned pair: equal only for exact duplicates
    source_key: int = 0  # the normalized source: test-set leakage, and the split's hash
    record: str = ""  # the clean.jsonl line, for a pair that passed
    source_words: int = 0
    target_words: int = 0


class Screener:
    def __init__(self, limits, identifier=None):
        self.checker = filters.PairChecker(limits, identifier)
        self.source_lang, self.target_lang = limits.source_lang, limits.target_lang

    def screen(self, name: str, rows: list[tuple]) -> list[tuple]:
        """The Screened fields, as a plain tuple, of each row (a Row or a plain tuple of its fields)."""
        clean, quote = textnorm.clean, _json_string
        readable = [(clean(row[1]), clean(row[2])) for row in rows if not row[3]]
        verdicts = iter(zip(readable, self.checker.reasons_many(readable)))
        prefix, middle = f'{{"translation": {{{quote(self.source_lang)}: ', f", {quote(self.target_lang)}: "
        suffix = f'}}, "file": {quote(name)}, "line": '
        out = []
        for line, source, target, problem, reason in rows:
            if problem:
                out.append((line, source and clean(source), target and clean(target), ((reason, problem),),
                            0, 0, 0, "", 0, 0))
                continue
            (source, target), found = next(verdicts)
            if found:
                out.append((line, source, target, tuple(found), 0, 0, 0, "", 0, 0))
                continue
            # The clean.jsonl line, built from JSON-quoted strings: a third of the cost of json.dumps(dict).
            record = f"{prefix}{quote(source)}{middle}{quote(target)}{suffix}{line}}}"
            out.append(_passed(line, source, target, record))
        return out


def _passed(line: int, source: str, target: str, record: str) -> tuple:
    """The Screened fields of a clean pair that passed every filter: the keys it is compared by."""
    key_of, match_key = textnorm.key_of, textnorm.match_key
    source_norm = match_key(source)
    # pair_key(source, target), inlined: the source's match key is needed twice on this hot path.
    return (line, source, target, (), key_of(f"{source_norm}\t{match_key(target)}"), key_of(f"{source}\t{target}"),
            key_of(textnorm.source_form(source, source_norm)), record, filters.word_count(source),
            filters.word_count(target))


def pair_key(source: str, target: str) -> int:
    """The key that makes two cleaned pairs duplicates of each other."""
    match_key = textnorm.match_key
    return textnorm.key_of(f"{match_key(source)}\t{match_key(target)}")


def pair_key_of_record(record: str, source_lang: str, target_lang: str) -> int:
    pair = json.loads(record)["translation"]
    return pair_key(pair[source_lang], pair[target_lang])


def from_cleaned(record: str, source_lang: str, target_lang: str) -> tuple:
    """The Screened fields of a row an earlier run cleaned and screened: its clean.jsonl line, which holds the
    pair and where it came from."""
    found = json.loads(record)
    pair = found["translation"]
    return _passed(found["line"], pair[source_lang], pair[target_lang], record.rstrip("\n"))


def worker_count(input_bytes: int) -> int:
    if raw := os.environ.get(WORKERS_ENV, "").strip():
        if not raw.isdigit():
            raise ValueError(f"{WORKERS_ENV} must be a whole number of processes, not {raw!r}")
        return max(1, int(raw))
    if input_bytes < PARALLEL_MIN_BYTES:
        return 1
    cpus = hardware.usable_cpus()
    return min(cpus, MAX_WORKERS)


class ScreeningPool:
    """Screens a file's rows in order: in `workers` processes when more than one, else in this process."""

    def __init__(self, limits, workers: int = 1):
        self.limits, self.workers = limits, workers
        self._pool = None
        self._local: Screener | None = None

    def __enter__(self) -> "ScreeningPool":
        if self.workers > 1:
            # spawn, not fork: the caller (an Airflow task, boto3) may hold threads and locks.
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.workers, initializer=_start_worker, initargs=(self.limits,))
        else:
            self._local = Screener(self.limits)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.terminate() if exc[0] else self._pool.close()
            self._pool.join()

    def screen(self, name: str, rows: Iterable[Row]) -> Iterator[tuple]:
        """Screened rows (as plain tuples of the Screened fields) in input order. When the file turns out broken
        midway (UnreadableFile), the rows read before the break are still yielded, then the error is raised."""
        if self._pool is None:
            for chunk in _chunks(rows):
                yield from self._local.screen(name, chunk)
            return
        pending: deque = deque()
        broken = None
        try:
            for chunk in _chunks(rows):
                pending.append(self._pool.apply_async(_screen_in_worker, (name, [tuple(row) for row in chunk])))
                # A bounded queue: the reader never runs far ahead of the workers, so memory stays flat.
                while len(pending) > 2 * self.workers:
                    yield from pending.popleft().get()
        except UnreadableFile as err:
            broken = err
        while pending:
            yield from pending.popleft().get()
        if broken is not None:
            raise broken


def _chunks(rows: Iterable[Row]) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    try:
        for row in rows:
            chunk.append(row)
            if len(chunk) == CHUNK_ROWS:
                yield chunk
                chunk = []
    except UnreadableFile:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


_worker_screener: Screener | None = None


def _start_worker(limits) -> None:
    global _worker_screener
    _worker_screener = Screener(limits)


def _screen_in_worker(name: str, rows: list[tuple]) -> list[tuple]:
    return _worker_screener.screen(name, rows)
