"""train: fine-tune `base_model` on splits/train.jsonl with Seq2SeqTrainer → model/ (+ checkpoints/).

This runs inside the training container (`python -m tasks train --run-dir URI`) or as a subprocess on the
worker; it needs nothing from Airflow. The best checkpoint by validation loss is saved, not the last one.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks import split, storage
from tasks.config import RunConfig

log = logging.getLogger(__name__)

MODEL = "model"
CHECKPOINTS = "checkpoints"
REPORT = "train_report.json"


@dataclass(frozen=True)
class TrainSettings:
    source_lang: str
    target_lang: str
    num_train_epochs: float
    learning_rate: float
    weight_decay: float
    train_batch_size: int
    max_source_length: int
    max_target_length: int
    seed: int
    warmup_steps: float = 0.0  # < 1: a share of all steps
    max_steps: int = -1  # > 0 caps training regardless of epochs (used to build the demo base model fast)

    @classmethod
    def from_config(cls, config: RunConfig) -> "TrainSettings":
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__
                      if hasattr(config, name)})


def read_pairs(path: Path, src: str, tgt: str) -> tuple[list[str], list[str]]:
    sources, targets = [], []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            pair = json.loads(line)["translation"]
            sources.append(pair[src])
            targets.append(pair[tgt])
    return sources, targets


def result(config: RunConfig) -> dict | None:
    """The stored training report, or None when training has not finished for this run."""
    uri = config.uri(MODEL, REPORT)
    return storage.read_json(uri) if storage.exists(uri) else None


def run(config: RunConfig) -> dict:
    if (done := result(config)) is not None:
        log.info("train already done for this run")
        return done
    settings = TrainSettings.from_config(config)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = {name: storage.download(split.split_uri(config, name), scratch / f"{name}.jsonl")
                for name in ("train", "validation")}
        local_run = Path(config.run_dir) if not storage.is_s3(config.run_dir) else scratch / "run"
        report = fine_tune(config.base_model, data["train"], data["validation"], settings,
                           output_dir=local_run / MODEL, checkpoint_dir=local_run / CHECKPOINTS)
        if storage.is_s3(config.run_dir):
            storage.upload_tree(local_run / MODEL, config.uri(MODEL))
    return report


def fine_tune(base_model: str, train_file: Path, validation_file: Path, settings: TrainSettings, *,
              output_dir: Path, checkpoint_dir: Path) -> dict:
    """Train and save the best model with its tokenizer to `output_dir`; its report is written last."""
    import datasets as datasets_lib
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq,
                              Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed)

    datasets_lib.disable_progress_bars()
    set_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForSeq2SeqLM.from_pretrained(base_model)

    def tokenize(batch):
        return tokenizer(batch["source"], text_target=batch["target"], max_length=settings.max_source_length,
                         truncation=True)

    datasets = {}
    for name, path in (("train", train_file), ("validation", validation_file)):
        sources, targets = read_pairs(path, settings.source_lang, settings.target_lang)
        datasets[name] = Dataset.from_dict({"source": sources, "target": targets}).map(
            tokenize, batched=True, remove_columns=["source", "target"])
    steps_per_epoch = math.ceil(len(datasets["train"]) / settings.train_batch_size)
    log.info("training %s on %d pairs (%d validation), %d steps per epoch, on %s", base_model,
             len(datasets["train"]), len(datasets["validation"]), steps_per_epoch,
             "cuda" if torch.cuda.is_available() else "cpu")

    args = Seq2SeqTrainingArguments(
        output_dir=str(checkpoint_dir),
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_steps,
        per_device_train_batch_size=settings.train_batch_size,
        per_device_eval_batch_size=settings.train_batch_size,
        num_train_epochs=settings.num_train_epochs,
        max_steps=settings.max_steps,
        seed=settings.seed,
        logging_steps=max(1, steps_per_epoch // 5),
        disable_tqdm=True,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer=tokenizer, model=model),
    )
    started = time.monotonic()
    result = trainer.train()
    seconds = time.monotonic() - started

    output_dir.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    report = {
        "base_model": base_model,
        "train_pairs": len(datasets["train"]),
        "validation_pairs": len(datasets["validation"]),
        "global_steps": trainer.state.global_step,
        "train_loss": round(result.training_loss, 4),
        "best_eval_loss": round(min(h["eval_loss"] for h in evals), 4) if evals else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "seconds": round(seconds, 1),
        "settings": asdict(settings),
    }
    (output_dir / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    log.info("trained in %.1fs: %s", seconds, {k: report[k] for k in ("global_steps", "train_loss",
                                                                       "best_eval_loss")})
    return report
