"""The published model's card: metadata from huggingface_hub's ModelCardData/EvalResult, a body built section
by section from what the run stored, and a check that the metadata is what the Hub will read.

The metadata holds `base_model` (only when it is a Hub id: the Hub rejects local paths), the language pair,
the license, tags, and a `model-index` with BLEU, chrF and TER of this model on the domain test set (and on the
general-domain set when one was scored), each with its sacrebleu signature as the metric config. Data
provenance (source URI, the sha256 of the pull manifest and of the test split) is in the body, the metadata's
`mt_retrain` block and the release's provenance/ files, because the Hub's `datasets` field only takes Hub
dataset ids.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from tasks import cost
from tasks.config import RunConfig
from tasks.evaluate import scoring

ROLES = ("base", "champion", "candidate")  # the order of the score table's rows
METRICS = {"bleu": "BLEU", "chrf": "chrF", "ter": "TER"}
_LANGUAGE = re.compile(r"[a-z]{2,3}")  # ISO 639-1/2/3, what ModelCardData documents for `language`
EXAMPLE_SOURCE = "The file could not be opened."


class CardError(ValueError):
    """Model card metadata that the Hub would reject or misread."""


@dataclass(frozen=True)
class RunRecords:
    """What the run stored that the card reports: scores.json, gate.json, the validation and training reports,
    and provenance (data source files, manifest and test-split hashes)."""

    scores: dict
    decision: dict
    validation: dict
    training: dict
    provenance: dict


def hub_model_id(name: str) -> str | None:
    """`name` if it is a Hub model id (namespace/name), else None (a local folder, a relative path)."""
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") != 1:
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _eval_results(scores: dict, dataset_type: str, dataset_name: str, revision: str | None) -> list[EvalResult]:
    candidate = scores.get("candidate", {})
    signatures = candidate.get("signatures", {})
    return [EvalResult(task_type="translation", task_name="Translation", dataset_type=dataset_type,
                       dataset_name=dataset_name, dataset_split="test", dataset_revision=revision,
                       metric_type=metric, metric_name=pretty, metric_value=candidate[metric],
                       metric_config=signatures.get(metric))
            for metric, pretty in METRICS.items() if metric in candidate]


def card_data(config: RunConfig, *, run_tag: str, scores: dict, provenance: dict) -> ModelCardData:
    results = _eval_results(scores, "domain-test", f"Held-out domain test set ({scores['test_sentences']} "
                            "sentences)", provenance.get("test_split_sha256"))
    if general := scores.get("general"):
        results += _eval_results(general, "general-test", f"General-domain test set "
                                 f"({general.get('sentences', '?')} sentences)", None)
    return ModelCardData(
        language=[config.source_lang, config.target_lang],
        license=config.model_license,
        base_model=hub_model_id(config.base_model),
        library_name="transformers",
        pipeline_tag="translation",
        tags=["translation", f"{config.source_lang}-{config.target_lang}", "mt-retrain"],
        metrics=[m for m in METRICS if m in scores.get("candidate", {})],
        model_name=config.hub_repo_id,
        eval_results=results,
        mt_retrain={"run_tag": run_tag, "dag_id": config.dag_id, "run_id": config.run_id,
                    "data_sources": [config.data_uri], **provenance},
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.6g}"  # scores arrive rounded to 2 decimals; learning rates need more
    elif isinstance(value, dict):
        value = ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def _code(text: Any) -> str:
    """`text` as a Markdown code span, whatever it holds: fenced by one backtick more than its longest run of them
    (CommonMark), so a data writer's key such as ``x` [Download](https://evil) <img src=…> `.jsonl`` stays text on
    the Hub instead of becoming a link or an image in the card."""
    text = str(text).replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def score_table(scores: dict) -> str:
    """base / champion / candidate × BLEU, chrF, TER with confidence intervals: report.md's table."""
    return scoring.score_table(scores, ROLES, labels={"candidate": "**this model**"})


def _flatten(settings: dict) -> list[tuple[str, Any]]:
    out = []
    for key, value in settings.items():
        out += _flatten(value) if isinstance(value, dict) else [(key, value)]
    return out


MAX_LISTED_OBJECTS = 50


def _objects_table(objects: list[dict]) -> str:
    """The data objects this model learned from, with ETags: enough to rebuild its training data exactly."""
    if not objects:
        return "The training report lists no data objects."
    listed = objects[:MAX_LISTED_OBJECTS]
    more = f"\n\n… and {len(objects) - len(listed)} more: every one is in `train_report.json`." \
        if len(objects) > len(listed) else ""
    return (f"Trained on {len(objects)} data object(s) ({sum(o['how'] == 'new' for o in objects)} new in this "
            "run, the others carried from earlier runs):\n\n" +
            _table(["object", "ETag", ""], [[_code(o["uri"]), _code(o["etag"]), o["how"]] for o in listed]) + more)


def body(config: RunConfig, records: RunRecords, *, release_tag: str, in_review: bool) -> str:
    scores, decision, provenance = records.scores, records.decision, records.provenance
    validation, training = records.validation, records.training
    base = config.base_model
    base_link = f"[{base}](https://huggingface.co/{base})" if hub_model_id(base) else f"a local model ({_code(base)})"
    if hub_model_id(base) and (revision := provenance.get("base_model_revision")):
        base_link += f" at commit [`{revision[:12]}`](https://huggingface.co/{base}/tree/{revision})"
    started = str(training.get("init_from") or "")  # train's label: "base <model>" or "champion <release>"
    if started.startswith("champion "):  # init_from = champion: last release's weights, not the base model's
        base_link += f" (this run continued training the model published before it, {_code(started[9:])})"
    signatures = scores.get("candidate", {}).get("signatures", {})
    sections = [
        f"# {config.hub_repo_id.split('/')[-1]}",
        f"{config.source_lang}→{config.target_lang} translation model fine-tuned from {base_link} on fresh "
        f"domain data by the `{config.dag_id}` workflow, run `{config.run_id}` (release `{release_tag}`). It was "
        f"published because it passed the promotion gate below.",
        f"## Evaluation\n\nHeld-out domain test set, {scores['test_sentences']} sentences, identical decoding for "
        f"every model ({_cell(scores.get('decoding', {}))}):\n\n{score_table(scores)}",
    ]
    if general := scores.get("general"):
        sections.append(f"General-domain test set (forgetting check):\n\n{score_table(general)}")
    sections.append("sacrebleu signatures:\n\n" + "\n".join(f"- {METRICS[m]}: `{s}`" for m, s in signatures.items()))
    checks = [[c["name"], c.get("value", ""), c.get("threshold", ""), "pass" if c["passed"] else "FAIL",
               c.get("reason", "")] for c in decision.get("checks", [])]
    sections.append(f"## Promotion gate: {decision['decision'].upper()}\n\n"
                    + _table(["check", "value", "threshold", "verdict", "reason"], checks))
    sections.append(
        "## Training data\n\n" + _table(["", ""], [
            ["source", _code(config.data_uri)],
            ["files pulled", provenance.get("files", "n/a")],
            ["pull manifest sha256", f"`{provenance.get('manifest_sha256', 'n/a')}`"],
            ["test split sha256", f"`{provenance.get('test_split_sha256', 'n/a')}`"],
            ["rows read / kept", f"{validation.get('rows_in', 'n/a')} / {validation.get('kept', 'n/a')}"],
            ["rejected / duplicates", f"{validation.get('rejected', 'n/a')} / {validation.get('deduplicated', 'n/a')}"],
            ["retracted (never trained on)", ", ".join(_code(r) for r in provenance.get("retracted") or []) or "none"],
        ]) + "\n\n" + _objects_table(training.get("training_objects") or []) +
        "\n\nThe manifest (every object with its ETag and size) and the validation report are in "
        "`provenance/`; scores and the gate's decision in `eval/`.")
    outcome = [("learning rate used", training.get("learning_rate")),
               ("tokens per batch used", training.get("tokens_per_batch")),
               ("warmup steps used", training.get("warmup_steps")),
               ("best step", training.get("best_step")), ("best validation loss", training.get("best_validation_loss")),
               ("train pairs", training.get("train_pairs")), ("compute", cost.training(training))]
    hyper = _flatten(training.get("settings", {})) + [(k, v) for k, v in outcome if v is not None]
    sections.append("## Training\n\n" + _table(["setting", "value"], hyper))
    revision = "" if in_review else f', revision="{release_tag}"'
    sections.append(
        "## Usage\n\n```python\nfrom transformers import pipeline\n\n"
        f'translate = pipeline("translation", model="{config.hub_repo_id}"{revision})\n'
        f'print(translate("{EXAMPLE_SOURCE}")[0]["translation_text"])\n```'
        + ("" if in_review else f"\n\nEvery release is tagged `run-<date>-<id>`; pin `{release_tag}` to keep this "
                                "exact model."))
    return "\n\n".join(sections) + "\n"


def build(config: RunConfig, records: RunRecords, *, release_tag: str, in_review: bool) -> ModelCard:
    """The validated card of the release `release_tag` (in review: no tag to pin yet)."""
    data = card_data(config, run_tag=release_tag, scores=records.scores, provenance=records.provenance)
    text = body(config, records, release_tag=release_tag, in_review=in_review)
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")
    validate(card)
    return card


def validate(card: ModelCard | str) -> None:
    """Offline checks with the library's own parser; the Hub's validate-yaml endpoint checks again on commit.

    The card (or a card's text) is re-read by `ModelCard` with metadata errors fatal (the block regex is the Hub
    server's), so a model-index that the library cannot turn back into EvalResults fails here. The metadata
    must survive that round trip unchanged, ids must be Hub ids, languages ISO codes, scores finite numbers.
    """
    try:
        reread = ModelCard(str(card), ignore_metadata_errors=False)
    except ValueError as err:
        raise CardError(f"model card metadata does not parse: {err}") from None
    before, after = (card if isinstance(card, ModelCard) else reread).data.to_dict(), reread.data.to_dict()
    if before != after:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        raise CardError(f"model card metadata changes when read back: {changed}")
    problems = []
    for key in ("language", "license", "model-index"):
        if not after.get(key):
            problems.append(f"{key} is missing")
    for lang in after.get("language") or []:
        if not _LANGUAGE.fullmatch(str(lang)):
            problems.append(f"language {lang!r} is not an ISO 639 code")
    base = after.get("base_model")
    for model in ([base] if isinstance(base, str) else base or []):
        if hub_model_id(model) is None:
            problems.append(f"base_model {model!r} is not a Hub model id")
    for result in reread.data.eval_results or []:
        if not isinstance(result.metric_value, (int, float)) or not math.isfinite(result.metric_value):
            problems.append(f"{result.metric_type} on {result.dataset_type} is {result.metric_value!r}, not a number")
    if problems:
        raise CardError("model card metadata is invalid: " + "; ".join(problems))
