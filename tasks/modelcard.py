"""The published model's card, built with huggingface_hub's ModelCard/ModelCardData so the Hub renders it."""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from tasks.config import RunConfig

_TEMPLATE = """---
{{ card_data }}
---

# {{ repo_id }}

{{ source_lang }}→{{ target_lang }} translation model fine-tuned from
[{{ base_model }}]({{ base_model_url }}) on fresh domain data by the `{{ dag_id }}` workflow
(run `{{ run_id }}`).

## Evaluation on the held-out domain test set ({{ test_sentences }} sentences)

| model | BLEU | chrF |
|---|---|---|
| base | {{ base.bleu }} | {{ base.chrf }} |
| this model | {{ candidate.bleu }} | {{ candidate.chrf }} |

Decoding: {{ decoding }}. Signatures: `{{ signatures.bleu }}`, `{{ signatures.chrf }}`.

## Promotion gate: {{ gate.decision }}

{% for check in gate.checks %}- {{ check.reason }}
{% endfor %}
## Training data

Source: `{{ data_uri }}`. {{ data.kept }} pairs kept of {{ data.rows_in }} rows read
({{ data.rejected }} rejected, {{ data.deduplicated }} duplicates).

## Training

{% for k, v in hyperparameters.items() %}- {{ k }}: {{ v }}
{% endfor %}
## Usage

```python
from transformers import pipeline

translate = pipeline("translation", model="{{ repo_id }}")
print(translate("{{ example }}"))
```
"""


def build(config: RunConfig, *, scores: dict, gate: dict, validation: dict, training: dict) -> ModelCard:
    metrics = [EvalResult(task_type="translation", task_name="Translation",
                          dataset_type="domain-test", dataset_name=f"{config.dag_id} frozen test set",
                          dataset_split="test", metric_type=name, metric_name=name.upper() if name == "bleu"
                          else "chrF", metric_value=scores["candidate"][name])
               for name in ("bleu", "chrf")]
    data = ModelCardData(
        language=[config.source_lang, config.target_lang],
        license=config.model_license,
        base_model=config.base_model,
        tags=["translation", "marian" if "opus-mt" in config.base_model else "seq2seq", "mt-retrain"],
        pipeline_tag="translation",
        model_name=config.hub_repo_id,
        eval_results=metrics,
    )
    base_url = (f"https://huggingface.co/{config.base_model}" if "/" in config.base_model
                and not config.base_model.startswith(("/", ".")) else config.base_model)
    return ModelCard.from_template(
        data, template_str=_TEMPLATE, repo_id=config.hub_repo_id, source_lang=config.source_lang,
        target_lang=config.target_lang, base_model=config.base_model, base_model_url=base_url,
        dag_id=config.dag_id, run_id=config.run_id, test_sentences=scores["test_sentences"],
        base=scores["base"], candidate=scores["candidate"], decoding=scores["decoding"],
        signatures=scores["candidate"]["signatures"], gate=gate, data_uri=config.data_uri, data=validation,
        hyperparameters=training.get("settings", {}), example="The file could not be opened.",
    )
