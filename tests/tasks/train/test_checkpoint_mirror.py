"""The train step as a retried task uses it: what it leaves in the run directory and what a retry resumes from."""

from __future__ import annotations

from support.corpora import digit_pairs
from support.runs import make_run, write_splits
from tasks import layout
from tasks.io import storage
from tasks.train import step as train


def test_checkpoints_mirrored_to_s3_keep_only_the_newest_two(tmp_path, tiny_model, s3):
    """Each checkpoint holds the weights, the best weights and Adam's two moments (some 5× the model: 1.4 GB for
    opus-mt). Mirrored every checkpoint_every_steps and never removed, a weekly run left every one of them in S3;
    the retry only ever needs the latest."""
    s3.create_bucket(Bucket="runs")
    cfg = make_run("s3://runs/artifacts", base_model=str(tiny_model), max_steps=50, num_train_epochs=100,
                   checkpoint_every_steps=5, max_tokens_per_batch=512, early_stopping_patience=0)
    pairs = digit_pairs(300, seed=6)
    write_splits(cfg, tmp_path, train=pairs[:250], validation=pairs[250:])
    assert train.run(cfg)["steps"] == 50
    mirrored = storage.list_folders(cfg.uri(layout.CHECKPOINTS))
    assert storage.read_text(cfg.uri(layout.CHECKPOINTS, "LATEST")) == "step-00000050"
    assert "step-00000050" in mirrored and len(mirrored) <= 2, mirrored


def test_a_store_that_refuses_deletes_still_trains_and_says_so(tmp_path, s3, monkeypatch, caplog):
    """Removing superseded checkpoints is tidying up: a bucket policy without s3:DeleteObject must not fail the
    training that mirrors to it."""
    import logging

    s3.create_bucket(Bucket="runs")
    cfg = make_run("s3://runs/artifacts")

    def refuse(uri):
        raise PermissionError(f"AccessDenied: s3:DeleteObject on {uri}")

    monkeypatch.setattr(storage, "delete", refuse)
    with caplog.at_level(logging.WARNING, logger="tasks.train.step"):
        with train._checkpoints(cfg, tmp_path / "checkpoints", remote=True) as folder:
            for step in (5, 10, 15):
                folder.save({"step": step}, step)
                folder.wait()
    assert "could not remove the superseded checkpoint step-00000005" in caplog.text
    assert storage.read_text(cfg.uri(layout.CHECKPOINTS, "LATEST")) == "step-00000015"


def test_pruning_never_removes_the_checkpoint_latest_names(s3):
    """A retry overlapping its attempt mirrors into the same folder: the attempt ahead uploads step-25 and writes
    LATEST, the one behind writes LATEST = step-15 right after, and the one ahead then prunes. Removing step-15
    left LATEST naming nothing, and the next retry started over from step 0."""
    s3.create_bucket(Bucket="runs")
    root = "s3://runs/artifacts/checkpoints"
    for step in (15, 20, 25):
        storage.write_text(storage.join(root, f"step-{step:08d}", "state.pt"), "weights")
    storage.write_text(storage.join(root, "LATEST"), "step-00000015")  # the attempt behind, after step-25's LATEST
    train._prune_mirrored(root, "step-00000025", keep=2)
    assert storage.exists(storage.join(root, "step-00000015", "state.pt"))
    assert storage.list_folders(root) == ["step-00000015", "step-00000020", "step-00000025"]
