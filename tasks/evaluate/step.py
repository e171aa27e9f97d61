"""evaluate: translate the frozen test split with the base model, the candidate and the champion, then score
them with sacrebleu (BLEU, chrF, TER) and test the differences with the paired bootstrap.

Every model decodes with the same settings and the same engine (tasks/evaluate/decoding.py), and every number is
stored with its signature. The base model's and the champion's translations are usually the same as in an earlier
run of the pipeline (the same weights on the same frozen sentences, with the same settings and engine): they are
then taken from the pipeline's kept decodes instead of decoded again (tasks/evaluate/reuse.py; `reused_from` in
scores.json names the run that decoded them). The candidate always decodes. eval/ holds the text behind each
number, one sentence per line, so the `sacrebleu` CLI recomputes any of them (see tasks/evaluate/scoring.py):

    eval/test.src  test.ref  test.{base,candidate,champion}.hyp  test.{role}.sentences.jsonl
    eval/general.* the same for the general-domain set, when the run has one (base and candidate only)
    eval/scores.json   written last: its presence marks the step done; `step_seconds` says where the step's time
                       went: fetching the models (the candidate and the champion from the store, the base model's
                       pinned commit from the Hub); opening them (fingerprinting, loading, converting,
                       checking); decoding every set; scoring and writing these files
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

from tasks import hub_models, layout
from tasks.config import RunConfig
from tasks.evaluate import champion, decoding, engines, outputs, reuse, scoring
from tasks.io import digest, storage
from tasks.io.pairs import read_pairs

log = logging.getLogger(__name__)

TEST, GENERAL = layout.TEST, layout.GENERAL


def result(config: RunConfig) -> dict | None:
    """The stored scores, or None when evaluation has not finished for this run."""
    return storage.read_json_or(config.uri(layout.SCORES))


def _champion_lookup(config: RunConfig) -> dict:
    found = champion.result(config)
    if found is None:
        raise FileNotFoundError(f"{config.uri(layout.CHAMPION_RECORD)}: no champion lookup for this run; run the "
                                "champion step first (python -m tasks champion --run-dir ...)")
    return found


def _models(config: RunConfig, found: dict, scratch: Path) -> dict[str, tuple[str, str]]:
    """role → (local model folder or Hub id, label); `found` is the champion step's record."""
    models = {"base": hub_models.local_copy(config, config.base_model),
              "candidate": (str(storage.local_dir_for(config.uri(layout.MODEL), scratch / "candidate")),
                            config.uri(layout.MODEL))}
    if found["found"]:
        models["champion"] = (str(storage.local_dir_for(found["model_uri"], scratch / "champion")), found["label"])
    return models


def _read_set(config: RunConfig, name: str, scratch: Path) -> tuple[list[str], list[str]] | None:
    uri = config.uri(layout.split_file(name))
    if not storage.exists(uri):
        return None
    sources, references = read_pairs(storage.download(uri, scratch / f"{name}.jsonl"), config.source_lang,
                                     config.target_lang)
    return [scoring.as_line(s) for s in sources], [scoring.as_line(r) for r in references]


def open_decoders(models: dict[str, tuple[str, str]], settings: decoding.DecodeSettings, config: RunConfig,
                  scratch: Path, probe: tuple[list[str], list[str]], find=None
                  ) -> tuple[dict[str, decoding.Decoder], dict[str, dict]]:
    """A decoder for each model that must translate, all on the same engine: if any model cannot use CTranslate2,
    none does. The candidate always translates, and its engine is the one the others match: `find(role, engine)`
    gives a role's kept translations for that engine (tasks/evaluate/reuse.py), or None; a role with them gets no
    decoder. Returns (decoders, kept translations by role)."""
    def open_one(role: str, s: decoding.DecodeSettings) -> decoding.Decoder:
        return engines.open_decoder(models[role][0], s, config.source_lang, config.target_lang,
                                    work_dir=scratch / f"ct2-{role}", probe=probe)

    def open_all(s: decoding.DecodeSettings) -> tuple[dict[str, decoding.Decoder], dict[str, dict]]:
        decoders = {"candidate": open_one("candidate", s)}
        engine = decoders["candidate"].describe()
        kept = {role: found for role in models
                if role != "candidate" and find is not None and (found := find(role, engine)) is not None}
        decoders.update({role: open_one(role, s) for role in models if role not in decoders and role not in kept})
        return decoders, kept

    decoders, kept = open_all(settings)
    used = {d.engine for d in decoders.values()}
    if len(used) > 1:
        log.warning("models would decode with different engines %s; decoding all with transformers so the "
                    "comparison stays fair", sorted(used))
        decoders, kept = open_all(dataclasses.replace(settings, engine="transformers"))
    return decoders, kept


def score_set(hypotheses: dict[str, list[str]], references: list[str], target_lang: str,
              sources: list[str] | None = None, per_sentence: dict | None = None) -> dict:
    """Scores of each role on one test set, with 95% intervals and the candidate's paired tests, and (given the
    sources) what the outputs look like (tasks/evaluate/outputs.py). Given `per_sentence`, each role's sentence
    scores go there, from the same statistics."""
    test_set = scoring.TestSet(references, target_lang)
    systems = {role: test_set.system(hyps) for role, hyps in hypotheses.items()}
    scores = {role: system.corpus_scores() for role, system in systems.items()}
    if per_sentence is not None:
        per_sentence.update({role: system.sentence_scores() for role, system in systems.items()})
    if sources is not None:
        for role, hyps in hypotheses.items():
            scores[role]["outputs"] = outputs.statistics(hyps, sources)
        if "champion" in hypotheses:
            scores["candidate"]["outputs"]["same_as_champion"] = outputs.identical_share(
                hypotheses["candidate"], hypotheses["champion"])
    significance = {}
    for other in ("base", "champion"):
        if other in hypotheses:
            test = test_set.paired_bootstrap((other, systems[other]), ("candidate", systems["candidate"]))
            significance[f"candidate_vs_{other}"] = test
            scores[other]["ci"] = {m: test[m]["baseline_ci"] for m in scoring.METRICS}
            scores["candidate"].setdefault("ci", {m: test[m]["system_ci"] for m in scoring.METRICS})
    return {"sentences": len(references), **scores, "significance": significance}


def scores_from(hypotheses: dict[str, dict[str, list[str]]], references: dict[str, list[str]], target_lang: str,
                *, labels: dict[str, str], sources: dict[str, list[str]] | None = None, speed: dict | None = None,
                decoding: dict | None = None, champion_lookup: dict | None = None,
                candidate_model: dict | None = None, per_sentence: dict | None = None) -> dict:
    """scores.json from the hypotheses of each test set (test, and general if present) and model role; given
    `per_sentence`, the sentence scores of each set and role go there."""
    results = {name: score_set(hypotheses[name], references[name], target_lang, (sources or {}).get(name),
                               None if per_sentence is None else per_sentence.setdefault(name, {}))
               for name in hypotheses}
    test = results[TEST]
    scores = {"test_sentences": test["sentences"], "decoding": decoding or {}, "champion": None,
              "champion_lookup": champion_lookup, "candidate_model": candidate_model}
    for role, label in labels.items():
        scores[role] = {**test[role], "model": label, **(speed or {}).get(role, {})}
    scores.update({
        "significance": test["significance"],
        "general": results.get(GENERAL),
        "bootstrap": {"resamples": scoring.BOOTSTRAP_RESAMPLES, "seed": scoring.BOOTSTRAP_SEED,
                      "test": "paired bootstrap (sacrebleu.significance; p one-sided, in the delta's direction)"},
    })
    return scores


def run(config: RunConfig) -> dict:
    if (done := result(config)) is not None:
        log.info("evaluate already done for this run")
        return done
    scoring.bleu(config.target_lang)  # a tokenizer missing here fails now, not after three models decoded
    settings = decoding.DecodeSettings.from_config(config)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        sets = {TEST: _read_set(config, "test", scratch)}
        if (general := _read_set(config, layout.GENERAL_TEST, scratch)) is not None:
            sets[GENERAL] = general
        lookup = _champion_lookup(config)
        fetching_started = time.perf_counter()
        models = _models(config, lookup, scratch)
        # What the gate decides on is bound to these exact weights: publish checks it uploads the same ones.
        candidate = {"uri": config.uri(layout.MODEL), "fingerprint": digest.of_folder(Path(models["candidate"][0]))}
        fetching = round(time.perf_counter() - fetching_started, 2)
        log.info("scoring %s on %s with %s", sorted(models),
                 {name: len(pairs[0]) for name, pairs in sets.items()}, settings.describe())
        hypotheses, speed, engine, phases = _decode_all(config, settings, sets, models, scratch)

    scoring_started = time.perf_counter()
    per_sentence: dict = {}
    scores = scores_from(hypotheses, {name: refs for name, (_, refs) in sets.items()}, config.target_lang,
                         labels={r: m[1] for r, m in models.items()},
                         sources={name: srcs for name, (srcs, _) in sets.items()}, speed=speed,
                         decoding={**settings.describe(), **engine}, champion_lookup=lookup,
                         candidate_model=candidate, per_sentence=per_sentence)
    for role in models:
        log.info("%-9s BLEU %6.2f  chrF %6.2f  TER %6.2f  outputs %s", role, scores[role]["bleu"],
                 scores[role]["chrf"], scores[role]["ter"], scores[role]["outputs"])
    _write_files(config, sets, hypotheses, per_sentence)
    # Where the step's time went, beside the decoding itself: what a GPU is reserved for but does not do.
    scores["step_seconds"] = {"fetching": fetching, **phases,
                              "scoring": round(time.perf_counter() - scoring_started, 2)}
    log.info("seconds spent: %s", scores["step_seconds"])
    storage.write_json(config.uri(layout.SCORES), scores)  # last: its presence marks the step done
    return scores


def sets_of(role: str, sets: dict) -> list[str]:
    """The sets a role translates: the champion only the domain test set (forgetting is measured against the base
    model only)."""
    return [name for name in sets if not (name == GENERAL and role == "champion")]


def _decode_all(config: RunConfig, settings: decoding.DecodeSettings, sets: dict, models: dict, scratch: Path):
    """Every model's translations of every test set, decoded or kept from an earlier run (tasks/evaluate/reuse.py):
    (hypotheses by set and role, speed by role, engine, seconds spent opening the models (fingerprinting, loading,
    converting and checking them) and decoding every set)."""
    opening_started = time.perf_counter()
    fingerprints = {role: reuse.model_fingerprint(Path(location)) for role, (location, _) in models.items()}
    kept = reuse.KeptDecodes(config, settings, {name: sources for name, (sources, _) in sets.items()})
    kept.mark_used(set(fingerprints.values()))
    decoders, reused = open_decoders(
        models, settings, config, scratch, probe=sets[TEST],
        find=lambda role, engine: kept.find(fingerprints[role], sets_of(role, sets), engine))
    phases = {"opening": round(time.perf_counter() - opening_started, 2)}
    decoding_started = time.perf_counter()
    engine = decoders["candidate"].describe()
    hypotheses: dict[str, dict[str, list[str]]] = {name: {} for name in sets}
    speed = {}
    for role in models:
        if role in reused:
            for name, entry in reused[role].items():
                hypotheses[name][role] = entry["hypotheses"]
            speed[role] = {"reused_from": reused[role][TEST]["run_dir"]}
            log.info("%-9s translations kept from %s, decoded there by the same model and engine", role,
                     speed[role]["reused_from"])
            continue
        for name in sets_of(role, sets):
            hyps, seconds = decoders[role].timed_translate(sets[name][0])
            hypotheses[name][role] = [scoring.as_line(h) for h in hyps]
            kept.keep(fingerprints[role], name, decoders[role].describe(), hypotheses[name][role], seconds)
            if name == TEST:
                speed[role] = {"seconds": round(seconds, 2),
                               "sentences_per_s": round(len(sets[name][0]) / max(seconds, 1e-9), 1)}
        log.info("%-9s decoded by %s in %.1fs", role, decoders[role].describe(), speed[role]["seconds"])
    kept.prune()
    return hypotheses, speed, engine, {**phases, "decoding": round(time.perf_counter() - decoding_started, 2)}


def _write_files(config: RunConfig, sets: dict, hypotheses: dict, per_sentence: dict) -> None:
    def lines(texts) -> str:
        return "".join(t + "\n" for t in texts)

    for name, (sources, references) in sets.items():
        storage.write_text(config.uri(layout.eval_file(name, "src")), lines(sources))
        storage.write_text(config.uri(layout.eval_file(name, "ref")), lines(references))
        for role, hyps in hypotheses[name].items():
            storage.write_text(config.uri(layout.hypotheses(name, role)), lines(hyps))
            storage.write_text(config.uri(layout.sentence_scores(name, role)),
                               lines(json.dumps(s) for s in per_sentence[name][role]))
