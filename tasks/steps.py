"""The pipeline's steps by name: what `python -m tasks <step> --run-dir URI` runs, and where a launcher reads the
step's stored result once its container or subprocess has ended.

Each step reads its run directory's config.json, writes its outputs there (tasks/layout.py names them) and is
safe to run again: a finished step returns its stored result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tasks.config import RunConfig
from tasks.data import pull, split, validate
from tasks.evaluate import champion, gate
from tasks.evaluate import step as evaluate
from tasks.publish import step as publish
from tasks.train import curve
from tasks.train import step as train


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[RunConfig], dict]
    result: Callable[[RunConfig], dict | None]  # None until the step has finished for this run
    summary: str
    data_parallel: bool = False  # with several GPUs, one process per GPU under torchrun


STEPS: dict[str, Step] = {step.name: step for step in (
    Step("pull", pull.run, pull.result, "copy what is new under data_uri into raw/"),
    Step("validate", validate.run, validate.result, "raw/ → clean.jsonl + rejects.jsonl + validation_report.json"),
    Step("split", split.run, split.result, "clean.jsonl → splits/ with the frozen test set"),
    Step("train", train.run, train.result, "fine-tune base_model → model/", data_parallel=True),
    Step("curve", curve.run, curve.result, "train and score one learning-curve point"),
    Step("champion", champion.run, champion.result, "copy the published model into champion/"),
    Step("evaluate", evaluate.run, evaluate.result, "score base, candidate and champion → eval/"),
    Step("gate", gate.run, gate.result, "decide whether to promote → gate.json, report.md"),
    Step("publish", publish.run, publish.result, "release a promoted model to its registry"),
)}
