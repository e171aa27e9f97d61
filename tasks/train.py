"""train: fine-tune `base_model` on splits/train.jsonl → model/ (+ checkpoints/ while it runs).

Runs inside the training container (`python -m tasks train --run-dir URI`) or as a subprocess on the
worker; it needs nothing from Airflow. Checkpoints are mirrored to the run directory as they are written,
so when a pod dies the task's retry resumes from the last one instead of starting over. With several GPUs
the CLI starts one process per GPU (torchrun) and this same code trains data-parallel.

Against forgetting, general-domain pairs can be replayed in the training mix (tasks/replay.py) and fewer
weights can be trained (LoRA or freezing, tasks/adaptation.py); the saved model is always a plain
transformers model.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tasks import adaptation, batching, families, replay, split, storage, trainloop
from tasks.config import RunConfig

log = logging.getLogger(__name__)

MODEL = "model"
CHECKPOINTS = "checkpoints"
REPORT = "train_report.json"


@dataclass(frozen=True)
class TrainSettings:
    source_lang: str
    target_lang: str
    max_source_length: int
    max_target_length: int
    loop: trainloop.LoopSettings
    adaptation: adaptation.AdaptSettings = field(default_factory=adaptation.AdaptSettings)

    @classmethod
    def from_config(cls, config: RunConfig) -> "TrainSettings":
        loop_fields = trainloop.LoopSettings.__dataclass_fields__
        adapt = adaptation.AdaptSettings(config.adaptation, config.lora_r, config.lora_alpha, config.lora_dropout,
                                         config.lora_targets)
        return cls(config.source_lang, config.target_lang, config.max_source_length, config.max_target_length,
                   trainloop.LoopSettings(**{k: getattr(config, k) for k in loop_fields if hasattr(config, k)}),
                   adapt)


def read_pairs(path: Path, src: str, tgt: str) -> tuple[list[str], list[str]]:
    sources, targets = [], []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            pair = json.loads(line)["translation"]
            sources.append(pair[src])
            targets.append(pair[tgt])
    return sources, targets


def write_pairs(path: Path, pairs: list[tuple[str, str]], src: str, tgt: str) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for source, target in pairs:
            fh.write(json.dumps({"translation": {src: source, tgt: target}}, ensure_ascii=False) + "\n")
    return path


def training_mix(config: RunConfig, domain_file: Path, scratch: Path) -> tuple[Path, dict]:
    """The file to train on (the train split, plus replayed general pairs when asked) and what it holds."""
    if config.replay_fraction <= 0:
        with domain_file.open(encoding="utf-8") as fh:
            return domain_file, {"domain_train_pairs": sum(1 for _ in fh), "replay": None}
    domain = list(zip(*read_pairs(domain_file, config.source_lang, config.target_lang)))
    mixed = replay.for_run(config, domain)
    path = write_pairs(scratch / "train-with-replay.jsonl", mixed.pairs, config.source_lang, config.target_lang)
    return path, {"domain_train_pairs": len(domain), "replay": mixed.report}


def result(config: RunConfig) -> dict | None:
    """The stored training report, or None when training has not finished for this run."""
    uri = config.uri(MODEL, REPORT)
    return storage.read_json(uri) if storage.exists(uri) else None


def run(config: RunConfig) -> dict:
    if (done := result(config)) is not None:
        log.info("train already done for this run")
        return done
    remote = storage.is_s3(config.run_dir)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        local_run = scratch / "run" if remote else Path(config.run_dir)
        if remote and storage.exists(config.uri(CHECKPOINTS, "LATEST")):
            latest = storage.read_text(config.uri(CHECKPOINTS, "LATEST")).strip()
            storage.download_tree(config.uri(CHECKPOINTS, latest), local_run / CHECKPOINTS / latest)

        def mirror(checkpoint: Path) -> None:
            storage.upload_tree(checkpoint, config.uri(CHECKPOINTS, checkpoint.name))
            storage.write_text(config.uri(CHECKPOINTS, "LATEST"), checkpoint.name)  # last: marks it complete

        data = {name: storage.download(split.split_uri(config, name), scratch / f"{name}.jsonl")
                for name in ("train", "validation")}
        train_file, data_report = training_mix(config, data["train"], scratch)
        report = fine_tune(config.base_model, train_file, data["validation"], TrainSettings.from_config(config),
                           output_dir=local_run / MODEL,
                           checkpoints=trainloop.CheckpointDir(local_run / CHECKPOINTS, mirror if remote else None),
                           extra_report=data_report)
        if remote and report.get("saved"):
            storage.upload_tree(local_run / MODEL, config.uri(MODEL), last=REPORT)
    return report


def fine_tune(base_model: str, train_file: Path, validation_file: Path, settings: TrainSettings, *,
              output_dir: Path, checkpoints: trainloop.CheckpointDir, extra_report: dict | None = None) -> dict:
    """Train from `base_model` and save the best model with its tokenizer; the report file is written last."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    rank, world_size, device = trainloop.distributed_context()
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSeq2SeqLM.from_pretrained(base_model)
    family = families.prepare(model, tokenizer, settings.source_lang, settings.target_lang)
    encoded = {}
    for name, path in (("train", train_file), ("validation", validation_file)):
        sources, targets = read_pairs(path, settings.source_lang, settings.target_lang)
        encoded[name] = batching.encode(tokenizer, family.source_texts(sources), targets,
                                        settings.max_source_length, settings.max_target_length)
    pad_id, decoder_start_id = model.config.pad_token_id, model.config.decoder_start_token_id
    trainee = adaptation.apply(model, settings.adaptation)
    counts = adaptation.parameter_counts(trainee)
    log.info("fine-tuning %s (%s family, %.1fM parameters, %s: %.2fM trainable) on %d pairs, %d validation pairs",
             base_model, family.name, counts["total_parameters"] / 1e6, settings.adaptation.method,
             counts["trainable_parameters"] / 1e6, len(encoded["train"]), len(encoded["validation"]))
    outcome = trainloop.train(trainee, encoded["train"], encoded["validation"], settings.loop, pad_id=pad_id,
                              decoder_start_id=decoder_start_id, checkpoints=checkpoints, device=device, rank=rank,
                              world_size=world_size)
    model = adaptation.for_saving(trainee)
    report = {"base_model": base_model, "family": family.name, "train_pairs": len(encoded["train"]),
              "validation_pairs": len(encoded["validation"]), **(extra_report or {}), **outcome,
              "adaptation": settings.adaptation.method, **counts, "settings": asdict(settings), "saved": rank == 0}
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        (output_dir / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        log.info("saved the best model (step %d, validation loss %.4f) to %s", outcome["best_step"],
                 outcome["best_validation_loss"], output_dir)
    if world_size > 1:
        trainloop.leave_distributed()
    return report
