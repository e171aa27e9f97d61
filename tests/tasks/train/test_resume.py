"""A killed run resumes as if it had not been killed: the same random draws, the same stop decision, and only
from a checkpoint written for its kind of device, loaded without unpickling arbitrary objects."""

from __future__ import annotations

import logging
import pickle

import pytest

from support.loops import tiny_loop, train_to_end
from tasks.train import loop as trainloop


class Killed(Exception):
    """The pod went away just after a checkpoint."""


def _kill_after_checkpoint(run, at_step: int) -> None:
    real = run._checkpoint

    def checkpoint_then_die():
        real()
        if run.progress.step >= at_step:
            raise Killed()

    run._checkpoint = checkpoint_then_die


def _rewrite_latest(run, **changes) -> None:
    """Change the latest checkpoint's state in place (None removes a key), as an older or foreign writer had it."""
    import torch

    path = run.checkpoints.latest() / trainloop.STATE
    state = torch.load(path, weights_only=True)
    state.update(changes)
    torch.save({key: value for key, value in state.items() if value is not None}, path)


def _killed_and_resumed(tiny_model, tmp_path, **settings):
    """(run, model) of a retry, not started yet, after a first attempt killed after its checkpoint at step 10."""
    first, _ = tiny_loop(tiny_model, tmp_path, **settings)
    _kill_after_checkpoint(first, 10)
    with pytest.raises(Killed):
        train_to_end(first)
    again, model = tiny_loop(tiny_model, tmp_path, **settings)
    return again, model


RESUMED = dict(dropout=0.1, max_steps=20, eval_every_steps=5, checkpoint_every_steps=10)


def test_a_resumed_run_draws_the_dropout_an_uninterrupted_one_draws(tiny_model, tmp_path):
    import torch

    whole, whole_model = tiny_loop(tiny_model, tmp_path / "whole", **RESUMED)
    expected = train_to_end(whole)
    again, model = _killed_and_resumed(tiny_model, tmp_path / "killed", **RESUMED)
    report = train_to_end(again)
    assert report["resumed_from_step"] == 10
    assert report["validations"] == expected["validations"]
    resumed_weights = model.state_dict()
    assert all(torch.equal(value, resumed_weights[name]) for name, value in whole_model.state_dict().items())


def test_a_checkpoint_without_random_states_still_resumes_and_says_so(tiny_model, tmp_path, caplog):
    again, _ = _killed_and_resumed(tiny_model, tmp_path, **RESUMED)
    _rewrite_latest(again, random=None)  # written before the states were kept
    with caplog.at_level(logging.INFO, logger="tasks.train.loop"):
        report = train_to_end(again)
    assert report["resumed_from_step"] == 10 and report["steps"] == 20
    assert "holds no random generator states" in caplog.text


def test_a_run_that_stopped_before_it_was_killed_stays_stopped(tiny_model, tmp_path, monkeypatch):
    """Early stopping decided at step 15, the checkpoint of step 15 was written, then the pod went: the retry
    used to train on from there."""
    losses = iter([3.0, 2.0, 2.5] + [3.0] * 100)
    monkeypatch.setattr(trainloop, "evaluate_loss", lambda *args, **kwargs: next(losses))
    settings = dict(num_train_epochs=2, eval_every_steps=5, checkpoint_every_steps=5, early_stopping_patience=1)
    first, _ = tiny_loop(tiny_model, tmp_path, **settings)
    _kill_after_checkpoint(first, 15)
    with pytest.raises(Killed):
        train_to_end(first)
    assert first.stopped
    report = train_to_end(tiny_loop(tiny_model, tmp_path, **settings)[0])
    assert (report["steps"], report["stopped_by"], report["best_step"]) == (15, "early stopping", 10)
    assert [step for step, _ in report["validations"]] == [5, 10, 15]


class _Anything:
    """Any class at all: unpickling a checkpoint must not build objects, which can run code."""


def test_a_checkpoint_is_loaded_without_unpickling_objects(tiny_model, tmp_path):
    run, _ = tiny_loop(tiny_model, tmp_path)
    run._checkpoint()
    _rewrite_latest(run, progress=_Anything())
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        tiny_loop(tiny_model, tmp_path)[0].resume()


def test_a_checkpoint_written_on_another_kind_of_device_is_refused(tiny_model, tmp_path):
    """A GPU pads batches to multiples of 8 and trains in another precision: the saved position in the epoch
    would point at other batches on CPU, as it would with another number of workers."""
    run, _ = tiny_loop(tiny_model, tmp_path)
    run._checkpoint()
    _rewrite_latest(run, device_type="cuda")
    with pytest.raises(ValueError, match=r"written on cuda and this attempt runs on cpu.*Resume on cuda, or "
                                         r"remove the run's checkpoints/"):
        tiny_loop(tiny_model, tmp_path)[0].resume()
