"""Training within a time budget: the project's default recipe against a plain PyTorch loop, same split, same time.

Both fine-tune the same model on the same training split for the same wall-clock budget and are then scored
on the same held-out split (mean cross-entropy per target token, lower is better):

- plain: the loop a user writes first: AdamW at the run config's learning rate, shuffled batches of 32
  sentences padded to the longest, the model's own loss, fp32, a constant learning rate, until the budget
  is spent;
- project: tasks.train.loop with the run config's defaults and `max_train_minutes` (the automatic batch size,
  warmup and a linear decay fitted to the budget), in the precision the run config picks on the device.

The model is the demo's pretrained base model (demo/base_model.py, built and cached on first use) and the data
the demo's GNU software-message catalogs, split by the project's hash. `--tiny` is a seconds-long smoke run:
the tests' digit task and a tiny untrained model.

    python bench/train_budget.py [--tiny] [--minutes 3]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from tasks import hardware  # noqa: E402

if __name__ == "__main__":
    hardware.preload_tcmalloc()  # measured with the allocator the steps run with (python -m tasks)

from tasks.config import PipelineParams  # noqa: E402
from tasks.data import textnorm  # noqa: E402
from tasks.io import formats  # noqa: E402
from tasks.train import automatic, batching, families, passes  # noqa: E402
from tasks.train import loop as trainloop  # noqa: E402
from tasks.train.precision import choose_precision  # noqa: E402

PLAIN_BATCH = 32
MAX_CHARS = 100  # as the demo keeps them: the budget goes to sentences, not to a few long help texts


def demo_pairs() -> list[tuple[str, str]]:
    pairs = []
    with tempfile.TemporaryDirectory() as scratch:
        for path in sorted((REPO / "demo" / "data" / "domain").iterdir()):
            for row in formats.read_rows(path, path.name, "en", "de", Path(scratch)):
                if row.problem is None and row.source and row.target:
                    source, target = textnorm.clean(row.source), textnorm.clean(row.target)
                    if 0 < len(source) <= MAX_CHARS and 0 < len(target) <= MAX_CHARS:
                        pairs.append((source, target))
    return list(dict.fromkeys(pairs))


def setup(tiny: bool, cache: Path):
    """(model folder, training pairs, held-out pairs)."""
    if tiny:
        from support.corpora import digit_pairs
        from support.models import build_digits_model

        model = cache / "digits-base"
        if not (model / "config.json").exists():
            build_digits_model(model)
        pairs = digit_pairs(600, seed=3)
    else:
        from demo import base_model

        model, pairs = base_model.build(), demo_pairs()
    held_out = [p for p in pairs if textnorm.bucket(p[0]) < 0.05]
    return model, [p for p in pairs if textnorm.bucket(p[0]) >= 0.05], held_out


def encode(model_dir: Path, pairs: list[tuple[str, str]]):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return batching.encode(tokenizer, [s for s, _ in pairs], [t for _, t in pairs], 128, 128)


def load(model_dir: Path):
    return families.load_model(str(model_dir))  # fp32, as the train step loads it


def run_plain(model_dir: Path, data: batching.Encoded, seconds: float, lr: float, device) -> tuple[int, object]:
    """The plain loop until the budget is spent; returns (steps, model)."""
    import torch

    model = load(model_dir).to(device).train()
    pad, start = model.config.pad_token_id, model.config.decoder_start_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng, steps, started = random.Random(0), 0, time.monotonic()
    while time.monotonic() - started < seconds:
        order = list(range(len(data)))
        rng.shuffle(order)
        for first in range(0, len(order), PLAIN_BATCH):
            batch = batching.collate(data, order[first:first + PLAIN_BATCH], pad, start, multiple=1)
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
            if time.monotonic() - started >= seconds:
                break
    return steps, model


def run_project(model_dir: Path, data: batching.Encoded, held_out: batching.Encoded, seconds: float, device):
    """The project's loop with the run config's defaults and a time budget; returns (report, model)."""
    defaults = PipelineParams()
    model = load(model_dir)
    settings = trainloop.LoopSettings(
        learning_rate=defaults.learning_rate or 0, weight_decay=defaults.weight_decay, num_train_epochs=1000,
        max_tokens_per_batch=defaults.max_tokens_per_batch, warmup_steps=defaults.warmup_steps,
        early_stopping_patience=defaults.early_stopping_patience, eval_every_steps=defaults.eval_every_steps,
        max_seconds=seconds, checkpoint_every_steps=10**9, precision=defaults.precision, log_every_steps=10**9)
    with tempfile.TemporaryDirectory() as out:
        report = trainloop.train(model, data, held_out, settings, pad_id=model.config.pad_token_id,
                                 decoder_start_id=model.config.decoder_start_token_id,
                                 checkpoints=trainloop.CheckpointDir(Path(out)), device=device)
    return report, model


def heldout_loss(model, data: batching.Encoded, device) -> float:
    return passes.evaluate_loss(model.to(device), data, model.config.pad_token_id, model.config.decoder_start_token_id,
                                device, choose_precision(device, "fp32"), max_tokens_per_batch=4096)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run with a tiny model")
    parser.add_argument("--minutes", type=float, help="the budget of each recipe (default: 3, tiny: 0.1)")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench", help="where built models are kept")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seconds = 60 * (args.minutes or (0.1 if args.tiny else 3.0))
    model_dir, train_pairs, held_out_pairs = setup(args.tiny, args.cache)
    data, held_out = encode(model_dir, train_pairs), encode(model_dir, held_out_pairs)

    initial = heldout_loss(load(model_dir), held_out, device)
    plain_steps, plain_model = run_plain(model_dir, data, seconds, automatic.AUTO_LR, device)
    plain_loss = heldout_loss(plain_model, held_out, device)
    del plain_model
    report, project_model = run_project(model_dir, data, held_out, seconds, device)
    project_loss = heldout_loss(project_model, held_out, device)
    print(json.dumps({
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
        "allocator": hardware.allocator(),
        "model": "tiny digits" if args.tiny else "demo base model", "train_pairs": len(train_pairs),
        "held_out_pairs": len(held_out_pairs), "budget_s": seconds, "plain_batch_sentences": PLAIN_BATCH,
        "plain_steps": plain_steps, "project_steps": report["steps"],
        "project_tokens_per_batch": report["tokens_per_batch"], "project_stopped_by": report["stopped_by"],
        "initial_loss": round(initial, 4), "plain_loss": round(plain_loss, 4), "project_loss": round(project_loss, 4),
        "project_reaches_plain": project_loss <= plain_loss,
    }))


if __name__ == "__main__":
    main()
