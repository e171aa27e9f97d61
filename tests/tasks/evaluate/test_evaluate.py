"""The evaluate step: every number in scores.json is recomputed by the sacrebleu CLI from the files in eval/."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from support.corpora import digit_pairs
from support.runs import make_run, write_splits
from tasks import layout
from tasks.evaluate import scoring
from tasks.evaluate import step as evaluate
from tasks.io import storage


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model, digits_translator):
    """A run scored end to end: untrained base, trained candidate, the same trained model as champion, and a
    general-domain set. Test sentences of 3–9 digits: the candidate was trained on 3–7, so it errs on some."""
    root = tmp_path_factory.mktemp("evaluate")
    cfg = make_run(root / "artifacts", base_model=str(tiny_model), num_beams=2, max_source_length=32,
                   min_test_sentences=10)
    write_splits(cfg, root, test=digit_pairs(120, seed=31, min_len=3, max_len=9),
                 general_test=digit_pairs(60, seed=32))
    shutil.copytree(digits_translator, cfg.uri("model"))
    shutil.copytree(digits_translator, cfg.uri(layout.CHAMPION))
    storage.write_json(cfg.uri(layout.CHAMPION_RECORD), {"found": True, "label": "org/digits@0123abcd",
                                                  "model_uri": cfg.uri(layout.CHAMPION)})
    return cfg, evaluate.run(cfg)


def _sacrebleu(eval_dir, *args) -> str:
    env = {k: v for k, v in os.environ.items() if k != "SACREBLEU_SEED"}  # the CLI's own default seed
    done = subprocess.run([sys.executable, "-m", "sacrebleu", *args], cwd=eval_dir, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _paired_table(text: str) -> dict:
    """sacrebleu's paired-test table (its JSON output fails on numpy floats in 2.6) → {metric: (score, ci, p)}."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]
    metrics = [h.split(" (")[0] for h in rows[0][1:]]
    system, p_values = rows[-2][1:], rows[-1][1:]
    out = {}
    for name, cell, p in zip(metrics, system, p_values):
        score, _, ci = re.fullmatch(r"([\d.]+) \(([\d.]+) ± ([\d.]+)\)", cell).groups()
        out[name] = (float(score), float(ci), float(re.search(r"p = ([\d.]+)", p).group(1)))
    return out


def test_scores_are_stored_for_every_role_with_signatures(evaluated):
    cfg, scores = evaluated
    assert scores == evaluate.result(cfg)
    assert scores["test_sentences"] == 120 and scores["general"]["sentences"] == 60
    for role in ("base", "candidate", "champion"):
        assert set(scoring.METRICS) <= set(scores[role]) and set(scores[role]["signatures"]) == set(scoring.METRICS)
    assert 20 < scores["candidate"]["bleu"] < 100  # right on short inputs, wrong on some long ones
    assert scores["base"]["bleu"] < 5  # untrained
    # The champion is the same model decoded the same way: the same output, to the letter.
    eval_dir = cfg.uri(layout.EVAL)
    assert storage.read_text(f"{eval_dir}/test.champion.hyp") == storage.read_text(f"{eval_dir}/test.candidate.hyp")
    assert scores["champion"]["bleu"] == scores["candidate"]["bleu"]
    assert scores["champion"]["model"] == "org/digits@0123abcd"
    assert scores["decoding"]["num_beams"] == 2 and scores["decoding"]["engine"] in ("ctranslate2", "transformers")
    # Where the step's time went: the decoding of every set (the domain set's, by role, is part of it), and the rest.
    phases = scores["step_seconds"]
    assert set(phases) == {"fetching", "opening", "decoding", "scoring"} and phases["fetching"] >= 0
    assert min(phases["opening"], phases["decoding"], phases["scoring"]) > 0
    assert phases["decoding"] >= sum(scores[role]["seconds"] for role in ("base", "candidate", "champion")) - 0.05


@pytest.mark.parametrize("test_set, role", [("test", "base"), ("test", "candidate"), ("test", "champion"),
                                            ("general", "base"), ("general", "candidate")])
def test_the_sacrebleu_cli_gives_the_same_corpus_scores(evaluated, test_set, role):
    cfg, scores = evaluated
    stored = scores[role] if test_set == "test" else scores["general"][role]
    out = json.loads(_sacrebleu(cfg.uri(layout.EVAL), f"{test_set}.ref", "-i", f"{test_set}.{role}.hyp",
                                "-m", "bleu", "chrf", "ter", "-w", "2"))
    cli = {entry["name"]: entry for entry in out}
    assert (cli["BLEU"]["score"], cli["chrF2"]["score"], cli["TER"]["score"]) == \
        (stored["bleu"], stored["chrf"], stored["ter"])
    assert cli["BLEU"]["signature"] == stored["signatures"]["bleu"]
    assert cli["chrF2"]["signature"] == stored["signatures"]["chrf"]
    assert cli["TER"]["signature"] == stored["signatures"]["ter"]


def test_the_sacrebleu_cli_gives_the_same_p_values_and_intervals(evaluated):
    cfg, scores = evaluated
    cli = _paired_table(_sacrebleu(cfg.uri(layout.EVAL), "test.ref", "-i", "test.base.hyp", "test.candidate.hyp",
                                   "-m", "bleu", "chrf", "ter", "--paired-bs", "-w", "2", "-f", "text",
                                   "--no-color"))
    stored = scores["significance"]["candidate_vs_base"]
    for metric, column in (("bleu", "BLEU"), ("chrf", "chrF2"), ("ter", "TER")):
        score, ci, p = cli[column]
        assert score == stored[metric]["system"]
        assert ci == stored[metric]["system_ci"] == scores["candidate"]["ci"][metric]
        assert p == stored[metric]["p_value"]


@pytest.mark.parametrize("metric", ["bleu", "chrf", "ter"])
def test_the_sacrebleu_cli_gives_the_same_sentence_scores(evaluated, metric):
    cfg, _ = evaluated
    eval_dir = cfg.uri(layout.EVAL)
    cli = _sacrebleu(eval_dir, "test.ref", "-i", "test.candidate.hyp", "-m", metric, "--sentence-level", "-b",
                     "-w", "2").split()
    stored = [json.loads(line)[metric] for line in storage.read_text(
        cfg.uri(layout.sentence_scores("test", "candidate"))).splitlines()]
    assert [float(x) for x in cli] == stored
    assert len(set(stored)) > 1  # the candidate is right on some sentences and wrong on others


def test_evaluate_refuses_to_run_without_a_champion_lookup(tmp_path):
    cfg = make_run(tmp_path / "artifacts")
    write_splits(cfg, tmp_path, test=digit_pairs(5, seed=1))
    with pytest.raises(FileNotFoundError, match="run the champion step first"):
        evaluate.run(cfg)


def test_a_model_that_writes_one_line_for_every_input_is_refused(tmp_path, tiny_model):
    """Fine-tuned to answer everything with the same line, a real model beats an untrained base on BLEU (the
    line shares words with many references), yet its outputs are degenerate: the gate refuses it."""
    from support.models import train_digits_model
    from tasks.evaluate import gate

    constant = train_digits_model(tiny_model, tmp_path / "constant", steps=120,
                                  pairs=[(s, "eins zwei drei vier") for s, _ in digit_pairs(1300, seed=21)])
    cfg = make_run(tmp_path / "artifacts", base_model=str(tiny_model), num_beams=2, max_source_length=32,
                   min_test_sentences=10, min_bleu_gain=-100.0, alpha=1.0)
    write_splits(cfg, tmp_path, test=digit_pairs(120, seed=31))
    shutil.copytree(constant, cfg.uri(layout.MODEL))
    storage.write_json(cfg.uri(layout.CHAMPION_RECORD), {"found": False, "reason": "nothing published yet"})
    scores = evaluate.run(cfg)
    assert scores["candidate"]["outputs"]["distinct"] < 0.1
    decision = gate.decide(scores, cfg)
    assert decision["decision"] == "refuse"
    assert [c["name"] for c in decision["checks"] if not c["passed"]] == ["degenerate_outputs"]
    assert "< min_distinct_outputs 50%" in decision["reasons"][0]
