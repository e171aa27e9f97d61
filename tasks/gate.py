"""gate: eval/scores.json → gate.json, the decision whether the candidate may be published.

Every check is written with its value, threshold and verdict, so a refusal explains itself. A refused
candidate is a normal outcome, not an error: the run succeeds and publish is skipped.
"""

from __future__ import annotations

import logging

from tasks import evaluate, storage
from tasks.config import RunConfig

log = logging.getLogger(__name__)

GATE = "gate.json"


def decide(scores: dict, config: RunConfig) -> dict:
    gain = round(scores["candidate"]["bleu"] - scores["base"]["bleu"], 2)
    checks = [{
        "name": "bleu_gain",
        "value": gain,
        "threshold": config.min_bleu_gain,
        "passed": gain >= config.min_bleu_gain,
        "reason": (f"BLEU gain {gain:+.2f} {'≥' if gain >= config.min_bleu_gain else '<'} "
                   f"min_bleu_gain {config.min_bleu_gain}"),
    }]
    promote = all(c["passed"] for c in checks)
    return {
        "decision": "promote" if promote else "refuse",
        "promote": promote,
        "reasons": [c["reason"] for c in checks if c["passed"] != promote] or [c["reason"] for c in checks],
        "checks": checks,
        "bleu": {"base": scores["base"]["bleu"], "candidate": scores["candidate"]["bleu"], "gain": gain},
        "signatures": scores["candidate"]["signatures"],
    }


def run(config: RunConfig) -> dict:
    gate_uri = config.uri(GATE)
    if storage.exists(gate_uri):
        return storage.read_json(gate_uri)
    result = decide(storage.read_json(config.uri(evaluate.EVAL, evaluate.SCORES)), config)
    for check in result["checks"]:
        log.info("gate %-10s %-5s %s", check["name"], "PASS" if check["passed"] else "FAIL", check["reason"])
    log.info("gate decision: %s", result["decision"].upper())
    storage.write_json(gate_uri, result)
    return result


def read_decision(config: RunConfig) -> dict:
    """The stored decision; publish calls this itself instead of trusting what the orchestrator passed on."""
    uri = config.uri(GATE)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: no gate decision for this run; refusing to publish")
    return storage.read_json(uri)
