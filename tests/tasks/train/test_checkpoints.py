"""Checkpoints: saved locally on the training thread, mirrored on a worker thread, so an upload never holds
training (or, with several GPUs, the other ranks) up; training ends only when its last checkpoint is mirrored."""

import threading
from pathlib import Path

import pytest

from tasks.train.checkpoints import STATE, CheckpointDir


class SlowStore:
    """A mirror that uploads only when the test lets it, and remembers what it uploaded."""

    def __init__(self):
        self.uploading, self.release, self.mirrored = threading.Event(), threading.Event(), []

    def __call__(self, checkpoint: Path) -> None:
        assert (checkpoint / STATE).exists()  # complete, and not pruned while it is uploaded
        self.uploading.set()
        assert self.release.wait(30)
        self.mirrored.append((checkpoint.name, (checkpoint / STATE).read_bytes()))


def state(step: int) -> dict:
    return {"progress": {"step": step}}


def test_saving_does_not_wait_for_the_upload_and_a_slow_store_builds_no_backlog(tmp_path):
    store = SlowStore()
    checkpoints = CheckpointDir(tmp_path, store, keep=1)
    checkpoints.save(state(10), 10)
    assert store.uploading.wait(30)
    # step 10 is still uploading: these return at once; 20 is superseded by 30 before its turn comes
    checkpoints.save(state(20), 20)
    checkpoints.save(state(30), 30)
    assert store.mirrored == [] and checkpoints.latest().name == "step-00000030"
    assert (tmp_path / "step-00000010" / STATE).exists() and not (tmp_path / "step-00000020").exists()
    store.release.set()
    checkpoints.wait()
    assert [name for name, _ in store.mirrored] == ["step-00000010", "step-00000030"]


def test_leaving_the_block_waits_for_the_last_upload(tmp_path):
    store = SlowStore()
    threading.Timer(0.5, store.release.set).start()
    with CheckpointDir(tmp_path, store) as checkpoints:
        checkpoints.save(state(10), 10)
    assert [name for name, _ in store.mirrored] == ["step-00000010"]


def failing_store(checkpoint: Path) -> None:
    raise ConnectionError("S3 said 503 five times")


def test_a_failed_upload_fails_the_next_save_and_the_end_of_training(tmp_path):
    checkpoints = CheckpointDir(tmp_path, failing_store)
    checkpoints.save(state(10), 10)
    with pytest.raises(RuntimeError, match="mirroring checkpoint step-00000010 to the run directory failed: "
                                           "S3 said 503 five times"):
        checkpoints.wait()
    with pytest.raises(RuntimeError, match="step-00000010"):
        checkpoints.save(state(20), 20)


def test_a_training_error_is_not_hidden_by_an_upload_error(tmp_path):
    with pytest.raises(ValueError, match="non-finite loss"):
        with CheckpointDir(tmp_path, failing_store) as checkpoints:
            checkpoints.save(state(10), 10)
            raise ValueError("non-finite loss")
