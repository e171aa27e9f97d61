"""Scoring extracts each system's statistics once and computes every figure from them: each must equal what
sacrebleu's own calls give (tests/support/sacrebleu_calls.py), at full precision, on real sentences with
realistic errors (TER's shifts, empty outputs, words dropped and swapped)."""

import random

import numpy as np
import pytest
from sacrebleu.significance import _bootstrap_resample

from support import sacrebleu_calls
from support.corpora import demo_catalog_pairs
from tasks.evaluate import scoring
from tasks.evaluate import step as evaluate


def _degrade(texts: list[str], share: float, seed: int) -> list[str]:
    """Words dropped and neighbours swapped in `share` of the places; a few outputs empty."""
    rng = random.Random(seed)
    out = []
    for text in texts:
        words = [w for w in text.split() if rng.random() > share]
        if len(words) > 2 and rng.random() < share:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        out.append("" if rng.random() < share / 10 else " ".join(words))
    return out


@pytest.fixture(scope="module")
def systems():
    pairs = demo_catalog_pairs(150)
    references = [scoring.as_line(t) for _, t in pairs]
    return references, {"base": _degrade(references, 0.5, 1), "candidate": _degrade(references, 0.15, 2),
                        "champion": _degrade(references, 0.2, 3)}


def test_corpus_scores_and_signatures_equal_sacrebleus(systems):
    references, hypotheses = systems
    test_set = scoring.TestSet(references, "de")
    for hyps in hypotheses.values():
        system = test_set.system(hyps)
        plain = sacrebleu_calls.corpus(hyps, references, "de")
        assert {name: system.score(name).score for name in scoring.METRICS} == \
            {name: score.score for name, (score, _) in plain.items()}
        stored = system.corpus_scores()
        assert stored["signatures"] == {name: signature for name, (_, signature) in plain.items()}
        assert {name: stored[name] for name in scoring.METRICS} == \
            {name: round(score.score, 2) for name, (score, _) in plain.items()}


def test_sentence_scores_equal_sacrebleus(systems):
    references, hypotheses = systems
    test_set = scoring.TestSet(references, "de")
    hyps = hypotheses["candidate"]
    plain = sacrebleu_calls.sentences(hyps, references, "de")
    assert test_set.system(hyps).sentence_scores() == [{k: round(v, 2) for k, v in row.items()} for row in plain]
    assert len({row["ter"] for row in plain}) > 10  # real variety, not a constant


def test_the_resamples_are_sacrebleus(systems):
    references, hypotheses = systems
    test_set = scoring.TestSet(references, "de")
    system = test_set.system(hypotheses["base"])
    for name, metric in test_set.metrics.items():
        _, theirs = _bootstrap_resample(system.statistics[name], metric, scoring.BOOTSTRAP_RESAMPLES)
        assert np.array_equal(system.resampled(name), np.array([s.score for s in theirs]))


def test_paired_bootstraps_equal_sacrebleus_whatever_the_environments_seed(systems, monkeypatch):
    references, hypotheses = systems
    monkeypatch.setenv("SACREBLEU_SEED", "7")  # the CLI's default seed is used whatever this says
    test_set = scoring.TestSet(references, "de")
    scored = {role: test_set.system(hyps) for role, hyps in hypotheses.items()}
    for other in ("base", "champion"):  # the candidate's resamples serve both tests
        ours = test_set.paired_bootstrap((other, scored[other]), ("candidate", scored["candidate"]))
        plain = sacrebleu_calls.paired_bootstrap(hypotheses[other], hypotheses["candidate"], references, "de")
        for name, (base, system, signature) in plain.items():
            assert ours[name] == {"baseline": round(base.score, 2), "system": round(system.score, 2),
                                  "delta": round(system.score - base.score, 2),
                                  "p_value": round(float(system.p_value), 4), "baseline_ci": round(base.ci, 2),
                                  "system_ci": round(system.ci, 2)}
            assert ours["signatures"][name] == signature
    assert ours["bleu"]["p_value"] < 0.05  # the candidate against the champion: a real difference, found as real


def test_the_step_writes_the_sentence_scores_of_the_statistics_it_scored(systems):
    references, hypotheses = systems
    per_sentence: dict = {}
    scores = evaluate.scores_from({"test": hypotheses}, {"test": references}, "de",
                                  labels={role: role for role in hypotheses}, per_sentence=per_sentence)
    assert set(per_sentence["test"]) == set(hypotheses)
    for role, hyps in hypotheses.items():
        rows = per_sentence["test"][role]
        assert rows == [{k: round(v, 2) for k, v in row.items()}
                        for row in sacrebleu_calls.sentences(hyps, references, "de")]
        assert scores[role]["bleu"] == round(sacrebleu_calls.corpus(hyps, references, "de")["bleu"][0].score, 2)


def test_a_chinese_target_is_tokenized_as_sacrebleu_does():
    references = ["我们今天去公园散步。", "这是一个测试句子。", "机器翻译的质量在提高。"]
    hyps = ["我们今天去公园。", "这是测试句子。", "机器翻译质量提高了。"]
    system = scoring.TestSet(references, "zh").system(hyps)
    plain = sacrebleu_calls.corpus(hyps, references, "zh")
    assert system.score("bleu").score == plain["bleu"][0].score
    assert "tok:zh" in system.corpus_scores()["signatures"]["bleu"]


def test_ter_on_chinese_and_japanese_counts_characters_not_the_sentence_as_one_word():
    """Split on whitespace, a near-perfect Chinese system (one character dropped a sentence) scored TER 90.9."""
    asian = {"normalized": True, "asian_support": True}
    assert scoring.ter_options("zh") == scoring.ter_options("zho") == scoring.ter_options("ja") == asian
    assert scoring.ter_options("ko") == scoring.ter_options("de") == {}  # written with spaces between words
    references = ["我们今天去公园散步。", "这是一个测试句子。", "机器翻译的质量在提高。"]
    hyps = ["我们今天去公园散步", "这是一个测试句子", "机器翻译的质量在提高"]
    ter = scoring.TestSet(references, "zh").system(hyps).corpus_scores()
    assert ter["ter"] < 20 and "asian:yes" in ter["signatures"]["ter"]
    # What the CLI gives with the flags report.md names.
    from sacrebleu.metrics import TER

    assert ter["ter"] == round(TER(normalized=True, asian_support=True).corpus_score(hyps, [references]).score, 2)
    assert scoring.TestSet(references, "de").system(hyps).corpus_scores()["ter"] == 100.0  # one word a sentence


@pytest.mark.parametrize("hyps, references, message", [
    (["a"], ["a", "b"], "1 hypotheses for 2 references"),
    ([], [], "nothing to score"),
])
def test_mismatched_or_empty_sets_are_refused(hyps, references, message):
    with pytest.raises(ValueError, match=message):
        scoring.TestSet(references, "de").system(hyps)


@pytest.mark.parametrize("size", [1, 7, 2001])
def test_the_resamples_drawn_in_chunks_are_sacrebleus_one_draw(size):
    test_set = scoring.TestSet([f"sentence {i}" for i in range(size)], "de")
    drawn = np.random.default_rng(scoring.BOOTSTRAP_SEED).choice(size, size=(scoring.BOOTSTRAP_RESAMPLES, size),
                                                                 replace=True)
    expected = np.stack([np.bincount(row, minlength=size) for row in drawn])
    assert np.array_equal(test_set.resample_counts(), expected)


@pytest.mark.parametrize("target, tokenizer", [
    ("de", "13a"), ("zh", "zh"), ("zho", "zh"), ("cmn", "zh"), ("yue", "zh"), ("th", "char"), ("tha", "char"),
    ("km", "char"), ("my", "char"),
])
def test_bleu_tokenizes_as_the_target_language_is_written(target, tokenizer):
    """sacrebleu picks a tokenizer from "zh", "ja" and "ko" only: a 3-letter code or a script without spaces between
    words would get 13a, one token per phrase."""
    from sacrebleu.metrics import BLEU

    references = ["ฉันไปโรงเรียนทุกวัน", "เขากินข้าวที่บ้าน"] if tokenizer == "char" else ["我们今天去公园散步。", "这是测试句子。"]
    hyps = ["ฉันไปโรงเรียนทุกวันนี้", "เขากินข้าวบ้าน"] if tokenizer == "char" else ["我们今天去公园。", "这是一个测试句子。"]
    system = scoring.TestSet(references, target).system(hyps)
    assert f"tok:{tokenizer}|" in system.corpus_scores()["signatures"]["bleu"]
    assert system.score("bleu").score == BLEU(tokenize=tokenizer).corpus_score(hyps, [references]).score
    if tokenizer == "char":  # 13a sees two whole-sentence tokens, neither matched: BLEU 0 whatever the model does
        assert system.score("bleu").score > 40 and BLEU().corpus_score(hyps, [references]).score == 0


@pytest.mark.parametrize("target, module", [("ja", "MeCab"), ("jpn", "MeCab"), ("ko", "mecab_ko"), ("kor", "mecab_ko")])
def test_a_target_whose_tokenizer_is_not_installed_is_refused_with_its_name(target, module, monkeypatch):
    import importlib
    import sys

    for name in [n for n in sys.modules if n.startswith("sacrebleu.tokenizers.tokenizer_")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # as where sacrebleu's [ja] / [ko] extras are not installed
    importlib.invalidate_caches()
    with pytest.raises(scoring.ScoringUnavailable, match=f"{target!r} needs the (ja|ko)-mecab tokenizer"):
        scoring.bleu(target)
