"""train: fine-tune `base_model` on splits/train.jsonl → model/ (+ checkpoints/ while it runs).

Runs inside the training container (`python -m tasks train --run-dir URI`) or as a subprocess on the
worker; it needs nothing from Airflow. Checkpoints are mirrored to the run directory as they are written,
so when a pod dies the task's retry resumes from the last one instead of starting over. With several GPUs
the CLI starts one process per GPU (torchrun) and this same code trains data-parallel.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks import batching, families, split, storage, trainloop
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

    @classmethod
    def from_config(cls, config: RunConfig) -> "TrainSettings":
        loop_fields = trainloop.LoopSettings.__dataclass_fields__
        return cls(config.source_lang, config.target_lang, config.max_source_length, config.max_target_length,
                   trainloop.LoopSettings(**{k: getattr(config, k) for k in loop_fields if hasattr(config, k)}))


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
        report = fine_tune(config.base_model, data["train"], data["validation"], TrainSettings.from_config(config),
                           output_dir=local_run / MODEL,
                           checkpoints=trainloop.CheckpointDir(local_run / CHECKPOINTS, mirror if remote else None))
        if remote and report.get("saved"):
            storage.upload_tree(local_run / MODEL, config.uri(MODEL), last=REPORT)
    return report


def fine_tune(base_model: str, train_file: Path, validation_file: Path, settings: TrainSettings, *,
              output_dir: Path, checkpoints: trainloop.CheckpointDir) -> dict:
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
    log.info("fine-tuning %s (%s family, %.1fM parameters) on %d pairs, %d validation pairs", base_model,
             family.name, sum(p.numel() for p in model.parameters()) / 1e6, len(encoded["train"]),
             len(encoded["validation"]))
    outcome = trainloop.train(model, encoded["train"], encoded["validation"], settings.loop,
                              pad_id=model.config.pad_token_id,
                              decoder_start_id=model.config.decoder_start_token_id,
                              checkpoints=checkpoints, device=device, rank=rank, world_size=world_size)
    report = {"base_model": base_model, "family": family.name, "train_pairs": len(encoded["train"]),
              "validation_pairs": len(encoded["validation"]), **outcome,
              "settings": asdict(settings), "saved": rank == 0}
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
        (output_dir / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        log.info("saved the best model (step %d, validation loss %.4f) to %s", outcome["best_step"],
                 outcome["best_validation_loss"], output_dir)
    return report
