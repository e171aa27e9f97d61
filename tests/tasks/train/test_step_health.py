"""The loop's step bookkeeping without host syncs: a skipped step changes no weight and gives its place in the
schedule back, fp16's calibrated loss scale survives overflows and restarts, an fp32 fallback survives a restart,
and the loop reads nothing back from the device per step."""

from __future__ import annotations

import pytest

from support.corpora import digit_pairs
from support.loops import poison, tiny_loop, train_to_end
from support.reads import count_reads
from tasks.train import batching, feed
from tasks.train import automatic
from tasks.train import loop as trainloop
from tasks.train.precision import Precision


def test_skipped_steps_change_no_weight_and_give_their_place_in_the_schedule_back(tiny_model, tmp_path,
                                                                                     monkeypatch):
    import torch

    run, model = tiny_loop(tiny_model, tmp_path)
    planned = run.total_steps
    assert planned > 20
    rates = []
    real_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        rates.append((self.param_groups[0]["lr"], float(getattr(self, "found_inf", 0))))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    lines, real_log = [], trainloop._Training._log_progress

    def recording_log(self):
        lines.append(self.running_steps)
        return real_log(self)

    monkeypatch.setattr(trainloop._Training, "_log_progress", recording_log)
    calls = poison(monkeypatch, {3, 4, 9})
    report = train_to_end(run)

    # Every planned update happened: the three spoiled batches were made up for with more batches.
    assert report["steps"] == planned
    assert calls["n"] == planned + 3
    # The progress line's mean loss counts each applied step once (one line here: the last step's).
    assert lines == [planned]
    applied = [lr for lr, skipped in rates if not skipped]
    assert len(applied) == planned and sum(skipped for _, skipped in rates) == 3
    # The optimizer counted only the updates it applied, and no weight or moment went NaN.
    state = run.optimizer.state[next(iter(run.optimizer.state))]
    assert int(state["step"]) == planned
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # The schedule ends where it was planned: the last applied update is the decay's last step.
    assert applied[-1] == pytest.approx(run.settings.learning_rate * run._lr_factor(planned - 1))


def test_a_run_of_failing_steps_in_bf16_falls_back_to_fp32_and_a_restart_stays_there(tiny_model, tmp_path,
                                                                                      monkeypatch):
    run, _ = tiny_loop(tiny_model, tmp_path, precision="bf16", checkpoint_every_steps=30)
    poison(monkeypatch, set(range(2, 14)))  # 12 in a row: more than MAX_CONSECUTIVE_OVERFLOWS
    report = train_to_end(run)
    assert report["precision"] == "fp32"
    assert report["steps"] == run.total_steps

    import torch

    state = torch.load(run.checkpoints.latest() / trainloop.STATE, weights_only=False)
    assert state["precision"] == "fp32"
    again, _ = tiny_loop(tiny_model, tmp_path, precision="bf16", checkpoint_every_steps=30, num_train_epochs=2)
    again.resume()
    assert again.precision.name == "fp32" and not again.scaler.is_enabled()


def test_fp16_keeps_its_calibrated_loss_scale_through_overflows_and_restarts(tiny_model, tmp_path, monkeypatch):
    """fp16 is simulated on CPU (autocast supports it there). A scale far too large overflows the first steps;
    each halves it. A new GradScaler per overflow would start again at 65536 and never calibrate."""
    import torch

    run, _ = tiny_loop(tiny_model, tmp_path, checkpoint_every_steps=20)
    run.precision = Precision("fp16", "simulated")
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)
    report = train_to_end(run)
    scale = run.scaler.get_scale()
    assert scale < 2.0 ** 40 and scale != 2.0 ** 16  # lowered from where it started, not reset
    assert report["precision"] == "fp16" and report["steps"] == run.total_steps

    saved = torch.load(run.checkpoints.latest() / trainloop.STATE, weights_only=False)
    assert saved["precision"] == "fp16" and saved["scaler"]["scale"] < 2.0 ** 40
    again, _ = tiny_loop(tiny_model, tmp_path, num_train_epochs=2)
    again.precision = Precision("fp16", "simulated")
    again.scaler = torch.amp.GradScaler("cpu")
    again.resume()
    assert again.scaler.get_scale() == saved["scaler"]["scale"]


def test_the_loop_reads_nothing_back_from_the_device_per_step(tiny_model, tmp_path, monkeypatch):
    """On a GPU each read of a tensor's value (item, bool, tolist, float, int) waits for every queued kernel.
    The loop may read once every SETTLE_EVERY_STEPS steps, and once for the validation at the end; every other
    read, from any code (transformers' mask helpers included), is counted here on CPU."""
    run, _ = tiny_loop(tiny_model, tmp_path, num_train_epochs=3)
    reads = count_reads(monkeypatch)
    report = train_to_end(run)
    steps = report["steps"]
    assert steps >= 5 * trainloop.SETTLE_EVERY_STEPS
    assert sum(reads.values()) <= steps // trainloop.SETTLE_EVERY_STEPS + 2, reads


def test_prefetch_hands_over_every_batch_in_order_and_stops_when_left_early(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    pairs = digit_pairs(100, seed=4)
    data = batching.encode(tokenizer, [s for s, _ in pairs], [t for _, t in pairs], 32, 32)
    batches = batching.make_batches(data, 128, 512, seed=0, epoch=0, multiple=1)
    with feed.Prefetch(data, batches, micro_tokens=64, pad_id=0, start_id=0, multiple=1, pin=False) as prefetch:
        seen = list(prefetch)
    assert [b for b, _ in seen] == batches
    for batch, pieces in seen:
        assert sum(p.target_tokens for p in pieces) == sum(len(data.targets[i]) for i in batch)
    with feed.Prefetch(data, batches, micro_tokens=0, pad_id=0, start_id=0, multiple=1, pin=False) as prefetch:
        first = next(iter(prefetch))
    assert first[0] == batches[0] and not prefetch._thread.is_alive()

    broken = feed.Prefetch(data, [[10**6]], micro_tokens=0, pad_id=0, start_id=0, multiple=1, pin=False)
    with pytest.raises(IndexError), broken:
        list(broken)


@pytest.mark.parametrize("tokens, world_size, expected", [
    (512, 1, 1e-4),  # the CPU's automatic batch: the rate measured good for fine-tuning there
    (2048, 1, 2e-4),  # four times the tokens, twice the rate
    (12288, 1, 1e-4 * 24 ** 0.5),  # a GPU's automatic batch: 4.9e-4
    (4096, 4, 5e-4),  # four GPUs make one 16,384-token step: capped
])
def test_the_automatic_learning_rate_follows_the_tokens_of_a_step(tiny_model, tmp_path, tokens, world_size,
                                                                   expected):
    assert automatic.auto_learning_rate(tokens * world_size) == pytest.approx(expected)
    if world_size == 1:  # what a run with learning_rate 0 (the run config's empty) trains with and reports
        run, _ = tiny_loop(tiny_model, tmp_path, learning_rate=0, max_tokens_per_batch=tokens, max_steps=2)
        report = train_to_end(run)
        assert report["learning_rate"] == pytest.approx(expected)
        assert max(g["lr"] for g in run.optimizer.param_groups) <= expected


@pytest.mark.parametrize("peak, share", [
    (2e-5, 0.05),  # the seed recipe's rate: the usual 5 %
    (1e-4, 0.05),  # the CPU's automatic rate: unchanged
    (2e-4, 0.13),
    # A GPU's automatic 4.9e-4: 0.36, where 5 % left a model trained from scratch blind to its source.
    (1e-4 * 24 ** 0.5, 0.05 + 0.08 * (24 ** 0.5 - 1)),
    (1e-3, 0.4),  # capped
])
def test_the_automatic_warmup_follows_the_peak_rate(tiny_model, tmp_path, peak, share):
    assert automatic.auto_warmup(peak) == pytest.approx(share)
    run, _ = tiny_loop(tiny_model, tmp_path, learning_rate=peak, num_train_epochs=3, max_steps=40)  # warmup: auto
    assert run.total_steps == 40 and run.warmup == int(share * 40)
    assert [run._lr_factor(step) for step in range(run.warmup)] == pytest.approx(
        [(step + 1) / run.warmup for step in range(run.warmup)])
    assert train_to_end(run)["warmup_steps"] == run.warmup  # what the training report (and the model card) say


def test_an_explicit_warmup_wins_over_the_automatic_one(tiny_model, tmp_path):
    run, _ = tiny_loop(tiny_model, tmp_path, learning_rate=5e-4, warmup_steps=0.05, num_train_epochs=3, max_steps=40)
    assert run.warmup == 2
    run, _ = tiny_loop(tiny_model, tmp_path, learning_rate=5e-4, warmup_steps=3, num_train_epochs=3, max_steps=40)
    assert run.warmup == 3


def test_a_set_learning_rate_is_used_as_it_is(tiny_model, tmp_path):
    run, _ = tiny_loop(tiny_model, tmp_path, learning_rate=3e-3, max_tokens_per_batch=12288, max_steps=2)
    assert train_to_end(run)["learning_rate"] == 3e-3


def test_a_restart_goes_on_with_the_schedule_a_time_budget_fitted(tiny_model, tmp_path):
    """A budget shortens the schedule (and its warmup) in memory; a killed run's retry must not go back to the
    full plan, or its learning rate jumps back up the warmup until the budget is re-estimated."""
    run, _ = tiny_loop(tiny_model, tmp_path, learning_rate=1e-3, warmup_steps=0.4, num_train_epochs=3)
    full = run.total_steps
    run.progress.step, run.total_steps, run.warmup, run.budget_ends_schedule = 12, 20, 8, True  # as a budget fits
    fitted_rate = run._learning_rate()
    run._checkpoint()
    again, _ = tiny_loop(tiny_model, tmp_path, learning_rate=1e-3, warmup_steps=0.4, num_train_epochs=3)
    assert again.total_steps == full
    again.resume()
    assert (again.total_steps, again.warmup, again.budget_ends_schedule) == (20, 8, True)
    assert again._learning_rate() == pytest.approx(fitted_rate)


def test_a_restart_on_other_hardware_keeps_the_first_attempts_automatic_batch_and_rates(tiny_model, tmp_path,
                                                                                        monkeypatch):
    """The automatic batch follows the device, the rate follows the batch: a retry landing on another kind of
    machine would otherwise read the saved position in the epoch against other batches."""
    monkeypatch.setitem(automatic.AUTO_TOKENS_PER_BATCH, "cpu", 128)  # the first attempt's machine
    run, _ = tiny_loop(tiny_model, tmp_path, learning_rate=0, max_tokens_per_batch=0, num_train_epochs=2)
    first = (run.settings.max_tokens_per_batch, run.settings.learning_rate, run.batches_per_epoch, run.warmup)
    run.progress.step, run.progress.batch_in_epoch = 5, 5
    run._checkpoint()
    monkeypatch.setitem(automatic.AUTO_TOKENS_PER_BATCH, "cpu", 512)  # the retry's
    again, _ = tiny_loop(tiny_model, tmp_path, learning_rate=0, max_tokens_per_batch=0, num_train_epochs=2)
    assert again.settings.max_tokens_per_batch == 512 and again.batches_per_epoch < first[2]
    again.resume()
    assert (again.settings.max_tokens_per_batch, again.settings.learning_rate, again.batches_per_epoch,
            again.warmup) == first
    assert first[1] == pytest.approx(automatic.auto_learning_rate(128))


def test_a_restart_with_another_number_of_workers_says_so(tiny_model, tmp_path, monkeypatch):
    run, _ = tiny_loop(tiny_model, tmp_path)
    monkeypatch.setattr(run, "world_size", 2)  # as if two data-parallel workers had written it
    monkeypatch.setattr(trainloop, "random_states", lambda device_type, world_size: [])  # no ranks to gather from
    run._checkpoint()
    again, _ = tiny_loop(tiny_model, tmp_path)
    with pytest.raises(ValueError, match=r"written by 2 data-parallel worker\(s\) and this attempt has 1.*"
                                         r"Resume on 2 GPU\(s\), or remove the run's checkpoints/"):
        again.resume()


def test_when_the_budget_runs_out_the_last_validation_carries_the_real_step(tiny_model, tmp_path, monkeypatch):
    """Skipped steps are counted on the device and given back at the next look; the budget's final validation
    must look first, or it records a step the report never reached."""
    run, _ = tiny_loop(tiny_model, tmp_path, max_seconds=6.5, num_train_epochs=3)
    monkeypatch.setattr(trainloop.time, "monotonic", lambda: float(run.progress.step))  # a second a step
    poison(monkeypatch, {3, 4})
    report = train_to_end(run)
    assert report["stopped_by"] == "time budget"
    assert report["validations"][-1][0] == report["steps"] == report["best_step"] == 5


def test_cuda_graphs_asked_for_without_a_cuda_device_train_as_before(tiny_model, tmp_path, caplog):
    """A run config may ask for CUDA graphs (`cuda_graphs`) and land on a CPU worker: it trains as it would
    have, says why the graphs are not used, and the report shows none."""
    import logging

    import torch

    reports, weights = [], []
    for graphs in (False, True):
        torch.manual_seed(0)
        with caplog.at_level(logging.INFO, logger="tasks.train.graphs"):
            run, model = tiny_loop(tiny_model, tmp_path / str(graphs), cuda_graphs=graphs)
            reports.append(train_to_end(run))
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert reports[1]["cuda_graphs"] is None and reports[0]["cuda_graphs"] is None
    assert "cuda_graphs: not used on cpu" in caplog.text
    assert torch.equal(weights[0], weights[1])


def test_cuda_graphs_are_not_used_with_layerdrop(tiny_model, tmp_path, caplog):
    """LayerDrop draws on the host which layers a step skips: a recorded step would skip the same ones for ever."""
    import logging

    run, model = tiny_loop(tiny_model, tmp_path, cuda_graphs=True)
    model.config.encoder_layerdrop = 0.1
    with caplog.at_level(logging.INFO, logger="tasks.train.graphs"):
        run._optimizer()
    assert run.graphs is None and "not used with LayerDrop (0.1)" in caplog.text


def test_the_step_a_cuda_graph_records_trains_as_the_ordinary_step(tiny_model, tmp_path):
    """What tasks/train/graphs.py records and replays: the loop's device work for a step, run on input tensors
    kept per batch shape (the batch copied in, every position scored, padding weighing nothing) and with the
    learning rate as a tensor filled before each step. Run as such on CPU, it trains as the ordinary steps do."""
    import torch

    runs = []
    for recorded in (False, True):
        torch.manual_seed(0)
        run, model = tiny_loop(tiny_model, tmp_path / str(recorded), max_tokens_per_batch=256, precision="bf16")
        for module in model.modules():  # no dropout: both runs see the same network
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        run.log_plan()
        learning_rate, kept, losses = torch.zeros(()), {}, []
        for batch in run._batches(0)[:10]:
            (piece,) = feed.prepare(run.train_data, batch, 0, run.pad_id, run.decoder_start_id, run.multiple)
            if recorded:
                tensors = {name: value for name, value in piece.tensors.items() if name != "target_rows"}
                inputs = kept.setdefault(tuple((name, tuple(v.shape)) for name, v in tensors.items()),
                                         {name: torch.empty_like(value) for name, value in tensors.items()})
                for name, value in tensors.items():
                    inputs[name].copy_(value)
                learning_rate.fill_(run._learning_rate())
                loss = run._update([feed.Piece(inputs, 1)], learning_rate, False)[0]
            else:
                loss = run._update([piece], run._learning_rate())[0]
            run.progress.step += 1
            losses.append(loss.item())
        assert not recorded or 1 < len(kept) < 10  # some shapes came back
        runs.append((losses, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (ordinary_losses, ordinary), (recorded_losses, recorded) = runs
    assert recorded_losses == pytest.approx(ordinary_losses, rel=1e-4)
    assert (recorded - ordinary).norm() < 1e-4 * ordinary.norm()


def test_a_step_given_back_is_not_validated_logged_or_checkpointed_again(tiny_model, tmp_path, monkeypatch):
    """Steps 15 and 16 are skipped and the look at step 16 gives their places back: the count is 14 again, a
    step already validated, logged and checkpointed. Validating the same weights again counted as an evaluation
    without improvement (patience 1 stopped training there), and the checkpoint folder was written again while
    its upload could be running."""
    run, _ = tiny_loop(tiny_model, tmp_path, max_steps=42, num_train_epochs=2, eval_every_steps=7,
                       checkpoint_every_steps=7, log_every_steps=7, early_stopping_patience=1, learning_rate=3e-3)
    saved, logged, real_log = [], [], trainloop._Training._log_progress
    monkeypatch.setattr(run.checkpoints, "save", lambda state, step: saved.append(step))
    monkeypatch.setattr(trainloop._Training, "_log_progress", lambda self: logged.append(self.progress.step)
                        or real_log(self))
    poison(monkeypatch, {15, 16})
    report = train_to_end(run)
    validated = [step for step, _ in report["validations"]]
    assert report["steps"] == run.total_steps == 42
    assert validated == sorted(set(validated)) and validated[:3] == [7, 14, 21]
    assert saved == sorted(set(saved)) and saved[:3] == [7, 14, 21]
    assert logged == sorted(set(logged)) and logged[:3] == [7, 14, 21]


def test_fp16_gradients_that_stay_non_finite_fall_back_to_fp32_and_then_fail(tiny_model, tmp_path, monkeypatch,
                                                                             caplog):
    """A finite loss with gradients that overflow at every loss scale (a backward-only NaN): fp16 took each one
    for calibration, halved its scale to 0 and trained on for ever. fp16 is simulated on CPU, as above."""
    import logging

    import torch

    run, _ = tiny_loop(tiny_model, tmp_path, max_steps=30, num_train_epochs=100)
    run.precision = Precision("fp16", "simulated")
    run.scaler = torch.amp.GradScaler("cpu")
    calls = poison(monkeypatch, range(5, 10**6), loss=False, give_up_after=500)
    with caplog.at_level(logging.WARNING, logger="tasks.train.loop"), pytest.raises(
            trainloop.NonFiniteTraining, match="25 batches in a row gave a non-finite gradient .* in fp32"):
        train_to_end(run)
    assert "falling back to fp32 after 25 skipped steps in a row in fp16" in caplog.text
    assert calls["n"] == 4 + trainloop.MAX_NONFINITE_IN_A_ROW * 2


def test_a_time_budget_ends_training_within_a_run_of_skipped_steps(tiny_model, tmp_path, monkeypatch):
    """After the look at step 16 the loop reads each step until one is applied; those skipped steps spend time
    too. Here the budget (20 s, a second a batch) runs out before 25 failures in a row would end training."""
    run, _ = tiny_loop(tiny_model, tmp_path, max_seconds=20, num_train_epochs=3)
    calls = poison(monkeypatch, range(3, 10**6))
    monkeypatch.setattr(trainloop.time, "monotonic", lambda: float(calls["n"]))
    report = train_to_end(run)
    assert report["stopped_by"] == "time budget" and calls["n"] == 20
    assert report["steps"] == report["best_step"] == 2 and report["validations"][-1][0] == 2


@pytest.mark.parametrize("epochs, completed", [
    (1, 1),  # training ends on the epoch's last batch: that epoch is complete
    (1.5, 1),
])
def test_the_report_counts_the_epochs_completed(tiny_model, tmp_path, epochs, completed):
    run, _ = tiny_loop(tiny_model, tmp_path, num_train_epochs=epochs)
    assert train_to_end(run)["epochs_completed"] == completed


def test_an_empty_validation_set_is_refused(tiny_model, tmp_path):
    """Its loss was 0.0, the best there could be, so the first validation's weights were kept as the best."""
    with pytest.raises(ValueError, match="the validation set is empty"):
        tiny_loop(tiny_model, tmp_path, validation=batching.Encoded([], []))
