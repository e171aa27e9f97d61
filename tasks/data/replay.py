"""Replay: mix a share of general-domain pairs into the training data, so fine-tuning does not forget.

Fine-tuning only on a narrow domain pulls a model away from everything else it could translate
(catastrophic forgetting). Rehearsing some general-domain pairs alongside the domain pairs is the cheapest
remedy that works with any model and any adaptation method.

`replay_fraction` is the share of the *training mix* that is general-domain: for N domain pairs, the mix
gets round(N × f / (1 − f)) general pairs, so f = 0.2 means one pair in five is general. They are picked by
a seeded hash of their normalized source, without replacement: the same data and seed give the same
sample on every machine and every retry, and a larger general corpus keeps most of an earlier sample.
When the general corpus is too small, it is repeated as evenly as possible and the report says so.

Leakage: a general pair is never replayed when its normalized source is also in the run's validation or
test split, or in the general-domain *test* set (`general_eval_uri`) that evaluation scores for
forgetting; training on that set would hide exactly the regression it exists to catch.

Misalignment: with the alignment screen on (tasks/data/alignment.py), the sampled general pairs are screened with
the base model before they join the mix, as validation screens the domain's: a curated corpus can still hold
shifted lines. The refused ones leave the mix and go to `replay_rejects.jsonl` in the run directory, each with
its margin; the report counts them (`misaligned`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
import unicodedata
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from tasks import layout
from tasks.config import RunConfig
from tasks.data import alignment, textnorm
from tasks.io import formats, storage

log = logging.getLogger(__name__)

Pair = tuple[str, str]


class ReplayDataError(ValueError):
    """The general-domain replay data is missing or holds no usable pair."""


def source_key(text: str) -> str:
    """Sources that differ only in Unicode form, spacing or case are the same sentence."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip().lower()


def replay_count(domain_pairs: int, fraction: float) -> int:
    """How many general pairs make them `fraction` of a mix with `domain_pairs` domain pairs."""
    if not 0 <= fraction < 1:
        raise ValueError(f"replay fraction must be in [0, 1), not {fraction}")
    return round(domain_pairs * fraction / (1 - fraction))


def _sample_order(pairs: list[Pair], seed: int) -> list[Pair]:
    def key(pair: Pair) -> bytes:
        return hashlib.blake2b(f"{seed}\0{source_key(pair[0])}".encode(), digest_size=8).digest()

    return sorted(pairs, key=key)


def sample(general: list[Pair], count: int, seed: int) -> tuple[list[Pair], int]:
    """`count` pairs in seeded hash order, and how many full passes over `general` that took beyond one.

    Without replacement while `general` suffices; beyond that every pair is repeated as evenly as possible
    (whole passes, then the head of one more), which skews the sample less than random draws would.
    """
    if count <= 0:
        return [], 0
    if not general:
        raise ReplayDataError(f"{count} general-domain pairs wanted, none available")
    ordered = _sample_order(general, seed)
    passes, rest = divmod(count, len(ordered))
    return ordered * passes + ordered[:rest], passes - (rest == 0)


@dataclass(frozen=True)
class Mix:
    pairs: list[Pair]  # domain pairs first, then the replayed general pairs
    report: dict


def mix(domain: list[Pair], general: list[Pair], fraction: float, seed: int,
        exclude_sources: set[str] = frozenset()) -> Mix:
    """The training mix: all domain pairs plus replayed general ones (a pure function: no I/O). `exclude_sources`
    are held-out sources as textnorm.source_form writes them: the key that validation and split judge leakage by."""
    usable, seen, excluded = [], set(), 0
    for pair in general:
        key = source_key(pair[0])
        # Not this module's key: it folds neither NFKC, full case nor punctuation ("ﬁle"/"file", "Straße"/"STRASSE").
        if textnorm.source_form(pair[0]) in exclude_sources:
            excluded += 1
        elif key and key not in seen:
            seen.add(key)
            usable.append(pair)
    wanted = replay_count(len(domain), fraction)
    replayed, repeats = sample(usable, wanted, seed)
    if repeats:
        log.warning("replay: %d general pairs wanted but only %d usable; each is repeated about %.1f times",
                    wanted, len(usable), wanted / len(usable))
    total = len(domain) + len(replayed)
    return Mix(list(domain) + replayed, {
        "fraction_requested": fraction,
        "fraction_actual": round(len(replayed) / total, 4) if total else 0.0,
        "domain_pairs": len(domain),
        "general_pairs": len(replayed),
        "general_available": len(usable),
        "general_excluded_overlap": excluded,
        "general_duplicates_dropped": len(general) - len(usable) - excluded,
        "with_replacement": repeats > 0,
        "seed": seed,
    })


def _files(uri: str, scratch: Path) -> list[tuple[str, str, Path]]:
    """(its URI, name, local path) of every file at `uri`: one file, a folder, or an S3 key or prefix."""
    if storage.is_s3(uri):
        if not uri.endswith("/") and storage.exists(uri):
            name = uri.rsplit("/", 1)[-1]
            return [(uri, name, storage.download(uri, scratch / name))]
        return [(o.uri, o.relpath, storage.download(o.uri, storage.local_path(scratch, o.relpath)))
                for o in storage.list_objects(uri)]
    if Path(uri).is_file():
        return [(uri, Path(uri).name, Path(uri))]
    objects = storage.list_objects(uri)
    for link in (o for o in objects if o.link):
        log.warning("skipping %s: a symbolic link (only regular files are read)", link.relpath)
    return [(o.uri, o.relpath, Path(o.uri)) for o in objects if not o.link]


class Origins:
    """Where the pairs read_parallel returns come from, kept small: each file's URI with the index of its first pair,
    and one line number per pair (8 bytes; a dict by pair cost ~125 MiB per million general pairs, held through
    the step for the few pairs the screen refuses)."""

    def __init__(self) -> None:
        self.files: list[tuple[int, str]] = []  # (index of its first pair, its URI), in reading order
        self.lines = array("q")

    def of(self, pairs: list[Pair], wanted) -> dict[Pair, tuple[str, int]]:
        """(file URI, line) where each pair of `wanted` first appears in `pairs`, the list read with these origins."""
        starts, found = [start for start, _ in self.files], {}
        for index, pair in enumerate(pairs):
            if pair in wanted and pair not in found:
                found[pair] = (self.files[bisect_right(starts, index) - 1][1], self.lines[index])
        return found


def read_parallel(uri: str, source_lang: str, target_lang: str, origins: Origins | None = None) -> list[Pair]:
    """Every readable pair at `uri`, in any format tasks/io/formats.py reads; unreadable files are skipped. With
    `origins`, the file (its URI) and line of each pair are recorded in it.

    Replay and general-domain data are curated corpora, so they get no pair filtering here beyond
    dropping records that are not a pair or have an empty side.
    """
    pairs: list[Pair] = []
    with tempfile.TemporaryDirectory() as scratch:
        try:
            files = _files(uri, Path(scratch))
        except FileNotFoundError:
            raise ReplayDataError(f"{uri}: no such file or folder") from None
        for file_uri, name, path in files:
            try:
                rows = list(formats.read_rows(path, name, source_lang, target_lang, Path(scratch)))
            except formats.UnreadableFile as err:
                log.warning("skipping %s: %s", name, err)
                continue
            if origins is not None:
                origins.files.append((len(pairs), file_uri))
            for r in rows:
                if r.problem is None and r.source and r.source.strip() and r.target and r.target.strip():
                    pairs.append((r.source, r.target))
                    if origins is not None:
                        origins.lines.append(r.line)
    return pairs


def _screened(config: RunConfig, mixed: Mix, domain_pairs: int, general: list[Pair], origins: Origins) -> Mix:
    """The mix without the replayed pairs the alignment screen refuses (each distinct pair is judged once). More
    than `max_misaligned_rate` of them refused (of a sample of 50 or more) is a broken corpus (shifted, sorted), as
    for new data: the run fails, rather than train with little or no replay, the forgetting it is there to prevent
    unchecked."""
    replayed = mixed.pairs[domain_pairs:]
    distinct = list(dict.fromkeys(replayed))
    screened = alignment.judge(config, [s for s, _ in distinct], [t for _, t in distinct])
    refused = {distinct[at]: at for at in range(len(distinct)) if screened.misaligned(at)}
    where = origins.of(general, refused)
    rejects = "".join(json.dumps({"file": where.get(pair, (config.replay_data_uri,))[0],
                                  "line": where.get(pair, (None, None))[1], "source": pair[0], "target": pair[1],
                                  "reasons": [{"reason": "misaligned", "detail": alignment.rejection(screened, at)}]},
                                 ensure_ascii=False) + "\n" for pair, at in refused.items())
    storage.write_text(config.uri(layout.REPLAY_REJECTS), rejects)
    # From as many pairs as a file is judged broken on: one refusal among a sample of 3 is 33 %, not a broken corpus.
    if len(distinct) >= alignment.BROKEN_FILE_MIN_PAIRS and len(refused) / len(distinct) > config.max_misaligned_rate:
        raise ReplayDataError(
            f"replay_data_uri {config.replay_data_uri}: the alignment screen refused {len(refused)} of "
            f"{len(distinct)} sampled general pairs ({len(refused) / len(distinct):.0%} > max_misaligned_rate "
            f"{config.max_misaligned_rate:.0%}): lines shifted or sorted? They are listed with their files and "
            f"lines in {config.uri(layout.REPLAY_REJECTS)}")
    kept = [pair for pair in replayed if pair not in refused]
    log.info("replay: the alignment screen refused %d of %d distinct general pairs (%s)", len(refused),
             len(distinct), config.uri(layout.REPLAY_REJECTS))
    total = domain_pairs + len(kept)
    return Mix(mixed.pairs[:domain_pairs] + kept, {
        **mixed.report, "general_pairs": len(kept), "fraction_actual": round(len(kept) / total, 4) if total else 0.0,
        "alignment": {**alignment.summary(screened, len(refused)), "rejects": layout.REPLAY_REJECTS}})


def held_out_sources(config: RunConfig) -> set[str]:
    """Sources that replay must never train on (textnorm.source_form): the validation and test splits, and the
    general-domain test set when the run has one."""
    held_out: set[str] = set()
    for name in ("validation", "test"):
        uri = config.uri(layout.split_file(name))
        if storage.exists(uri):
            held_out.update(textnorm.source_form(s) for s, _ in
                            read_parallel(uri, config.source_lang, config.target_lang))
    general_eval_uri = getattr(config, "general_eval_uri", "")  # a param that arrives with the general test set
    if general_eval_uri:
        held_out.update(textnorm.source_form(s) for s, _ in
                        read_parallel(general_eval_uri, config.source_lang, config.target_lang))
    return held_out


def for_run(config: RunConfig, domain: list[Pair]) -> Mix:
    """The run's training mix: `domain` plus replayed pairs from `replay_data_uri`."""
    origins = Origins()
    general = read_parallel(config.replay_data_uri, config.source_lang, config.target_lang, origins)
    if not general:
        raise ReplayDataError(f"replay_data_uri {config.replay_data_uri}: no readable parallel pairs there")
    mixed = mix(domain, general, config.replay_fraction, config.seed, held_out_sources(config))
    if config.alignment_screen and len(mixed.pairs) > len(domain):
        mixed = _screened(config, mixed, len(domain), general, origins)
    log.info("replay: %d general pairs (%.1f%% of the mix; %d usable, %d held out as evaluation data) from %s",
             mixed.report["general_pairs"], 100 * mixed.report["fraction_actual"],
             mixed.report["general_available"], mixed.report["general_excluded_overlap"], config.replay_data_uri)
    return Mix(mixed.pairs, {**mixed.report, "uri": config.replay_data_uri})
