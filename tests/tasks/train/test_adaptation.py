"""Which weights train: LoRA adapters merged before saving, frozen embeddings or encoder left untouched."""

import json
import re

import pytest

from support.corpora import digit_pairs, write_jsonl
from tasks import layout
from tasks.train import adaptation
from tasks.train import loop as trainloop
from tasks.train import step as train


def _load(path):
    from transformers import AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM.from_pretrained(path)


def _trainable_names(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method, trains, stays_frozen", [
    ("full", ("model.shared.weight", "model.encoder.layers.0.fc1.weight"), ()),
    ("lora", ("q_proj.lora_A", "v_proj.lora_B"), ("q_proj.base_layer", "fc1", "shared", "k_proj")),
    ("freeze_embeddings", ("model.encoder.layers.0.fc1.weight", "model.decoder.layers.1.self_attn.q_proj.weight"),
     ("model.shared.weight",)),
    ("freeze_encoder", ("model.decoder.layers.0.fc1.weight",),
     ("model.encoder.layers.0.fc1.weight", "model.shared.weight")),  # the shared embedding belongs to the encoder
])
def test_each_method_trains_only_its_weights(tiny_model, method, trains, stays_frozen):
    model = adaptation.apply(_load(tiny_model), adaptation.AdaptSettings(method))
    names = _trainable_names(model)
    counts = adaptation.parameter_counts(model)
    assert all(any(t in n for n in names) for t in trains), names
    assert not any(f in n for f in stays_frozen for n in names), names
    assert not any("embed_positions" in n for n in names)  # Marian's sinusoidal tables are constants
    if method == "full":
        positions = 2 * 256 * 64  # encoder's and decoder's
        assert counts["trainable_parameters"] == counts["total_parameters"] - positions
    else:
        assert 0 < counts["trainable_parameters"] < counts["total_parameters"]


@pytest.mark.parametrize("preset, modules", [
    ("qv", {"q_proj", "v_proj"}),
    ("attention", {"q_proj", "k_proj", "v_proj", "out_proj"}),
    ("all_linear", {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}),
])
def test_lora_targets_presets(tiny_model, preset, modules):
    model = adaptation.apply(_load(tiny_model), adaptation.AdaptSettings("lora", lora_r=4, lora_targets=preset))
    adapted = {re.search(r"(\w+)\.lora_[AB]\.", name)[1] for name in _trainable_names(model)}
    assert adapted == modules


def _settings(**loop):
    return train.TrainSettings("en", "de", 32, 32, trainloop.LoopSettings(**{
        "learning_rate": 3e-3, "weight_decay": 0.0, "num_train_epochs": 100, "max_tokens_per_batch": 512,
        "warmup_steps": 0.1, "early_stopping_patience": 0, "precision": "fp32", **loop}),
        adaptation.AdaptSettings("lora", lora_r=4, lora_alpha=8))


def test_lora_training_saves_a_plain_merged_model_and_resumes(tiny_model, tmp_path):
    from safetensors.torch import load_file

    pairs = digit_pairs(150, seed=4)
    write_jsonl(tmp_path / "train.jsonl", pairs[:130])
    write_jsonl(tmp_path / "val.jsonl", pairs[130:])
    checkpoints = trainloop.CheckpointDir(tmp_path / "ck")

    def fine_tune(max_steps, out):
        return train.fine_tune(str(tiny_model), tmp_path / "train.jsonl", tmp_path / "val.jsonl",
                               _settings(max_steps=max_steps, checkpoint_every_steps=2, eval_every_steps=2),
                               output_dir=tmp_path / out, checkpoints=checkpoints)

    report = fine_tune(4, "model")
    assert report["adaptation"] == "lora"
    assert 0 < report["trainable_parameters"] < report["total_parameters"] / 5
    saved = load_file(tmp_path / "model" / "model.safetensors")
    base = load_file(tiny_model / "model.safetensors")
    assert not any("lora" in key or "base_layer" in key for key in saved)  # loads without peft
    assert set(saved) == set(base)
    q, fc1 = "model.encoder.layers.0.self_attn.q_proj.weight", "model.encoder.layers.0.fc1.weight"
    assert not saved[q].equal(base[q])  # the adapters were merged into the attention weights
    assert saved[fc1].equal(base[fc1])  # and nothing else moved
    assert json.loads((tmp_path / "model" / layout.TRAIN_REPORT_NAME).read_text())["trainable_parameters"] == \
        report["trainable_parameters"]
    _load(tmp_path / "model")

    resumed = fine_tune(6, "model-resumed")  # the same LoRA-wrapped model continues from step 4
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 6


def test_loras_initial_matrices_follow_the_seed(tiny_model):
    """peft draws them when the adaptation is applied, before the loop seeds torch: a rerun with the same seed
    must start from the same adapters."""
    import torch

    def first_adapter(seed: int, state_before: int):
        torch.manual_seed(state_before)  # whatever drew from torch's generator before
        trainee = train._adapted(_load(tiny_model), _settings(seed=seed))
        return next(p.detach().clone() for name, p in trainee.named_parameters() if "lora_A" in name)

    assert torch.equal(first_adapter(7, state_before=1), first_adapter(7, state_before=2))
    assert not torch.equal(first_adapter(7, state_before=1), first_adapter(8, state_before=1))
