"""Which weights fine-tuning may change: all of them, low-rank adapters (LoRA), or all but a frozen part.

Updating fewer weights is the other remedy for catastrophic forgetting (besides replay): the frozen part
keeps what the base model knew, and there is less capacity to overwrite it.

- `full`: every weight trains (the default, and the strongest domain gain).
- `lora`: the base weights stay frozen; small low-rank adapters (peft) are trained on the attention
  projections (`lora_targets`). They are merged into the base weights before saving, so the published model
  is a plain transformers model: evaluation and Hub users load it without peft, at no extra decoding cost.
  LoRA usually wants a learning rate about ten times higher than full fine-tuning.
- `freeze_embeddings`: token embeddings (and the output projection tied to them) stay as they are.
- `freeze_encoder`: the whole encoder stays as it is. Marian, M2M100, NLLB and mBART share one token
  embedding between encoder and decoder, so that embedding (and the tied output projection) stays frozen too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

METHODS = ("full", "lora", "freeze_embeddings", "freeze_encoder")

# LoRA target modules by preset, per naming scheme: BART-style attention (Marian, M2M100, NLLB, mBART) and T5.
_BART_LIKE = {"qv": ["q_proj", "v_proj"], "attention": ["q_proj", "k_proj", "v_proj", "out_proj"]}
_BART_LIKE["all_linear"] = _BART_LIKE["attention"] + ["fc1", "fc2"]
_T5 = {"qv": ["q", "v"], "attention": ["q", "k", "v", "o"]}
_T5["all_linear"] = _T5["attention"] + ["wi", "wi_0", "wi_1", "wo"]
LORA_TARGETS = tuple(_BART_LIKE)


@dataclass(frozen=True)
class AdaptSettings:
    method: str = "full"
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_targets: str = "qv"


def lora_target_modules(model, preset: str) -> list[str]:
    if preset not in LORA_TARGETS:
        raise ValueError(f"lora_targets must be one of {LORA_TARGETS}, not {preset!r}")
    t5_style = getattr(model.config, "model_type", "") in ("t5", "mt5", "umt5")
    return (_T5 if t5_style else _BART_LIKE)[preset]


def freeze_fixed_tables(model) -> None:
    """Freeze sinusoidal position tables (Marian's): constants that no loss reaches, yet stored as trainable
    parameters. Data-parallel training refuses parameters that never get a gradient."""
    for module in model.modules():
        if "Sinusoidal" in type(module).__name__:
            for param in module.parameters():
                param.requires_grad_(False)


def apply(model, settings: AdaptSettings):
    """The model to train: `model` itself with some weights frozen, or a peft model wrapping it."""
    if settings.method not in METHODS:
        raise ValueError(f"adaptation must be one of {METHODS}, not {settings.method!r}")
    freeze_fixed_tables(model)
    if settings.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=settings.lora_r, lora_alpha=settings.lora_alpha,
                            lora_dropout=settings.lora_dropout,
                            target_modules=lora_target_modules(model, settings.lora_targets))
        return get_peft_model(model, config)
    if settings.method == "freeze_embeddings":
        import torch

        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight.requires_grad_(False)
        if (output := model.get_output_embeddings()) is not None:
            output.weight.requires_grad_(False)
    elif settings.method == "freeze_encoder":
        for param in model.get_encoder().parameters():
            param.requires_grad_(False)
    return model


def parameter_counts(model) -> dict:
    """Trainable and total parameters, counting each shared (tied) tensor once."""
    unique = {id(p): p for p in model.parameters()}.values()
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    total = sum(p.numel() for p in unique)
    return {"trainable_parameters": trainable, "total_parameters": total,
            "trainable_share": round(trainable / max(total, 1), 6)}


def for_saving(model):
    """A plain transformers model: LoRA adapters merged into the base weights; anything else as it is."""
    if hasattr(model, "merge_and_unload"):
        merged = model.merge_and_unload()
        log.info("merged the LoRA adapters into the base weights")
        return merged
    return model
