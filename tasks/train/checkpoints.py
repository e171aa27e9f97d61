"""Checkpoints of a training run: written locally on the training thread, mirrored to remote storage on a
worker thread, the newest two kept; a killed run resumes from the latest."""

from __future__ import annotations

import random
import shutil
import threading
from pathlib import Path
from typing import Callable

STATE = "state.pt"


class CheckpointDir:
    """checkpoints/step-NNNNNNNN/state.pt, written to a temp name and renamed; the newest two are kept.

    `on_saved` mirrors each finished checkpoint to remote storage (S3 run directories). It runs on a worker
    thread, so only the local torch.save holds training up: with several GPUs the other ranks wait at their
    next collective for rank 0's disk, not for an upload of model and optimizer state, which on a large model
    outlasts the collective timeout. A checkpoint still waiting when a newer one is saved is not mirrored: the
    newer one supersedes it, so a slow store never builds a backlog. The one being uploaded is not pruned.
    A mirroring error is raised by the next `save` or by `wait`; use the folder as a context manager (or call
    `wait`) so that training ends only when its last checkpoint is mirrored.
    """

    def __init__(self, root: Path, on_saved: Callable[[Path], None] | None = None, keep: int = 2):
        self.root, self.on_saved, self.keep = root, on_saved, keep
        self._changed = threading.Condition()
        self._queued: Path | None = None  # the newest checkpoint not yet picked up by the worker
        self._mirroring: Path | None = None
        self._worker: threading.Thread | None = None
        self._error: tuple[str, BaseException] | None = None

    def __enter__(self) -> "CheckpointDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.wait(raise_error=exc_type is None)  # a failed training keeps its own error

    def latest(self) -> Path | None:
        done = sorted(p for p in self.root.glob("step-*") if (p / STATE).exists()) if self.root.exists() else []
        return done[-1] if done else None

    def save(self, state: dict, step: int) -> Path:
        import torch

        self._raise_error()
        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".step-{step:08d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(state, tmp / STATE)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        with self._changed:
            uploading = self._mirroring
            if self.on_saved:
                self._queued = final
                if self._worker is None:
                    self._worker = threading.Thread(target=self._mirror_queued, name="checkpoint-mirror",
                                                    daemon=True)
                    self._worker.start()
        for old in sorted(p for p in self.root.glob("step-*"))[:-self.keep]:
            if old != uploading:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def wait(self, raise_error: bool = True) -> None:
        """Return once every saved checkpoint is mirrored (or superseded)."""
        with self._changed:
            self._changed.wait_for(lambda: self._worker is None)
        if raise_error:
            self._raise_error()

    def _mirror_queued(self) -> None:
        while True:
            with self._changed:
                checkpoint, self._queued = self._queued, None
                self._mirroring = checkpoint
                if checkpoint is None or self._error:
                    self._worker = None
                    self._changed.notify_all()
                    return
            try:
                self.on_saved(checkpoint)
            except BaseException as err:  # noqa: BLE001 - handed to the training thread, not swallowed
                with self._changed:
                    self._error = (checkpoint.name, err)

    def _raise_error(self) -> None:
        with self._changed:
            failed = self._error
        if failed:
            name, err = failed
            raise RuntimeError(f"mirroring checkpoint {name} to the run directory failed: {err}") from err


def random_states(device_type: str, world_size: int) -> list[dict]:
    """Each rank's random generators (dropout draws from torch's), for a checkpoint, so that a resumed run draws
    what the uninterrupted one would have. Plain tensors and tuples: the checkpoint loads with weights_only. With
    several ranks a collective: every rank calls it."""
    import torch

    mine = {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if device_type == "cuda" else None}
    if world_size == 1:
        return [mine]
    import torch.distributed as dist

    every = [None] * world_size
    dist.all_gather_object(every, mine)
    return every


def restore_random_states(states: list[dict] | None, rank: int) -> bool:
    """Set this rank's generators as `random_states` saved them; False when the checkpoint holds none (one
    written before they were kept)."""
    import torch

    if not states:
        return False
    mine = states[rank]
    torch.set_rng_state(mine["torch"])
    random.setstate(mine["python"])
    if mine["cuda"] is not None:  # every device's, as far as this machine has them
        torch.cuda.set_rng_state_all(mine["cuda"][:torch.cuda.device_count()])
    return True
