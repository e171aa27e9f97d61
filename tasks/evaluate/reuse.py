"""Translations that carry over between runs of one pipeline: the base model's and the champion's.

Every week the evaluate step translates the frozen test set with three models, and two of them did the same work
in an earlier run: the base model (the same pinned commit on the same sentences) and the champion (last week's
candidate, published since). Their translations are the same when everything that decides them is the same, so
the step keeps each model's translations of each set in the pipeline's state area
(`decoded/<model fingerprint>/<key>.json`), under a key made of exactly that:

- the model: the SHA-256 of its folder, every file but the two a release adds (the model card `README.md` and
  `release.json`, which loading never reads), so a champion is found under the decode it had as a candidate;
- the sentences: the SHA-256 of the source lines;
- the language pair and the decode settings (beam, length limit, batch budgets, source length);
- the engine that decoded: its name, device, precision, the versions of the libraries it runs on
  (transformers, tokenizers, sentencepiece, torch; ctranslate2 and pip's cuBLAS for that engine), and the hardware
  (the GPU's model, compute capability, CUDA and cuDNN versions; the CPU's model, features and CPU count);
- the project's own decoding code: the SHA-256 of the modules that batch, search, detokenize and clean the
  translations (DECODING_CODE), so a fix to any of them decodes afresh.

A key matches or it does not: a new base commit, a new test set, another beam size, another library version,
another GPU model or a change to the decoding code all decode afresh. The candidate is always decoded. An entry
that cannot be read, or is not one line per sentence under its own key, is decoded again, with a warning. Each
decode is kept once done, whatever the run's outcome later: it is a fact about the model and the sentences, not
about the run. Entries are trusted as the frozen test set is: only the pipeline's workers should write the
artifact store. Deleting `decoded/` makes the next run decode everything again.

Each run notes in its three models' folders that it used them (`used.json`), and once it has decoded, deletes
the folders of the models no run used for KEEP_DAYS days (`prune`): mostly candidates that were never promoted.
So the store holds the models of the last five weeks' runs, whatever the number of weeks.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from tasks import layout
from tasks.config import RunConfig
from tasks.evaluate import scoring
from tasks.evaluate.decoding import DecodeSettings
from tasks.io import digest, storage

log = logging.getLogger(__name__)

RELEASE_ADDITIONS = ("README.md", "release.json")  # what a published release holds beyond the trained model's folder
USED = "used.json"  # in each model's folder: when a run last used its kept translations
KEEP_DAYS = 35  # five weekly runs: a model no run used for so long is deleted (`prune`)
# The project's modules whose code decides a translation, beside the model, the settings and the libraries: the
# batches and their padding, the engines' search and ranking, the families' prefixes and language codes, the
# clean-up of each output line.
DECODING_CODE = ("evaluate/decoding.py", "evaluate/engines.py", "evaluate/ctranslate2_engine.py",
                 "evaluate/transformers_engine.py", "evaluate/scoring.py", "train/families.py", "train/batching.py",
                 "train/precision.py")
_TASKS = Path(__file__).resolve().parents[1]


def model_fingerprint(folder: Path) -> str:
    """The SHA-256 of what decides a model's translations: its files, but not the card and record of a release."""
    if not any(p.is_file() for p in Path(folder).rglob("*")):
        raise FileNotFoundError(f"{folder}: no model files to fingerprint")
    return digest.of_folder(folder, leave_out=RELEASE_ADDITIONS)


def code_revision() -> str:
    """The SHA-256 of DECODING_CODE's sources."""
    return digest.of_bytes(b"".join(f"{name}\0{digest.of_file(_TASKS / name)}\n".encode() for name in DECODING_CODE))


class KeptDecodes:
    """The pipeline's kept translations, for the sets one evaluate run translates (set name → source lines)."""

    def __init__(self, config: RunConfig, settings: DecodeSettings, sets: dict[str, Sequence[str]]):
        self.config, self.settings = config, settings
        self.sentences = {name: len(sources) for name, sources in sets.items()}
        self.sources = {name: digest.of_bytes("\n".join(sources).encode()) for name, sources in sets.items()}
        self.code = code_revision()

    def key(self, model: str, name: str, engine: dict) -> dict:
        """Everything that decides the translations of set `name` by the model with fingerprint `model`."""
        return {"model": model, "sources": self.sources[name],
                "pair": f"{self.config.source_lang}-{self.config.target_lang}",
                "settings": self.settings.describe(), "code": self.code,
                # The family is the model's own (its files say it), and the others match the candidate's engine.
                "engine": {k: v for k, v in engine.items() if k != "family"}}

    def uri(self, key: dict) -> str:
        """decoded/<model fingerprint>/<SHA-256 of the key>.json: one folder per model, for `prune`."""
        return self.config.state_uri(layout.DECODED, key["model"],
                                     digest.of_bytes(json.dumps(key, sort_keys=True).encode()) + ".json")

    def find(self, model: str, names: Sequence[str], engine: dict) -> dict[str, dict] | None:
        """The kept entries of every set in `names` for this model and engine, or None unless all are kept."""
        found = {}
        for name in names:
            key = self.key(model, name, engine)
            uri = self.uri(key)
            try:
                entry = storage.read_json_or(uri)
            except Exception as err:  # noqa: BLE001 - garbled, or a store that refuses: it costs a decode
                log.warning("%s cannot be read (%s: %s): decoding again", uri, type(err).__name__, err)
                return None
            if entry is None:
                return None
            if not self._fits(entry, key, name):
                log.warning("%s is not a decode of these %d sentences under its key: decoding again", uri,
                            self.sentences[name])
                return None
            found[name] = entry
        return found

    def _fits(self, entry, key: dict, name: str) -> bool:
        """An entry as `keep` writes it, for this key: one line per sentence (as eval/'s files hold them, see
        scoring.as_line), and the run that decoded them."""
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("run_dir"), str):
            return False
        hypotheses = entry.get("hypotheses")
        return isinstance(hypotheses, list) and len(hypotheses) == self.sentences[name] and \
            all(isinstance(h, str) and h == scoring.as_line(h) for h in hypotheses)

    def keep(self, model: str, name: str, engine: dict, hypotheses: list[str], seconds: float) -> None:
        """Keep one decode for later runs. A store that cannot take it costs those runs a decode, nothing more."""
        key = self.key(model, name, engine)
        entry = {"key": key, "hypotheses": hypotheses, "seconds": round(seconds, 2), "run_dir": self.config.run_dir,
                 "decoded": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            storage.write_json(self.uri(key), entry)
        except Exception as err:  # noqa: BLE001 - the run's own results do not depend on it
            log.warning("could not keep the %s translations for later runs (%s: %s)", name, type(err).__name__, err)

    def mark_used(self, models: set[str]) -> None:
        """Note in each model's folder that this run uses it (decoded/<model>/used.json), before any of its
        translations are looked up or kept: `prune` keeps the models some run used lately."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for model in models:
            try:
                storage.write_json(self.config.state_uri(layout.DECODED, model, USED), {"used": now,
                                                                                        "run_dir": self.config.run_dir})
            except Exception as err:  # noqa: BLE001 - then `prune` may delete them: a decode, nothing more
                log.warning("could not mark the kept translations of %s as used (%s: %s)", model, type(err).__name__,
                            err)

    def prune(self) -> None:
        """Delete the kept translations of the models no run of the pipeline used for KEEP_DAYS (their folder's
        used.json; a folder without one is not this step's). Next week's base model and champion are among this
        week's three, so what is deleted is mostly candidates that were never promoted; a reproduction or a run
        of the pipeline going on at the same time keeps its models, and deletes none of the others'. Any failure
        here costs a later run a decode, nothing more."""
        prefix = self.config.state_uri(layout.DECODED)
        try:
            folders: dict[str, list[storage.StoredObject]] = {}
            for stored in storage.list_objects(prefix):
                folders.setdefault(stored.relpath.split("/", 1)[0], []).append(stored)
            stale = [model for model, objects in folders.items() if not self._used_lately(prefix, model, objects)]
            for model in stale:
                for stored in folders[model]:
                    storage.delete(stored.uri)
        except Exception as err:  # noqa: BLE001 - the run's own results do not depend on it
            if not isinstance(err, FileNotFoundError):
                log.warning("could not prune %s (%s: %s)", prefix, type(err).__name__, err)
            return
        if stale:
            log.info("deleted the kept translations of %d models no run used for %d days from %s", len(stale),
                     KEEP_DAYS, prefix)

    @staticmethod
    def _used_lately(prefix: str, model: str, objects: list) -> bool:
        if not any(o.relpath == f"{model}/{USED}" for o in objects):
            return False
        try:
            used = datetime.fromisoformat(storage.read_json(storage.join(prefix, model, USED))["used"])
        except Exception:  # noqa: BLE001 - a garbled mark: the folder goes, a decode at most
            return False
        return datetime.now(timezone.utc) - used < timedelta(days=KEEP_DAYS)
