"""gate: eval/scores.json → gate.json, the decision whether the candidate may be published.

The candidate is promoted only if every check passes. Each check is written with its value, threshold and
verdict, so a refusal explains itself in gate.json, in the task log (as a small table) and in report.md.
A refused candidate is a normal outcome, not an error: the run succeeds and publish is skipped.

1. test_set_size       the test split has at least `min_test_sentences` sentences
2. bleu_gain           BLEU(candidate) − BLEU(base) ≥ `min_bleu_gain`
3. gain_significant    paired bootstrap p-value of that difference < `alpha`
4. champion_regression BLEU(candidate) − BLEU(champion) ≥ −`max_champion_regression` (passes with no champion)
5. beats_champion      only with `require_beat_champion`: a gain over the champion, significant at `alpha`
6. min_bleu            BLEU(candidate) ≥ `min_bleu`
7. general_regression  BLEU lost on the general-domain set ≤ `max_general_regression` (passes without one)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from tasks import layout
from tasks.config import RunConfig
from tasks.evaluate import report
from tasks.io import storage

log = logging.getLogger(__name__)

THRESHOLDS = ("min_test_sentences", "min_bleu_gain", "alpha", "max_champion_regression", "require_beat_champion",
              "min_bleu", "max_general_regression")


@dataclass(frozen=True)
class Check:
    name: str
    value: float | int | None
    threshold: float | int | None
    passed: bool
    reason: str


def _bleu_test(scores: dict, comparison: str) -> dict:
    return scores["significance"][comparison]["bleu"]


def checks(scores: dict, config: RunConfig) -> list[Check]:
    """Every check of the gate, in a fixed order, each with a reason that a reader can act on."""
    found: list[Check] = []
    n, least = scores["test_sentences"], config.min_test_sentences
    found.append(Check("test_set_size", n, least, n >= least,
                       f"{n} test sentences {'≥' if n >= least else '<'} min_test_sentences {least}"
                       + ("" if n >= least else ": too few to tell a real gain from luck")))

    base, candidate = scores["base"]["bleu"], scores["candidate"]["bleu"]
    gain = round(candidate - base, 2)
    found.append(Check("bleu_gain", gain, config.min_bleu_gain, gain >= config.min_bleu_gain,
                       f"BLEU gain over base {gain:+.2f} {'≥' if gain >= config.min_bleu_gain else '<'} "
                       f"min_bleu_gain {config.min_bleu_gain}"))

    # sacrebleu's test is two-sided and gives identical systems p = 1/1001, so only a gain can be significant.
    p = _bleu_test(scores, "candidate_vs_base")["p_value"]
    if p >= config.alpha:
        verdict = "the difference from base is not significant"
    else:
        verdict = "the gain is significant" if gain > 0 else "significant, but it is a loss" if gain < 0 else \
            "no difference"
    found.append(Check("gain_significant", p, config.alpha, p < config.alpha and gain > 0,
                       f"paired bootstrap p = {p:.4f} {'<' if p < config.alpha else '≥'} alpha {config.alpha}: "
                       f"{verdict}"))

    found.extend(_champion_checks(scores, config, candidate))

    found.append(Check("min_bleu", candidate, config.min_bleu, candidate >= config.min_bleu,
                       f"candidate BLEU {candidate:.2f} {'≥' if candidate >= config.min_bleu else '<'} "
                       f"min_bleu {config.min_bleu}"))

    general = scores.get("general")
    if general is None:
        found.append(Check("general_regression", None, config.max_general_regression, True,
                           "no general-domain test set in this run: forgetting not measured"))
    else:
        loss = round(general["base"]["bleu"] - general["candidate"]["bleu"], 2)
        ok = loss <= config.max_general_regression
        found.append(Check("general_regression", loss, config.max_general_regression, ok,
                           f"general-domain BLEU loss {loss:+.2f} {'≤' if ok else '>'} max_general_regression "
                           f"{config.max_general_regression} (base {general['base']['bleu']:.2f} → candidate "
                           f"{general['candidate']['bleu']:.2f})" + ("" if ok else ": the candidate forgot")))
    return found


def _champion_checks(scores: dict, config: RunConfig, candidate: float) -> list[Check]:
    champion = scores.get("champion")
    if champion is None:
        why = (scores.get("champion_lookup") or {}).get("reason", "no champion")
        return [Check("champion_regression", None, -config.max_champion_regression, True,
                      f"no champion ({why}): nothing to regress against")] + \
            ([Check("beats_champion", None, config.alpha, True, "no champion to beat")]
             if config.require_beat_champion else [])
    delta = round(candidate - champion["bleu"], 2)
    ok = delta >= -config.max_champion_regression
    label = champion.get("model", "champion")
    found = [Check("champion_regression", delta, -config.max_champion_regression, ok,
                   f"BLEU vs champion {label}: {delta:+.2f} {'≥' if ok else '<'} −max_champion_regression "
                   f"({config.max_champion_regression})" + ("" if ok else ": worse than the published model"))]
    if config.require_beat_champion:
        p = _bleu_test(scores, "candidate_vs_champion")["p_value"]
        beats = delta > 0 and p < config.alpha
        verdict = "a significant gain" if beats else "not a gain" if delta <= 0 else "the gain is not significant"
        found.append(Check("beats_champion", p, config.alpha, beats,
                           f"gain over champion {delta:+.2f} with p = {p:.4f} (alpha {config.alpha}): {verdict}"))
    return found


def decide(scores: dict, config: RunConfig) -> dict:
    found = checks(scores, config)
    promote = all(c.passed for c in found)
    champion = scores.get("champion")
    return {
        "decision": "promote" if promote else "refuse",
        "promote": promote,
        "reasons": [c.reason for c in found if not c.passed] or [c.reason for c in found],
        "checks": [asdict(c) for c in found],
        "thresholds": {name: getattr(config, name) for name in THRESHOLDS},
        "bleu": {"base": scores["base"]["bleu"], "candidate": scores["candidate"]["bleu"],
                 "champion": champion["bleu"] if champion else None,
                 "gain": round(scores["candidate"]["bleu"] - scores["base"]["bleu"], 2)},
        "p_values": {name: test["bleu"]["p_value"] for name, test in scores["significance"].items()},
        "signatures": {**scores["candidate"]["signatures"],
                       "bootstrap": scores["significance"]["candidate_vs_base"]["signatures"]["bleu"]},
        "test_sentences": scores["test_sentences"],
    }


def table(decision: dict) -> list[str]:
    """The checks as fixed-width lines for the task log."""
    def show(v):
        return "—" if v is None else f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)

    rows = [("check", "value", "threshold", "verdict")] + [
        (c["name"], show(c["value"]), show(c["threshold"]), "PASS" if c["passed"] else "FAIL")
        for c in decision["checks"]]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:],
            f"decision: {decision['decision'].upper()}"]


def summary(decision: dict) -> dict:
    """What the DAG returns to XCom: the outcome readable in the UI without opening the log."""
    return {"decision": decision["decision"].upper(), "reasons": decision["reasons"], "bleu": decision["bleu"],
            "p_values": decision["p_values"],
            "checks": {c["name"]: "PASS" if c["passed"] else "FAIL" for c in decision["checks"]}}


def run(config: RunConfig) -> dict:
    gate_uri = config.uri(layout.GATE)
    decision = storage.read_json_or(gate_uri)
    if decision is None:
        decision = decide(storage.read_json(config.uri(layout.SCORES)), config)
        storage.write_json(gate_uri, decision)
    for line in table(decision):
        log.info("%s", line)
    for check in decision["checks"]:
        log.info("%s %s: %s", "PASS" if check["passed"] else "FAIL", check["name"], check["reason"])
    report.write_report(config)
    return decision


def result(config: RunConfig) -> dict | None:
    return storage.read_json_or(config.uri(layout.GATE))


def read_decision(config: RunConfig) -> dict:
    """The stored decision; publish calls this itself instead of trusting what the orchestrator passed on."""
    decision = result(config)
    if decision is None:
        raise FileNotFoundError(f"{config.uri(layout.GATE)}: no gate decision for this run; refusing to publish")
    return decision
