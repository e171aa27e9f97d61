"""The one-line outcome that becomes a run's note, from the records a run leaves (case table)."""

import pytest

from mt_airflow.outcome import NOTE_LIMIT, one_line, p_value

PROMOTE = {"decision": "promote", "promote": True, "bleu": {"base": 10.0, "candidate": 12.3, "gain": 2.3},
           "reasons": ["BLEU gain +2.30 ≥ min_bleu_gain 1.0"]}
REFUSE = {"decision": "refuse", "promote": False, "bleu": {"base": 10.0, "candidate": 10.4, "gain": 0.4},
          "reasons": ["BLEU gain +0.40 < min_bleu_gain 1.0"]}
RELEASED = {"published": True, "revision": "abc123def4567890", "tag": "run-20261127-0a1b2c3d"}
IN_REVIEW = {"published": True, "revision": "abc123", "pr_url": "https://hub/org/m/discussions/3"}


LOCAL = {"published": True, "revision": "run-20261207-3e5bc010", "tag": "run-20261207-3e5bc010"}


@pytest.mark.parametrize("pairs, note", [
    # A local registry's revision is its run tag: cut to 12 characters it named no release.
    ([("en-de", PROMOTE, LOCAL)], "promoted: +2.3 BLEU → rev run-20261207-3e5bc010"),
    ([("en-de", PROMOTE, RELEASED)], "promoted: +2.3 BLEU → rev abc123def456"),
    ([("en-de", {**PROMOTE, "p_value": 0.012}, RELEASED)], "promoted: +2.3 BLEU (p=0.012) → rev abc123def456"),
    ([("en-de", {**PROMOTE, "bleu": {**PROMOTE["bleu"], "p_value": 0.01}}, IN_REVIEW)],
     "promoted: +2.3 BLEU (p=0.01) → PR https://hub/org/m/discussions/3"),
    ([("en-de", REFUSE, None)], "refused: BLEU gain +0.40 < min_bleu_gain 1.0"),
    ([("en-de", PROMOTE, None)], "passed the gate: +2.3 BLEU, not published"),
    ([("en-de", {}, None)], "no decision: the run ended before the gate"),
    ([("en-de", PROMOTE, None), ("en-nl", REFUSE, None)],  # the release gate held en-de back
     "refused (en-nl); nothing published | en-de passed the gate: +2.3 BLEU, not published | "
     "en-nl refused: BLEU gain +0.40 < min_bleu_gain 1.0"),
    # a pair with nothing new is no refusal, and the release gate published the pair that passed beside it
    ([("en-de", PROMOTE, RELEASED), ("en-nl", {}, None)],
     "no decision (en-nl); published (en-de) | en-de promoted: +2.3 BLEU → rev abc123def456 | "
     "en-nl no decision: the run ended before the gate"),
    ([("en-de", {}, None), ("en-nl", {}, None)],
     "no decision (en-de, en-nl); nothing published | en-de no decision: the run ended before the gate | "
     "en-nl no decision: the run ended before the gate"),
    ([("en-de", PROMOTE, RELEASED), ("en-nl", PROMOTE, RELEASED)],
     "promoted all pairs | en-de promoted: +2.3 BLEU → rev abc123def456 | en-nl promoted: +2.3 BLEU → rev abc123def456"),
    # every gate passed, but en-nl's publish failed: the run did not promote all pairs
    ([("en-de", PROMOTE, RELEASED), ("en-nl", PROMOTE, None)],
     "passed every gate; published (en-de) | en-de promoted: +2.3 BLEU → rev abc123def456 | "
     "en-nl passed the gate: +2.3 BLEU, not published"),
    ([("en-de", PROMOTE, {"published": False}), ("en-nl", PROMOTE, None)],  # push_to_hub off
     "passed every gate; nothing published | en-de passed the gate: +2.3 BLEU, not published | "
     "en-nl passed the gate: +2.3 BLEU, not published"),
])
def test_one_line(pairs, note):
    assert one_line(pairs) == note


def test_p_value_is_found_wherever_the_gate_wrote_it():
    assert p_value({"checks": [{"name": "significance", "p_value": 0.03}]}) == 0.03
    assert p_value({"significance": {"p_value": 0.2}}) == 0.2
    assert p_value(PROMOTE) is None


def test_notes_fit_airflows_column():
    long_refusal = {**REFUSE, "reasons": ["x" * 2000]}
    assert len(one_line([("en-de", long_refusal, None)])) == NOTE_LIMIT
