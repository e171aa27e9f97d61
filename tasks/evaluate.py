"""evaluate: translate the frozen test split with the base model, the candidate and the champion, then score
them with sacrebleu (BLEU, chrF, TER) and test the differences with the paired bootstrap.

Every model decodes with the same settings and the same engine (tasks/decoding.py), and every number is
stored with its signature. eval/ holds the text behind each number, one sentence per line, so the
`sacrebleu` CLI recomputes any of them (see tasks/scoring.py):

    eval/test.src  test.ref  test.{base,candidate,champion}.hyp  test.{role}.sentences.jsonl
    eval/general.* the same for the general-domain set, when the run has one (base and candidate only)
    eval/scores.json   written last: its presence marks the step done
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path

from tasks import champion, decoding, scoring, split, storage, train
from tasks.config import RunConfig

log = logging.getLogger(__name__)

EVAL = "eval"
SCORES = "scores.json"
TEST, GENERAL = "test", "general"
GENERAL_SPLIT = split.GENERAL_TEST  # splits/general_test.jsonl, present when the run has a general-domain set
ROLES = ("base", "candidate", "champion")


def hyp_file(test_set: str, role: str) -> str:
    return f"{test_set}.{role}.hyp"


def sentences_file(test_set: str, role: str) -> str:
    return f"{test_set}.{role}.sentences.jsonl"


def result(config: RunConfig) -> dict | None:
    """The stored scores, or None when evaluation has not finished for this run."""
    uri = config.uri(EVAL, SCORES)
    return storage.read_json(uri) if storage.exists(uri) else None


def _champion_lookup(config: RunConfig) -> dict:
    found = champion.result(config)
    if found is None:
        raise FileNotFoundError(f"{config.uri(champion.RECORD)}: no champion lookup for this run; run the "
                                "champion step first (python -m tasks champion --run-dir ...)")
    return found


def _models(config: RunConfig, found: dict, scratch: Path) -> dict[str, tuple[str, str]]:
    """role → (local model folder or Hub id, label); `found` is the champion step's record."""
    models = {"base": (config.base_model, config.base_model),
              "candidate": (str(storage.local_dir_for(config.uri(train.MODEL), scratch / "candidate")),
                            config.uri(train.MODEL))}
    if found["found"]:
        models["champion"] = (str(storage.local_dir_for(found["model_uri"], scratch / "champion")), found["label"])
    return models


def _read_set(config: RunConfig, name: str, scratch: Path) -> tuple[list[str], list[str]] | None:
    uri = split.split_uri(config, name)
    if not storage.exists(uri):
        return None
    sources, references = train.read_pairs(storage.download(uri, scratch / f"{name}.jsonl"), config.source_lang,
                                           config.target_lang)
    return [scoring.as_line(s) for s in sources], [scoring.as_line(r) for r in references]


def open_decoders(models: dict[str, tuple[str, str]], settings: decoding.DecodeSettings, config: RunConfig,
                  scratch: Path, probe: tuple[list[str], list[str]]) -> dict[str, decoding.Decoder]:
    """One decoder per model, all on the same engine: if any model cannot use CTranslate2, none does."""
    def open_all(s: decoding.DecodeSettings) -> dict[str, decoding.Decoder]:
        return {role: decoding.open_decoder(location, s, config.source_lang, config.target_lang,
                                            work_dir=scratch / f"ct2-{role}", probe=probe)
                for role, (location, _) in models.items()}

    decoders = open_all(settings)
    engines = {d.engine for d in decoders.values()}
    if len(engines) > 1:
        log.warning("models would decode with different engines %s; decoding all with transformers so the "
                    "comparison stays fair", sorted(engines))
        decoders = open_all(dataclasses.replace(settings, engine="transformers"))
    return decoders


def score_set(hypotheses: dict[str, list[str]], references: list[str], target_lang: str) -> dict:
    """Scores of each role on one test set, with 95% intervals and the candidate's paired tests."""
    scores = {role: scoring.corpus_scores(hyps, references, target_lang) for role, hyps in hypotheses.items()}
    significance = {}
    for other in ("base", "champion"):
        if other in hypotheses:
            test = scoring.paired_bootstrap((other, hypotheses[other]), ("candidate", hypotheses["candidate"]),
                                            references, target_lang)
            significance[f"candidate_vs_{other}"] = test
            scores[other]["ci"] = {m: test[m]["baseline_ci"] for m in scoring.METRICS}
            scores["candidate"].setdefault("ci", {m: test[m]["system_ci"] for m in scoring.METRICS})
    return {"sentences": len(references), **scores, "significance": significance}


def scores_from(hypotheses: dict[str, dict[str, list[str]]], references: dict[str, list[str]], target_lang: str,
                *, labels: dict[str, str], speed: dict | None = None, decoding: dict | None = None,
                champion_lookup: dict | None = None) -> dict:
    """scores.json from the hypotheses of each test set (test, and general if present) and model role."""
    results = {name: score_set(hypotheses[name], references[name], target_lang) for name in hypotheses}
    test = results[TEST]
    scores = {"test_sentences": test["sentences"], "decoding": decoding or {}, "champion": None,
              "champion_lookup": champion_lookup}
    for role, label in labels.items():
        scores[role] = {**test[role], "model": label, **(speed or {}).get(role, {})}
    scores.update({
        "significance": test["significance"],
        "general": results.get(GENERAL),
        "bootstrap": {"resamples": scoring.BOOTSTRAP_RESAMPLES, "seed": scoring.BOOTSTRAP_SEED,
                      "test": "paired bootstrap (sacrebleu.significance, two-sided)"},
    })
    return scores


def run(config: RunConfig) -> dict:
    if (done := result(config)) is not None:
        log.info("evaluate already done for this run")
        return done
    settings = decoding.DecodeSettings.from_config(config)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        sets = {TEST: _read_set(config, "test", scratch)}
        if (general := _read_set(config, GENERAL_SPLIT, scratch)) is not None:
            sets[GENERAL] = general
        lookup = _champion_lookup(config)
        models = _models(config, lookup, scratch)
        log.info("scoring %s on %s with %s", sorted(models),
                 {name: len(pairs[0]) for name, pairs in sets.items()}, settings.describe())
        decoders = open_decoders(models, settings, config, scratch, probe=sets[TEST])
        engine = next(iter(decoders.values())).describe()
        hypotheses: dict[str, dict[str, list[str]]] = {name: {} for name in sets}
        speed = {}
        for role, decoder in decoders.items():
            for name, (sources, _) in sets.items():
                if name == GENERAL and role == "champion":
                    continue  # forgetting is measured against the base model only
                hyps, seconds = decoder.timed_translate(sources)
                hypotheses[name][role] = [scoring.as_line(h) for h in hyps]
                if name == TEST:
                    speed[role] = {"seconds": round(seconds, 2),
                                   "sentences_per_s": round(len(sources) / max(seconds, 1e-9), 1)}
            log.info("%-9s decoded by %s in %.1fs", role, decoder.describe(), speed[role]["seconds"])
        del decoders

    references = {name: refs for name, (_, refs) in sets.items()}
    scores = scores_from(hypotheses, references, config.target_lang, labels={r: m[1] for r, m in models.items()},
                         speed=speed, decoding={**settings.describe(), **engine},
                         champion_lookup=lookup)
    for role in models:
        log.info("%-9s BLEU %6.2f  chrF %6.2f  TER %6.2f", role, scores[role]["bleu"], scores[role]["chrf"],
                 scores[role]["ter"])
    _write_files(config, sets, hypotheses)
    storage.write_json(config.uri(EVAL, SCORES), scores)  # last: its presence marks the step done
    return scores


def _write_files(config: RunConfig, sets: dict, hypotheses: dict) -> None:
    def lines(texts) -> str:
        return "".join(t + "\n" for t in texts)

    for name, (sources, references) in sets.items():
        storage.write_text(config.uri(EVAL, f"{name}.src"), lines(sources))
        storage.write_text(config.uri(EVAL, f"{name}.ref"), lines(references))
        for role, hyps in hypotheses[name].items():
            storage.write_text(config.uri(EVAL, hyp_file(name, role)), lines(hyps))
            per_sentence = scoring.sentence_scores(hyps, references, config.target_lang)
            storage.write_text(config.uri(EVAL, sentences_file(name, role)),
                               lines(json.dumps(s) for s in per_sentence))
