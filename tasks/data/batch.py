"""What needs the whole batch at once: duplicates, test-set leakage, per-object counts, examples, lengths.

Rows arrive screened (tasks/data/screening.py), object by object: first the cleaned copies of objects consumed
by earlier runs (carried), then the new objects. Each row ends in exactly one place:

- new rows: kept (clean.jsonl), rejected with every reason (rejects.jsonl: pair filters, unreadable records,
  `leakage`), or deduplicated (rejects.jsonl, reason `duplicate`); rows = kept + rejected + deduplicated per
  object, checked when the report is built;
- carried rows (they passed the filters when their object was validated): kept, deduplicated, or `leakage`
  (both in rejects.jsonl);
- re-screened carried rows (their copy was cleaned by other rules than this run's, tasks/data/screening.rules):
  screened again like new rows, and counted apart from them (`rescreened`), so they never pass for new data.

A new row that passed the pair filters is also written to its object's cleaned copy, the cache that later runs
carry (tasks/data/consumed.py). Examples in the report are truncated: the report travels with the model.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import IO, Iterable, Mapping

from tasks.data import filters, screening

COUNTS = ("rows", "kept", "rejected", "deduplicated")
CARRIED_COUNTS = ("rows", "kept", "deduplicated", "leakage")
EXAMPLES_PER_REASON = 3
EXAMPLE_CHARS = 200


def _short(text: str | None) -> str | None:
    if text is None or len(text) <= EXAMPLE_CHARS:
        return text
    return f"{text[:EXAMPLE_CHARS]}… [{len(text) - EXAMPLE_CHARS} more characters]"


class Batch:
    def __init__(self, leakage_keys: Mapping[int, str], clean: IO[str], rejects: IO[str]):
        """`leakage_keys`: the source keys of the test sets (each with the name of its set) that training must
        never see."""
        self.leakage_keys, self.clean, self.rejects = leakage_keys, clean, rejects
        self.files: dict[str, dict] = {}
        self.carried: dict[str, dict] = {}
        self.rescreened: dict[str, dict] = {}
        self.rescreened_reasons: Counter = Counter()  # their share of `reasons`
        self.unreadable: dict[str, str] = {}
        self.reasons: Counter = Counter()
        self.examples: dict[str, list] = defaultdict(list)
        self.first_seen: dict[int, int] = {}  # normalized pair → where it was kept first (object index, line)
        self.exact_seen: set[int] = set()
        self.names: list[str] = []
        self.lengths = {k: Counter() for k in ("source_chars", "target_chars", "source_words", "target_words")}

    def counts(self, name: str) -> dict:
        """The counts of a new object (created empty: an object with no rows still gets its entry), or of a
        carried one being screened again."""
        if name in self.rescreened:
            return self.rescreened[name]
        return self.files.setdefault(name, dict.fromkeys(COUNTS, 0))

    def rescreen(self, name: str) -> None:
        """The rows `take` gets under `name` from now on are a carried copy's, screened again."""
        self.rescreened[name] = dict.fromkeys(COUNTS, 0)

    def take(self, name: str, screened: Iterable[tuple], cache: IO[str] | None = None) -> None:
        """Rows of a new object, as screening yields them; the ones that pass the filters go to `cache` too."""
        counts, index = self.counts(name), self._index(name)
        for line, source, target, reasons, pair_key, exact_key, source_key, record, source_words, target_words \
                in screened:  # the fields of screening.Screened
            counts["rows"] += 1
            if not reasons and cache is not None:
                cache.write(record + "\n")
            if not reasons and source_key in self.leakage_keys:
                reasons = (("leakage", f"source is in {self.leakage_keys[source_key]}"),)
            if reasons:
                counts["rejected"] += 1
                self._reject(name, line, source, target, reasons)
            elif self._keep(name, index, line, source, target, pair_key, exact_key, record, source_words,
                            target_words):
                counts["kept"] += 1
            else:
                counts["deduplicated"] += 1

    def take_carried(self, name: str, records: Iterable[str], source_lang: str, target_lang: str) -> None:
        """The cleaned copy of an object consumed by an earlier run: no filters again, but duplicates and
        leakage are judged against this run's corpus and test sets."""
        counts, index = self.carried.setdefault(name, dict.fromkeys(CARRIED_COUNTS, 0)), self._index(name)
        for record in records:
            line, source, target, _, pair_key, exact_key, source_key, record, source_words, target_words = \
                screening.from_cleaned(record, source_lang, target_lang)
            counts["rows"] += 1
            if source_key in self.leakage_keys:
                counts["leakage"] += 1
                self._write_reject(name, line, source, target,
                                   (("leakage", f"source is in {self.leakage_keys[source_key]}"),))
            elif self._keep(name, index, line, source, target, pair_key, exact_key, record, source_words,
                            target_words):
                counts["kept"] += 1
            else:
                counts["deduplicated"] += 1

    def retract(self, name: str, line: int, source: str, target: str, reason: str, detail: str) -> None:
        """A kept new row judged later, once the whole batch was read (the alignment screen): it moves from
        kept to rejected, with its reason. Its line in clean.jsonl is the caller's to drop."""
        counts = self.counts(name)
        counts["kept"] -= 1
        counts["rejected"] += 1
        src_chars, tgt_chars, src_words, tgt_words = self.lengths.values()
        for histogram, value in ((src_chars, len(source)), (tgt_chars, len(target)),
                                 (src_words, filters.word_count(source)), (tgt_words, filters.word_count(target))):
            histogram[value] -= 1
            if not histogram[value]:
                del histogram[value]
        self._reject(name, line, source, target, ((reason, detail),))

    def _index(self, name: str) -> int:
        self.names.append(name)
        return len(self.names) - 1

    def _keep(self, name, index, line, source, target, pair_key, exact_key, record, source_words,
              target_words) -> bool:
        earlier = self.first_seen.get(pair_key)
        if earlier is not None:
            how = "" if exact_key in self.exact_seen else " after normalization (case, spacing, Unicode forms)"
            where = f"{self.names[earlier >> 40]}:{earlier & (2**40 - 1)}"
            self._reject(name, line, source, target, (("duplicate", f"same pair as {where}{how}"),))
            return False
        self.first_seen[pair_key] = (index << 40) | line
        self.exact_seen.add(exact_key)
        self.clean.write(record + "\n")
        src_chars, tgt_chars, src_words, tgt_words = self.lengths.values()
        src_chars[len(source)] += 1
        tgt_chars[len(target)] += 1
        src_words[source_words] += 1
        tgt_words[target_words] += 1
        return True

    def _reject(self, name: str, line: int, source, target, reasons) -> None:
        for reason, detail in reasons:
            if reason != "duplicate":
                self.reasons[reason] += 1
                if name in self.rescreened:
                    self.rescreened_reasons[reason] += 1
            if len(self.examples[reason]) < EXAMPLES_PER_REASON:
                self.examples[reason].append({"file": name, "line": line, "detail": _short(detail),
                                              "source": _short(source), "target": _short(target)})
        self._write_reject(name, line, source, target, reasons)

    def _write_reject(self, name: str, line: int, source, target, reasons) -> None:
        found = [{"reason": reason, "detail": detail} for reason, detail in reasons]
        self.rejects.write(json.dumps({"file": name, "line": line, "reasons": found, "source": source,
                                       "target": target}, ensure_ascii=False) + "\n")

    def totals(self) -> dict:
        """Counts over the new objects, the carried ones and the re-screened ones; raises when a row went missing."""
        new, rescreened = Counter(), Counter()
        for total, group in ((new, self.files), (rescreened, self.rescreened)):
            for name, counts in group.items():
                if counts["rows"] != counts["kept"] + counts["rejected"] + counts["deduplicated"]:
                    raise AssertionError(f"row accounting broken for {name}: {counts}")  # a bug, never the data
                total.update({k: counts[k] for k in COUNTS})
        carried = Counter()
        for name, counts in self.carried.items():
            if counts["rows"] != counts["kept"] + counts["deduplicated"] + counts["leakage"]:
                raise AssertionError(f"row accounting broken for carried {name}: {counts}")
            carried.update(counts)
        return {"new": {k: new[k] for k in COUNTS}, "carried": {k: carried[k] for k in CARRIED_COUNTS},
                "rescreened": {k: rescreened[k] for k in COUNTS}}
