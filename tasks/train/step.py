"""train: fine-tune `base_model` on splits/train.jsonl → model/ (+ checkpoints/ while it runs).

Runs inside the training container (`python -m tasks train --run-dir URI`) or as a subprocess on the
worker; it needs nothing from Airflow. Checkpoints are mirrored to the run directory as they are written (in
the background: training goes on while they upload), so when a pod dies the task's retry resumes from the
last one instead of starting over. With several GPUs the CLI starts one process per GPU (torchrun) and this
same code trains data-parallel.

Against forgetting, general-domain pairs can be replayed in the training mix (tasks/data/replay.py) and fewer
weights can be trained (LoRA or freezing, tasks/train/adaptation.py); the saved model is always a plain
transformers model.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tasks import hub_models, layout, locations
from tasks.config import RunConfig
from tasks.data import replay
from tasks.io import storage
from tasks.io.pairs import read_pairs, write_pairs
from tasks.train import adaptation, batching, distributed, families, loop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    source_lang: str
    target_lang: str
    max_source_length: int
    max_target_length: int
    loop: loop.LoopSettings
    adaptation: adaptation.AdaptSettings = field(default_factory=adaptation.AdaptSettings)

    @classmethod
    def from_config(cls, config: RunConfig) -> "TrainSettings":
        """Each setting named once, so a renamed config field fails here instead of being dropped."""
        loop_settings = loop.LoopSettings(
            learning_rate=config.learning_rate or 0, weight_decay=config.weight_decay,
            num_train_epochs=config.num_train_epochs, max_tokens_per_batch=config.max_tokens_per_batch,
            warmup_steps=config.warmup_steps, max_steps=config.max_steps, eval_every_steps=config.eval_every_steps,
            max_seconds=(config.max_train_minutes or 0) * 60,
            early_stopping_patience=config.early_stopping_patience,
            checkpoint_every_steps=config.checkpoint_every_steps, precision=config.precision,
            cuda_graphs=config.cuda_graphs, seed=config.seed)
        adapt = adaptation.AdaptSettings(method=config.adaptation, lora_r=config.lora_r, lora_alpha=config.lora_alpha,
                                         lora_dropout=config.lora_dropout, lora_targets=config.lora_targets)
        return cls(config.source_lang, config.target_lang, config.max_source_length, config.max_target_length,
                   loop_settings, adapt)


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
    return storage.read_json_or(config.uri(layout.TRAIN_REPORT))


def run(config: RunConfig) -> dict:
    if (done := result(config)) is not None:
        log.info("train already done for this run")
        return done
    remote = storage.is_s3(config.run_dir)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        local_run = scratch / "run" if remote else Path(config.run_dir)
        data = {name: storage.download(config.uri(layout.split_file(name)), scratch / f"{name}.jsonl")
                for name in ("train", "validation")}
        train_file, data_report = training_mix(config, data["train"], scratch)
        start, start_label = starting_model(config, scratch)
        data_report.update(init_from=start_label, training_objects=training_objects(config))
        # Leaving the block waits for the last checkpoint's upload, also when training failed: a retry
        # resumes from it.
        with _checkpoints(config, local_run / layout.CHECKPOINTS, remote) as checkpoints:
            report = fine_tune(start, train_file, data["validation"], TrainSettings.from_config(config),
                               output_dir=local_run / layout.MODEL, checkpoints=checkpoints, extra_report=data_report)
        if remote and report.get("saved"):
            storage.upload_tree(local_run / layout.MODEL, config.uri(layout.MODEL), last=layout.TRAIN_REPORT_NAME)
    return report


def starting_model(config: RunConfig, scratch: Path) -> tuple[str, str]:
    """(where to load from, what to call it): base_model, or with init_from = champion the published model the
    champion step copied into the run (base_model while nothing is published, or when the champion's release says
    it was fine-tuned from another base model than base_model: the configured base is the one to train)."""
    if config.init_from == "champion":
        found = storage.read_json_or(config.uri(layout.CHAMPION_RECORD))
        if found is None:
            raise FileNotFoundError(f"{config.uri(layout.CHAMPION_RECORD)}: init_from is champion, but the "
                                    "champion step has not run for this run")
        lineage = found.get("base_model")
        if found["found"] and lineage is not None and not same_model(lineage, config.base_model):
            # base_model was switched since the champion's release: continuing from the champion would train the
            # old model on and never the one configured now.
            log.warning("init_from champion, but the champion %s was fine-tuned from %s and base_model is now %s: "
                        "starting from %s", found["label"], lineage, config.base_model, config.base_model)
            location, label = hub_models.local_copy(config, config.base_model)
            return location, f"base {label} (the champion {found['label']} was fine-tuned from {lineage})"
        if found["found"]:
            log.info("continuing from the champion %s", found["label"])
            return str(storage.local_dir_for(found["model_uri"], scratch / "champion")), f"champion {found['label']}"
        log.info("init_from champion, but there is none yet (%s): starting from %s", found["reason"],
                 config.base_model)
    location, label = hub_models.local_copy(config, config.base_model)
    return location, f"base {label}"


def same_model(a: str, b: str) -> bool:
    """Whether two base_model settings name one model: a Hub id whatever its case (the Hub's ids ignore it), a
    folder with or without a trailing slash."""
    def plain(name: str) -> str:
        name = str(name).strip()
        if locations.is_hub_model(name):
            return name.casefold()
        return name.rstrip("/") if "://" in name else os.path.normpath(name)
    return plain(a) == plain(b)


def training_objects(config: RunConfig) -> list[dict]:
    """Every data object this model learned from, with its ETag: a release can be reproduced from this list."""
    manifest = storage.read_json_or(config.uri(layout.PULL_MANIFEST)) or {}
    return [{"uri": o["uri"], "etag": o["etag"], "how": how}
            for how, objects in (("new", manifest.get("objects", [])), ("carried", manifest.get("carried", [])))
            for o in objects]


def _checkpoints(config: RunConfig, local: Path, remote: bool) -> loop.CheckpointDir:
    """The local checkpoint folder; for an S3 run directory, mirrored there and seeded with its latest one."""
    if not remote:
        return loop.CheckpointDir(local)
    latest_uri = config.uri(layout.CHECKPOINTS, "LATEST")
    if storage.exists(latest_uri):
        latest = storage.read_text(latest_uri).strip()
        storage.download_tree(config.uri(layout.CHECKPOINTS, latest), local / latest)

    def mirror(checkpoint: Path) -> None:
        storage.upload_tree(checkpoint, config.uri(layout.CHECKPOINTS, checkpoint.name))
        storage.write_text(latest_uri, checkpoint.name)  # last: marks it complete
        _prune_mirrored(config.uri(layout.CHECKPOINTS), checkpoint.name, keep=folder.keep)

    folder = loop.CheckpointDir(local, mirror)
    return folder


def _prune_mirrored(root_uri: str, newest: str, keep: int) -> None:
    """Remove the mirrored checkpoints before the newest `keep`, as the local folder does: a retry resumes from
    LATEST alone, and each one holds the weights twice and Adam's two moments (some 5× the model: over a gigabyte
    for opus-mt), so a run that kept them all left gigabytes in S3 per run."""
    mirrored = sorted(name for name in storage.list_folders(root_uri) if name.startswith("step-") and name <= newest)
    for old in mirrored[:-keep]:
        try:
            # A retry overlapping its attempt mirrors here too: LATEST may name its older checkpoint by now.
            if _latest(root_uri) == old:
                continue
            for obj in storage.list_objects(storage.join(root_uri, old), hidden=True):
                storage.delete(obj.uri)
        except Exception as err:  # noqa: BLE001 - tidying up: a store that refuses deletes still trains
            log.warning("could not remove the superseded checkpoint %s from %s: %s", old, root_uri, err)
            return


def _latest(root_uri: str) -> str | None:
    try:
        return storage.read_text(storage.join(root_uri, "LATEST")).strip()
    except FileNotFoundError:
        return None


def fine_tune(base_model: str, train_file: Path, validation_file: Path, settings: TrainSettings, *,
              output_dir: Path, checkpoints: loop.CheckpointDir, extra_report: dict | None = None) -> dict:
    """Train from `base_model` and save the best model with its tokenizer; the report file is written last."""
    from transformers import AutoTokenizer  # heavy: only the steps that need a model

    rank, world_size, device = distributed.distributed_context()
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = families.load_model(base_model)  # fp32 weights, whatever the base was saved in
    family = families.prepare(model, tokenizer, settings.source_lang, settings.target_lang)
    # Where the step's time goes beside the loop: what a GPU is held for but does not compute in.
    step_seconds = {"loading": round(time.perf_counter() - started, 2)}
    started = time.perf_counter()
    limits = batching.model_limits(tokenizer, settings.max_source_length, settings.max_target_length, model.config)
    encoded = {name: _encode(tokenizer, family, path, settings, limits)
               for name, path in (("train", train_file), ("validation", validation_file))}
    step_seconds["tokenizing"] = round(time.perf_counter() - started, 2)
    trainee = _adapted(model, settings)
    counts = adaptation.parameter_counts(trainee)
    log.info("fine-tuning %s (%s family, %.1fM parameters, %s: %.2fM trainable) on %d pairs, %d validation pairs",
             base_model, family.name, counts["total_parameters"] / 1e6, settings.adaptation.method,
             counts["trainable_parameters"] / 1e6, len(encoded["train"]), len(encoded["validation"]))
    outcome = loop.train(trainee, encoded["train"], encoded["validation"], settings.loop,
                         pad_id=model.config.pad_token_id, decoder_start_id=model.config.decoder_start_token_id,
                         checkpoints=checkpoints, device=device, rank=rank, world_size=world_size)
    report = {"base_model": base_model, "family": family.name, "train_pairs": len(encoded["train"]),
              "validation_pairs": len(encoded["validation"]), **(extra_report or {}), **outcome,
              "adaptation": settings.adaptation.method, **counts, "settings": asdict(settings), "saved": rank == 0,
              "step_seconds": step_seconds}
    if rank == 0:
        _save(adaptation.for_saving(trainee), tokenizer, output_dir, report)
    if world_size > 1:
        distributed.leave_distributed()
    return report


def _adapted(model, settings: TrainSettings):
    """The model to train, seeded first: LoRA draws its initial matrices when it is applied, before the loop."""
    import torch

    torch.manual_seed(settings.loop.seed)
    return adaptation.apply(model, settings.adaptation)


def _encode(tokenizer, family: families.Family, path: Path, settings: TrainSettings,
            limits: tuple[int, int]) -> batching.Encoded:
    """The pairs of `path` as token ids, each side cut to its limit (`batching.model_limits`)."""
    sources, targets = read_pairs(path, settings.source_lang, settings.target_lang)
    # With torchrun, each of this machine's training processes tokenizes the corpus at the same time.
    workers = batching.encode_workers(tokenizer, len(sources), int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if workers > 1:
        log.info("tokenizing %d pairs in %d processes", len(sources), workers)
    return batching.encode(tokenizer, family.source_texts(sources), targets, *limits, workers=workers)


def _save(model, tokenizer, output_dir: Path, report: dict) -> None:
    started = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    report["step_seconds"]["saving"] = round(time.perf_counter() - started, 2)
    (output_dir / layout.TRAIN_REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")  # last: marks it done
    log.info("saved the best model (step %d, validation loss %.4f) to %s", report["best_step"],
             report["best_validation_loss"], output_dir)
