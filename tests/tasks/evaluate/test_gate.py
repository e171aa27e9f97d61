"""The promotion gate as a table of cases with known answers.

Scores come from real sacrebleu on made-up systems: references are German digit sentences, and a system
"corrupted every k" scrambles every k-th sentence (words reversed, one dropped). So "every 2" is a weak
system, "every 10" a good one and "perfect" the references themselves; their BLEU, their confidence
intervals and the bootstrap p-values are what sacrebleu computes for them.
"""

import functools
import json
import logging

import pytest

from support.corpora import digit_pairs
from support.runs import make_promoted_run, make_run
from tasks import config, layout
from tasks.evaluate import gate
from tasks.evaluate import step as evaluate
from tasks.io import storage
from tasks.publish import step as publish

PERFECT = 0


DEGENERATE = {  # systems that can beat a bad base while writing no real translations
    "constant": lambda refs, srcs: [refs[0]] * len(refs),
    "empty": lambda refs, srcs: [r if i % 10 else "" for i, r in enumerate(refs)],
    "copies": lambda refs, srcs: [s if i % 2 else r for i, (r, s) in enumerate(zip(refs, srcs))],
    "runaway": lambda refs, srcs: [r + " null null null null" if i % 5 == 0 else r for i, r in enumerate(refs)],
}


def _system(references: tuple[str, ...], every, sources: tuple[str, ...] = ()) -> list[str]:
    if every in DEGENERATE:
        return DEGENERATE[every](references, sources)
    if every == PERFECT:
        return list(references)
    return [" ".join(r.split()[::-1][1:]) if i % every == 0 else r for i, r in enumerate(references)]


@functools.cache
def _references(n: int, seed: int = 3) -> tuple[str, ...]:
    return tuple(target for _, target in digit_pairs(n, seed=seed))


@functools.cache
def _sources(n: int, seed: int = 3) -> tuple[str, ...]:
    return tuple(source for source, _ in digit_pairs(n, seed=seed))


@functools.cache
def _scores(n=200, base=2, candidate=10, champion=None, general=None) -> str:
    """scores.json (as JSON text, so the cache cannot be mutated) for systems given by their corruption."""
    refs, srcs = _references(n), _sources(n)
    hyps = {"test": {"base": _system(refs, base, srcs), "candidate": _system(refs, candidate, srcs)}}
    references, sources = {"test": list(refs)}, {"test": list(srcs)}
    labels = {"base": "base-model", "candidate": "candidate-model"}
    if champion is not None:
        hyps["test"]["champion"] = _system(refs, champion)
        labels["champion"] = "org/model@abc123"
    if general is not None:
        general_refs = _references(150, seed=4)
        hyps["general"] = {"base": _system(general_refs, general[0]), "candidate": _system(general_refs, general[1])}
        references["general"], sources["general"] = list(general_refs), list(_sources(150, seed=4))
    lookup = {"found": True, "label": "org/model@abc123"} if champion is not None else \
        {"found": False, "reason": "nothing published at org/model yet"}
    return json.dumps(evaluate.scores_from(hyps, references, "de", labels=labels, sources=sources,
                                           champion_lookup=lookup))


def _config(**params) -> config.RunConfig:
    return config.build(params, dag_id="d", run_id="r", artifact_root="/nonexistent")


CASES = [
    # id, systems, thresholds, decision, failing checks, words in the reasons
    ("significant gain", {}, {}, "promote", [], "the gain is significant"),
    ("gain below the threshold", {}, {"min_bleu_gain": 40.0}, "refuse", ["bleu_gain"],
     "BLEU gain over base +28.93 < min_bleu_gain 40.0"),
    ("gain not significant on a tiny test set", {"n": 8, "base": 2, "candidate": 4}, {"min_test_sentences": 5},
     "refuse", ["gain_significant"], "p = 0.0859 ≥ alpha 0.05: the difference from base is not significant"),
    ("the same gain is significant at alpha 0.1", {"n": 8, "base": 2, "candidate": 4},
     {"min_test_sentences": 5, "alpha": 0.1}, "promote", [], "p = 0.0859 < alpha 0.1"),
    ("a significant loss", {"base": 10, "candidate": 2}, {}, "refuse", ["bleu_gain", "gain_significant"],
     "significant, but it is a loss"),
    ("regression against the champion", {"champion": PERFECT}, {}, "refuse", ["champion_regression"],
     "BLEU vs champion org/model@abc123: -6.28 < −max_champion_regression (0.5): worse than the published model"),
    ("a loss against the champion within the margin", {"champion": PERFECT}, {"max_champion_regression": 7.0},
     "promote", [], "-6.28 ≥ −max_champion_regression (7.0)"),
    # sacrebleu gives two identical systems p = 1/1001: a tie is refused because it is no gain.
    ("a tie with the champion does not beat it", {"champion": 10}, {"require_beat_champion": True}, "refuse",
     ["beats_champion", "differs_from_champion"], "gain over champion +0.00 with p = 0.0010 (alpha 0.05): not a gain"),
    ("the champion's outputs again are no new release", {"champion": 10}, {}, "refuse", ["differs_from_champion"],
     "100% of the test outputs are the champion's: the same translations again"),
    ("a significant gain over the champion beats it", {"champion": 2}, {"require_beat_champion": True},
     "promote", [], "a significant gain"),
    ("first run: no champion", {}, {"require_beat_champion": True}, "promote", [],
     "no champion (nothing published at org/model yet): nothing to regress against"),
    ("forgetting beyond the margin", {"general": (PERFECT, 2)}, {}, "refuse", ["general_regression"],
     "general-domain BLEU loss +31.39 > max_general_regression 1.0 (base 100.00 → candidate 68.61): "
     "the candidate forgot"),
    ("no forgetting", {"general": (10, 10)}, {}, "promote", [], "general-domain BLEU loss +0.00 ≤"),
    ("no general-domain set", {}, {}, "promote", [], "forgetting not measured"),
    ("a test set that is too small", {"n": 50}, {}, "refuse", ["test_set_size"],
     "50 test sentences < min_test_sentences 100: too few to tell a real gain from luck"),
    ("below the absolute floor", {}, {"min_bleu": 95.0}, "refuse", ["min_bleu"],
     "candidate BLEU 93.72 < min_bleu 95.0"),
    # Degenerate candidates beat a bad base (every 2nd sentence scrambled) and still do not pass.
    ("one line for every input", {"candidate": "constant"}, {"min_bleu_gain": -100}, "refuse",
     ["gain_significant", "degenerate_outputs"], "distinct outputs 0% < min_distinct_outputs 50%"),
    ("a tenth of the outputs empty", {"candidate": "empty"}, {}, "refuse", ["degenerate_outputs"],
     "empty outputs 10% > max_empty_outputs 5%"),
    ("half the outputs copy their source", {"candidate": "copies"}, {"min_bleu_gain": -100}, "refuse",
     ["gain_significant", "degenerate_outputs"], "outputs equal to their source 50% > max_source_copies 30%"),
    ("a fifth of the outputs run away", {"candidate": "runaway"}, {}, "refuse", ["degenerate_outputs"],
     "runaway repetitions 20% > max_runaway_outputs 10%"),
    ("a few runaways within the limit", {"candidate": "runaway"}, {"max_runaway_outputs": 0.25}, "promote", [],
     "runaway repetitions 20% ≤ max_runaway_outputs 25%"),
]


@pytest.mark.parametrize("systems, thresholds, decision, failing, words", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_gate_cases(systems, thresholds, decision, failing, words):
    result = gate.decide(json.loads(_scores(**systems)), _config(**thresholds))
    assert result["decision"] == decision
    assert result["promote"] is (decision == "promote")
    assert [c["name"] for c in result["checks"] if not c["passed"]] == failing
    assert any(words in reason for reason in result["reasons"]), result["reasons"]


def test_the_known_scores_behind_the_table():
    scores = json.loads(_scores())
    assert (scores["base"]["bleu"], scores["candidate"]["bleu"]) == (64.79, 93.72)
    # 1000 resamples never produce a difference this large by chance: p = 1/1001, sacrebleu's minimum.
    assert scores["significance"]["candidate_vs_base"]["bleu"]["p_value"] == 0.001
    assert "bs:1000|seed:12345" in scores["significance"]["candidate_vs_base"]["signatures"]["bleu"]


def test_gate_json_holds_every_check_threshold_signature_and_p_value():
    result = gate.decide(json.loads(_scores(champion=PERFECT, general=(10, 10))),
                         _config(require_beat_champion=True))
    names = [c["name"] for c in result["checks"]]
    assert names == ["test_set_size", "bleu_gain", "gain_significant", "champion_regression", "beats_champion",
                     "min_bleu", "degenerate_outputs", "differs_from_champion", "general_regression"]
    for check in result["checks"]:
        assert set(check) == {"name", "value", "threshold", "passed", "reason"}
    assert result["thresholds"] == {"min_test_sentences": 100, "min_bleu_gain": 1.0, "alpha": 0.05,
                                    "max_champion_regression": 0.5, "require_beat_champion": True,
                                    "min_bleu": 0.0, "min_distinct_outputs": 0.5, "max_empty_outputs": 0.05,
                                    "max_source_copies": 0.3, "max_runaway_outputs": 0.1,
                                    "max_general_regression": 1.0}
    assert result["outputs"]["distinct"] > 0.9 and result["outputs"]["same_as_champion"] < 1.0
    assert set(result["p_values"]) == {"candidate_vs_base", "candidate_vs_champion"}
    assert result["signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert result["signatures"]["ter"].startswith("nrefs:1|case:lc|tok:tercom")
    assert "bs:1000|seed:12345" in result["signatures"]["bootstrap"]
    assert result["bleu"] == {"base": 64.79, "candidate": 93.72, "champion": 100.0, "gain": 28.93}


def test_the_log_table_shows_each_check_with_value_threshold_and_verdict():
    result = gate.decide(json.loads(_scores(n=50)), _config())
    lines = gate.table(result)
    assert lines[0].split() == ["check", "value", "threshold", "verdict"]
    assert lines[2].split() == ["test_set_size", "50", "100", "FAIL"]
    assert lines[3].split() == ["bleu_gain", "28.5", "1", "PASS"]
    assert lines[-1] == "decision: REFUSE"
    summary = gate.summary(result)
    assert summary["decision"] == "REFUSE" and summary["checks"]["test_set_size"] == "FAIL"


def test_the_step_writes_gate_json_logs_the_table_and_writes_the_report(tmp_path, caplog):
    cfg = make_run(tmp_path, min_test_sentences=10)
    refs = list(_references(40))
    hyps = {"base": _system(tuple(refs), 2), "candidate": _system(tuple(refs), 10)}
    per_sentence: dict = {}
    scores = evaluate.scores_from({"test": hyps}, {"test": refs}, "de", labels={"base": "b", "candidate": "c"},
                                  sources={"test": list(_sources(40))},
                                  decoding={"engine": "ctranslate2", "device": "cpu", "precision": "int8",
                                            "num_beams": 4, "length_limit": "min(256, 2 × src + 10)",
                                            "max_sentences": 256, "max_tokens": 16384}, per_sentence=per_sentence)
    for role, lines in hyps.items():
        storage.write_text(cfg.uri(layout.hypotheses("test", role)), "\n".join(lines) + "\n")
        storage.write_text(cfg.uri(layout.sentence_scores("test", role)), "".join(
            json.dumps(s) + "\n" for s in per_sentence["test"][role]))
    storage.write_text(cfg.uri(layout.EVAL, "test.src"), "".join(f"source {i}\n" for i in range(40)))
    storage.write_text(cfg.uri(layout.EVAL, "test.ref"), "\n".join(refs) + "\n")
    storage.write_json(cfg.uri(layout.SCORES), scores)

    with caplog.at_level(logging.INFO, logger="tasks.evaluate.gate"):
        decision = gate.run(cfg)
    assert decision == storage.read_json(cfg.uri(layout.GATE)) and decision["decision"] == "promote"
    assert "decision: PROMOTE" in caplog.text and "gain_significant" in caplog.text
    report = (tmp_path / "test_dag" / "run-1" / "report.md").read_text()
    assert "| candidate | " in report and "## Promotion gate: PROMOTE" in report
    assert (tmp_path / "test_dag" / "run-1" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert gate.run(cfg) == decision  # a retry reads the stored decision


def test_a_champion_that_was_looked_up_but_not_scored_refuses():
    # Publishing would replace the served model with one never compared against it.
    scores = {**json.loads(_scores()), "champion_lookup": {"found": True, "label": "org/model@abc123"}}
    result = gate.decide(scores, _config())
    assert result["decision"] == "refuse" and result["promote"] is False
    assert [c["name"] for c in result["checks"] if not c["passed"]] == ["champion_regression"]
    assert "the champion org/model@abc123 was looked up but not scored" in result["reasons"][0]


def test_publish_trusts_promote_only_when_it_agrees_with_the_decision(tmp_path, tiny_model):
    cfg = make_promoted_run(tmp_path / "art", tiny_model, promote=False, publish_target="local",
                            registry_uri=str(tmp_path / "registry"))
    stored = storage.read_json(cfg.uri(layout.GATE))
    storage.write_json(cfg.uri(layout.GATE), {**stored, "promote": True})  # the right hash, the decision kept
    with pytest.raises(gate.UnverifiedDecision, match="promote: True"):
        gate.verified_decision(cfg)
    with pytest.raises(gate.UnverifiedDecision):
        publish.run(cfg)
    assert not (tmp_path / "registry").exists()


def test_a_run_with_a_general_domain_set_but_no_general_score_is_refused(tmp_path):
    """split writes the general set after the others: a split that failed on it and was marked success leaves
    evaluate nothing to measure forgetting on, and the check must not pass as if the run had no such set."""
    cfg = _config(general_eval_uri=str(tmp_path / "general.tsv"))
    result = gate.decide(json.loads(_scores()), cfg)
    assert result["decision"] == "refuse"
    assert [c["name"] for c in result["checks"] if not c["passed"]] == ["general_regression"]
    assert "but the scores hold no general-domain score" in result["reasons"][0]
    assert gate.decide(json.loads(_scores(general=(10, 10))), cfg)["decision"] == "promote"


@pytest.mark.parametrize("target, recorded, flags", [
    ("de", "13a", ""), ("zh", "zh", " -tok zh"), ("th", "char", " -tok char"), ("ja", "ja-mecab-0.996-IPA",
                                                                                " -tok ja-mecab"),
    ("th", "13a", ""),  # scored before Thai had its tokenizer (a run whose gate ran after the upgrade)
    ("zh", "zh", " -tok zh --ter-normalized --ter-asian-support"),  # TER on characters too (scoring.ter_options)
])
def test_the_reports_sacrebleu_commands_recompute_bleu_with_the_runs_tokenizer(target, recorded, flags):
    from tasks.evaluate import report

    scores = {**json.loads(_scores()), "decoding": {"engine": "transformers", "device": "cpu", "precision": "fp32",
                                                    "num_beams": 4, "length_limit": "min(256, …)",
                                                    "max_sentences": 256, "max_tokens": 16384}}
    signatures = scores["candidate"]["signatures"]
    signatures["bleu"] = signatures["bleu"].replace("tok:13a", f"tok:{recorded}")
    if "asian" in flags:
        signatures["ter"] = signatures["ter"].replace("norm:no", "norm:yes").replace("asian:no", "asian:yes")
    cfg = _config(target_lang=target)
    assert report.bleu_tokenizer(scores, target) == (flags.split()[1] if flags else "13a")
    text = report.render(cfg, scores, gate.decide(scores, cfg), [{"bucket": "1–5", "sentences": 3, "base": 1.0,
                                                                  "candidate": 2.0}], [],
                         training={}, validation={}, launched={})
    assert f"sacrebleu test.ref -i test.candidate.hyp -m bleu chrf ter{flags} -w 2\n" in text
    assert f"test.base.hyp test.candidate.hyp -m bleu chrf ter{flags} --paired-bs -w 2\n" in text


def test_the_report_reads_eval_files_line_by_line_as_the_cli_does(tmp_path):
    """A translation holding U+2028 or U+0085 is one line of test.<role>.hyp; split there, every later sentence
    of the report would sit beside another sentence's source and reference."""
    from tasks.evaluate import report

    cfg = make_run(tmp_path)
    storage.write_text(cfg.uri(layout.hypotheses("test", "candidate")), "eins\u2028zwei\nnull\x85eins\ndrei\n")
    assert report._read_lines(cfg, layout.hypotheses("test", "candidate")) == ["eins\u2028zwei", "null\x85eins",
                                                                                "drei"]
