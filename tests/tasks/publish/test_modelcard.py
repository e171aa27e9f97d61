"""The model card: metadata built with ModelCardData/EvalResult that the library reads back unchanged, and
the checks that refuse metadata the Hub would reject or misread."""

import math

import pytest
import yaml
from huggingface_hub import ModelCard

from support.runs import make_run
from tasks.publish import modelcard

SIGNATURES = {"bleu": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
              "chrf": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0",
              "ter": "nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0"}
SCORES = {"test_sentences": 800, "decoding": {"num_beams": 4, "max_length": 128},
          "base": {"bleu": 30.1, "chrf": 58.2, "ter": 55.0, "signatures": SIGNATURES},
          "champion": {"bleu": 33.0, "chrf": 60.1, "ter": 52.3, "signatures": SIGNATURES},
          "candidate": {"bleu": 34.5, "chrf": 61.0, "ter": 50.9, "signatures": SIGNATURES},
          "general": {"sentences": 500,
                      "base": {"bleu": 25.0, "chrf": 55.0, "ter": 60.0},
                      "candidate": {"bleu": 24.6, "chrf": 54.8, "ter": 60.4, "signatures": SIGNATURES}}}
DECISION = {"decision": "promote", "promote": True, "reasons": ["BLEU gain +4.40 ≥ min_bleu_gain 1.0"],
            "checks": [{"name": "bleu_gain", "value": 4.4, "threshold": 1.0, "passed": True,
                        "reason": "BLEU gain +4.40 ≥ min_bleu_gain 1.0"},
                       {"name": "general_regression", "value": -0.4, "threshold": 1.0, "passed": True,
                        "reason": "general-domain BLEU −0.40, within 1.0 | allowed"}]}
PROVENANCE = {"files": 3, "manifest_sha256": "ab" * 32, "test_split_sha256": "cd" * 32}
TRAINING = {"best_step": 900, "best_validation_loss": 1.234, "warmup_steps": 245,
            "settings": {"source_lang": "en", "loop": {"learning_rate": 0.0001, "max_tokens_per_batch": 12288}}}


def _card(tmp_path, scores=SCORES, provenance=PROVENANCE, **params):
    cfg = make_run(tmp_path, hub_repo_id="my-org/opus-mt-en-de-legal", **params)
    records = modelcard.RunRecords(scores=scores, decision=DECISION, validation={"rows_in": 10, "kept": 9},
                                   training=TRAINING, provenance=provenance)
    return cfg, modelcard.build(cfg, records, release_tag="run-20261127-0a1b2c3d", in_review=False)


def _metadata(card):
    return yaml.safe_load(str(card).split("---\n")[1])


def test_metadata_carries_model_index_provenance_and_the_base_model(tmp_path):
    cfg, card = _card(tmp_path)
    meta = _metadata(card)
    assert meta["base_model"] == "Helsinki-NLP/opus-mt-en-de"
    assert (meta["language"], meta["license"], meta["pipeline_tag"]) == (["en", "de"], "cc-by-4.0", "translation")
    assert meta["mt_retrain"]["data_sources"] == [cfg.data_uri]
    assert meta["mt_retrain"]["manifest_sha256"] == PROVENANCE["manifest_sha256"]
    (index,) = meta["model-index"]
    domain, general = index["results"]
    assert domain["dataset"] == {"name": "Held-out domain test set (800 sentences)", "type": "domain-test",
                                 "split": "test", "revision": PROVENANCE["test_split_sha256"]}
    assert [(m["type"], m["value"], m["config"]) for m in domain["metrics"]] == [
        ("bleu", 34.5, SIGNATURES["bleu"]), ("chrf", 61.0, SIGNATURES["chrf"]), ("ter", 50.9, SIGNATURES["ter"])]
    assert general["dataset"]["type"] == "general-test"
    assert {m["type"]: m["value"] for m in general["metrics"]} == {"bleu": 24.6, "chrf": 54.8, "ter": 60.4}
    # What the Hub reads back with the library is what we wrote.
    reread = ModelCard(str(card), ignore_metadata_errors=False)
    assert [(r.dataset_type, r.metric_type, r.metric_value) for r in reread.data.eval_results][:3] == [
        ("domain-test", "bleu", 34.5), ("domain-test", "chrf", 61.0), ("domain-test", "ter", 50.9)]


def test_body_shows_scores_gate_data_training_and_how_to_pin_the_release(tmp_path):
    _, card = _card(tmp_path)
    text = card.text
    assert "| champion | 33.00 | 60.10 | 52.30 |" in text and "| **this model** | 34.50 | 61.00 | 50.90 |" in text
    assert "| general_regression | -0.4 | 1 | pass | general-domain BLEU −0.40, within 1.0 \\| allowed |" in text
    assert "| learning_rate | 0.0001 |" in text and "| best step | 900 |" in text
    assert "| warmup steps used | 245 |" in text  # the automatic warmup, as the loop resolved it
    assert 'pipeline("translation", model="my-org/opus-mt-en-de-legal", revision="run-20261127-0a1b2c3d")' in text
    assert f"`{SIGNATURES['ter']}`" in text and "num_beams=4, max_length=128" in text


def test_a_local_base_model_is_named_in_the_body_not_in_base_model(tmp_path):
    _, card = _card(tmp_path, base_model=str(tmp_path / "tiny-digits"))
    assert "base_model" not in _metadata(card)
    assert f"a local model (`{tmp_path / 'tiny-digits'}`)" in card.text


def test_only_scored_metrics_are_reported(tmp_path):
    scores = {k: v for k, v in SCORES.items() if k not in ("general", "champion")}
    scores = {**scores, "candidate": {"bleu": 34.5, "chrf": 61.0, "signatures": SIGNATURES}}
    _, card = _card(tmp_path, scores=scores)
    (index,) = _metadata(card)["model-index"]
    assert [[m["type"] for m in r["metrics"]] for r in index["results"]] == [["bleu", "chrf"]]


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("      value: 34.5\n", ""), "does not parse"),  # a metric without its value
    (lambda t: t.replace("- en\n", "- english\n"), "language 'english' is not an ISO 639 code"),
    (lambda t: t.replace("base_model: Helsinki-NLP/opus-mt-en-de", "base_model: /models/base"),
     "base_model '/models/base' is not a Hub model id"),
    (lambda t: t.replace("license: cc-by-4.0\n", ""), "license is missing"),
])
def test_validate_refuses_metadata_the_hub_would_reject(tmp_path, edit, words):
    _, card = _card(tmp_path)
    broken = edit(str(card))
    assert broken != str(card)
    with pytest.raises(modelcard.CardError, match=words):
        modelcard.validate(broken)


def test_validate_refuses_scores_that_are_not_numbers(tmp_path):
    with pytest.raises(modelcard.CardError, match="bleu on domain-test is nan, not a number"):
        _card(tmp_path, scores={**SCORES, "candidate": {**SCORES["candidate"], "bleu": math.nan}})


@pytest.mark.parametrize("name, hub_id", [
    ("Helsinki-NLP/opus-mt-en-de", True), ("facebook/nllb-200-distilled-600M", True),
    ("/models/opus", False), ("./opus", False), ("opus-mt-en-de", False), ("a/b/c", False), ("a/b--c", False),
])
def test_hub_model_id(name, hub_id):
    assert (modelcard.hub_model_id(name) == name) is hub_id


def test_the_card_lists_what_was_retracted(tmp_path):
    cfg = make_run(tmp_path, hub_repo_id="my-org/opus-mt-en-de-legal")
    provenance = {**PROVENANCE, "retracted": ["s3://d/in/vendor-x/", "s3://d/in/week3/bad.tsv"]}
    records = modelcard.RunRecords(scores=SCORES, decision=DECISION, validation={"rows_in": 10, "kept": 9},
                                   training=TRAINING, provenance=provenance)
    text = str(modelcard.build(cfg, records, release_tag="run-20261127-0a1b2c3d", in_review=False))
    assert "| retracted (never trained on) | `s3://d/in/vendor-x/`, `s3://d/in/week3/bad.tsv` |" in text
    assert "| retracted (never trained on) | none |" in str(_card(tmp_path / "plain")[1])


def test_the_card_links_the_commit_of_the_base_model_the_run_pinned(tmp_path):
    commit = "0123456789abcdef" * 2 + "01234567"
    _, card = _card(tmp_path, provenance={**PROVENANCE, "base_model_revision": commit})
    assert (f"fine-tuned from [Helsinki-NLP/opus-mt-en-de](https://huggingface.co/Helsinki-NLP/opus-mt-en-de) at "
            f"commit [`{commit[:12]}`](https://huggingface.co/Helsinki-NLP/opus-mt-en-de/tree/{commit})") in str(card)
    assert _metadata(card)["mt_retrain"]["base_model_revision"] == commit
    _, unpinned = _card(tmp_path / "unpinned")  # a run from before the pins: the model's page, no commit
    assert "opus-mt-en-de) on fresh" in str(unpinned)


def test_a_model_that_continued_from_the_champion_says_so(tmp_path):
    cfg = make_run(tmp_path, hub_repo_id="my-org/opus-mt-en-de-legal", init_from="champion")
    records = modelcard.RunRecords(
        scores=SCORES, decision=DECISION, validation={}, provenance=PROVENANCE,
        training={**TRAINING, "init_from": "champion my-org/opus-mt-en-de-legal@run-20261120-1a2b3c4d"})
    text = str(modelcard.build(cfg, records, release_tag="run-20261127-0a1b2c3d", in_review=False))
    assert "this run continued training the model published before it, " \
        "`my-org/opus-mt-en-de-legal@run-20261120-1a2b3c4d`" in text
    _, fresh = _card(tmp_path / "fresh")
    assert "continued training" not in str(fresh)


def test_a_data_writers_key_stays_text_in_the_card_not_a_link_or_an_image():
    """Keys may hold backticks, brackets and '<': wrapped in single backticks, this one closed the code span and put
    a live link and a tracking image into the card on the Hub."""
    from markdown_it import MarkdownIt

    from tasks.publish import modelcard

    key = ("s3://d/incoming/x` **[Download the fixed model](https://evil.example/m)** "
           "<img src=https://evil.example/t.png> `.jsonl")
    table = modelcard._objects_table([{"uri": key, "etag": "e`1", "how": "new"},
                                      {"uri": "s3://d/``a``|b", "etag": "x", "how": "carried"}])
    html = MarkdownIt("commonmark").enable("table").render(table)
    assert "<a " not in html and "<img" not in html and "<strong>" not in html
    cells = [line for line in html.splitlines() if line.startswith("<td><code>")]
    assert cells == ["<td><code>s3://d/incoming/x` **[Download the fixed model](https://evil.example/m)** &lt;img "
                     "src=https://evil.example/t.png&gt; `.jsonl</code></td>", "<td><code>e`1</code></td>",
                     "<td><code>s3://d/``a``|b</code></td>", "<td><code>x</code></td>"]
