"""gate: eval/scores.json → gate.json, the decision whether the candidate may be published.

The candidate is promoted only if every check passes. Each check is written with its value, threshold and
verdict, so a refusal explains itself in gate.json, in the task log (as a small table) and in report.md.
A refused candidate is a normal outcome, not an error: the run succeeds and publish is skipped.

1. test_set_size       the test split has at least `min_test_sentences` sentences
2. bleu_gain           BLEU(candidate) − BLEU(base) ≥ `min_bleu_gain`
3. gain_significant    paired bootstrap p-value of that difference < `alpha`
4. champion_regression BLEU(candidate) − BLEU(champion) ≥ −`max_champion_regression` (passes with no champion;
                       fails when the champion lookup found one that the scores do not hold)
5. beats_champion      only with `require_beat_champion`: a gain over the champion, significant at `alpha`
6. min_bleu            BLEU(candidate) ≥ `min_bleu`
7. degenerate_outputs  the candidate's test outputs are not degenerate: distinct outputs ≥ `min_distinct_outputs`,
                       empty ones ≤ `max_empty_outputs`, copied sources ≤ `max_source_copies`, runaway
                       repetitions ≤ `max_runaway_outputs` (tasks/evaluate/outputs.py)
8. differs_from_champion  the candidate's outputs are not all identical to the champion's: that would publish
                       the same translations again as a new release (passes with no champion)
9. general_regression  BLEU lost on the general-domain set ≤ `max_general_regression` (passes without one; fails
                       when the run has `general_eval_uri` but the scores hold no general-domain score)

gate.json is bound to the scores it decided on (`scores_sha256`): a gate.json that does not match this run's
eval/scores.json is decided again, never reused, and publish checks the binding before it releases anything.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from tasks import layout
from tasks.config import RunConfig
from tasks.evaluate import report
from tasks.io import digest, storage

log = logging.getLogger(__name__)

THRESHOLDS = ("min_test_sentences", "min_bleu_gain", "alpha", "max_champion_regression", "require_beat_champion",
              "min_bleu", "min_distinct_outputs", "max_empty_outputs", "max_source_copies", "max_runaway_outputs",
              "max_general_regression")
# figure in the candidate's output statistics → (threshold field, "min" or "max", what it means)
DEGENERATE = {"distinct": ("min_distinct_outputs", "min", "distinct outputs"),
              "empty": ("max_empty_outputs", "max", "empty outputs"),
              "source_copies": ("max_source_copies", "max", "outputs equal to their source"),
              "runaway": ("max_runaway_outputs", "max", "runaway repetitions")}


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

    # sacrebleu's p is one-sided, in the direction of the observed difference (it gives identical systems p = 1/1001):
    # with a positive gain required as well, equally good systems are promoted at about `alpha`.
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

    found.extend(_output_checks(scores, config))

    general = scores.get("general")
    if general is None and config.general_eval_uri:  # split's general set missing (a failed split marked success)
        found.append(Check("general_regression", None, config.max_general_regression, False,
                           f"general_eval_uri is {config.general_eval_uri}, but the scores hold no general-domain "
                           "score: forgetting was not measured"))
    elif general is None:
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


def _output_checks(scores: dict, config: RunConfig) -> list[Check]:
    """degenerate_outputs and differs_from_champion, from the candidate's output statistics."""
    figures = scores["candidate"].get("outputs")
    if figures is None:  # scores from before output statistics were kept: nothing to judge them by
        return [Check("degenerate_outputs", None, 0, False, "no output statistics in scores.json: evaluate again")]
    failed, parts = [], []
    for key, (field, bound, what) in DEGENERATE.items():
        limit, value = getattr(config, field), figures[key]
        ok = value >= limit if bound == "min" else value <= limit
        sign = {("min", True): "≥", ("min", False): "<", ("max", True): "≤", ("max", False): ">"}[bound, ok]
        parts.append(f"{what} {value:.0%} {sign} {field} {limit:.0%}")
        failed += [] if ok else [what]
    found = [Check("degenerate_outputs", len(failed), 0, not failed, "; ".join(parts) +
                   (f": the candidate's outputs are degenerate ({', '.join(failed)})" if failed else ""))]
    same = figures.get("same_as_champion")
    if same is None:
        found.append(Check("differs_from_champion", None, 1.0, True, "no champion: nothing to repeat"))
    else:
        found.append(Check("differs_from_champion", same, 1.0, same < 1.0,
                           f"{same:.0%} of the test outputs are the champion's" +
                           (": the same translations again, not a new release" if same >= 1.0 else "")))
    return found


def _champion_checks(scores: dict, config: RunConfig, candidate: float) -> list[Check]:
    champion = scores.get("champion")
    lookup = scores.get("champion_lookup") or {}
    if champion is None and lookup.get("found"):  # publishing would replace a model never compared against
        return [Check("champion_regression", None, -config.max_champion_regression, False,
                      f"the champion {lookup.get('label')} was looked up but not scored: nothing to compare against")]
    if champion is None:
        why = lookup.get("reason", "no champion")
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


def decide(scores: dict, config: RunConfig, scores_sha256: str | None = None) -> dict:
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
        "outputs": scores["candidate"].get("outputs"),
        "scores_sha256": scores_sha256,
        "candidate_model": scores.get("candidate_model"),
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


def bound_decision(config: RunConfig) -> dict:
    """gate.json for this run's scores: the stored one when it was decided on them (a retry), else decided
    now and stored; a stored one bound to other scores (stale or planted) is never reused."""
    gate_uri = config.uri(layout.GATE)
    scores_bytes = storage.read_bytes(config.uri(layout.SCORES))
    decision = storage.read_json_or(gate_uri)
    if decision is not None and decision.get("scores_sha256") != digest.of_bytes(scores_bytes):
        log.warning("%s was not decided on this run's scores (%s): deciding again", gate_uri,
                    config.uri(layout.SCORES))
        decision = None
    if decision is None:
        decision = decide(json.loads(scores_bytes), config, digest.of_bytes(scores_bytes))
        storage.write_json(gate_uri, decision)
    return decision


def run(config: RunConfig) -> dict:
    decision = bound_decision(config)
    for line in table(decision):
        log.info("%s", line)
    for check in decision["checks"]:
        log.info("%s %s: %s", "PASS" if check["passed"] else "FAIL", check["name"], check["reason"])
    report.write_report(config)
    return decision


def result(config: RunConfig) -> dict | None:
    return storage.read_json_or(config.uri(layout.GATE))


def read_decision(config: RunConfig) -> dict:
    """The stored decision, for reports; publish verifies it first (`verified_decision`)."""
    decision = result(config)
    if decision is None:
        raise FileNotFoundError(f"{config.uri(layout.GATE)}: no gate decision for this run; refusing to publish")
    return decision


class UnverifiedDecision(RuntimeError):
    """gate.json does not belong to this run's scores, or does not follow from them."""


def verified_decision(config: RunConfig) -> dict:
    """The stored decision, once it is shown to be this run's: decided on the exact eval/scores.json the run
    has, and the decision those scores give under the run's config. Publish trusts nothing else."""
    decision = read_decision(config)
    scores_bytes = storage.read_bytes(config.uri(layout.SCORES))
    found = digest.of_bytes(scores_bytes)
    if decision.get("scores_sha256") != found:
        raise UnverifiedDecision(f"{config.uri(layout.GATE)} was not decided on this run's scores (it names "
                                 f"{decision.get('scores_sha256')}, {config.uri(layout.SCORES)} is {found}): "
                                 "refusing to publish; run the gate step again")
    again = decide(json.loads(scores_bytes), config, found)
    # Both fields: publish acts on `promote`, people read `decision`.
    if (again["decision"], again["promote"]) != (decision["decision"], decision.get("promote")):
        raise UnverifiedDecision(f"{config.uri(layout.GATE)} says {decision['decision']} (promote: "
                                 f"{decision.get('promote')}), but this run's scores and config decide "
                                 f"{again['decision']}: refusing to publish")
    return decision
