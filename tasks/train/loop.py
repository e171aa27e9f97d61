"""The project's training loop: token-budget batches, automatic mixed precision, checkpoints that resume.

It replaces Seq2SeqTrainer on the hot path because fine-tuning cost is dominated by what Trainer leaves
alone (padding, small batches, fp32) — see bench/train_throughput.py for the comparison in one run. What
it keeps from the seed recipe: AdamW with weight decay, linear warmup then decay, cross-entropy on the
target tokens. What it adds: the best model by validation loss (not the last), early stopping, progress
with tokens/s and ETA, and resumption from the last checkpoint after a crash or a killed pod.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace

from tasks.cost import duration
from tasks.train import automatic, batching, feed, tokenloss
from tasks.train.checkpoints import STATE, CheckpointDir, random_states, restore_random_states
from tasks.train.distributed import sum_over_ranks
from tasks.train.graphs import step_graphs
from tasks.train.passes import evaluate_loss, forward_backward
from tasks.train.precision import MAX_CONSECUTIVE_OVERFLOWS, Precision, choose_precision, shape_agnostic_attention

log = logging.getLogger(__name__)

# Batches in a row whose loss or gradient is not finite before training gives up (fp16 falls back to fp32 after
# precision.MAX_CONSECUTIVE_OVERFLOWS of them first, and the count starts again there). Also the most steps in a
# row fp16 may skip for its loss scale, whatever the loss: 25 halvings take the default scale of 65,536 to 0.002,
# which no calibration needs, so fp16 falls back to fp32 there.
MAX_NONFINITE_IN_A_ROW = 25
# Steps between looks at what the device counted (skipped steps, the loss): each look waits for the device.
SETTLE_EVERY_STEPS = 16
# Settings whose automatic value (this marker) follows the device and the number of workers. The first attempt
# chooses them; a resumed one keeps its choice, or the saved position would be read against other batches.
CHOSEN_ONCE = {"max_tokens_per_batch": 0, "learning_rate": 0, "warmup_steps": None}


class NonFiniteTraining(RuntimeError):
    """The loss or the gradients stay NaN or infinite: training cannot recover by skipping batches."""


@dataclass(frozen=True)
class LoopSettings:
    learning_rate: float  # 0: automatic, following the batch (tasks/train/automatic.py)
    weight_decay: float
    num_train_epochs: float
    max_tokens_per_batch: int  # 0: automatic, following the device
    max_sentences_per_batch: int = 512
    warmup_steps: float | None = None  # None: automatic, following the peak rate; < 1: a share
    adam_beta2: float = 0.98  # Marian's and fairseq's choice for transformers; Trainer's 0.999 adapts slower
    max_steps: int = 0  # > 0 caps training whatever the epochs say
    max_seconds: float = 0  # > 0: a time budget over all attempts; training then stops and keeps its best
    eval_every_steps: int = 0  # 0: once per epoch
    early_stopping_patience: int = 3  # evaluations without improvement before stopping; 0: never stop early
    target_loss: float = 0.0  # > 0: stop once the validation loss is this low (time-to-quality benchmarks)
    checkpoint_every_steps: int = 200
    precision: str = "auto"
    cuda_graphs: bool = False  # replay steps as CUDA graphs, one per batch shape (tasks/train/graphs.py)
    seed: int = 42
    log_every_steps: int = 20


@dataclass
class Progress:
    """Everything needed to continue exactly where a killed run stopped."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_loss: float = math.inf
    best_step: int = 0
    evals_without_improvement: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0  # spent training, over every attempt (a resumed run continues the budget)
    validations: list = field(default_factory=list)  # [step, validation loss] at each validation, in order
    stopped_by: str | None = None  # early stopping, target loss or time budget: a resumed run stops there too



def train(model, train_data: batching.Encoded, val_data: batching.Encoded, settings: LoopSettings, *,
          pad_id: int, decoder_start_id: int, checkpoints: CheckpointDir, device=None,
          rank: int = 0, world_size: int = 1) -> dict:
    """Train `model` in place and leave it holding the best weights by validation loss."""
    run = _Training(model, train_data, val_data, settings, pad_id=pad_id, decoder_start_id=decoder_start_id,
                    checkpoints=checkpoints, device=device, rank=rank, world_size=world_size)
    run.resume()
    run.log_plan()
    while run.progress.step < run.total_steps and not run.stopped:
        run.one_epoch()
    return run.finish()


class _Training:
    """One training run's state, in the phases `train` goes through: set up, resume, epochs of steps (each
    maybe followed by a progress line, a validation and a checkpoint), and the best weights restored."""

    def __init__(self, model, train_data: batching.Encoded, val_data: batching.Encoded, settings: LoopSettings, *,
                 pad_id: int, decoder_start_id: int, checkpoints: CheckpointDir, device, rank: int, world_size: int):
        import torch

        if not len(val_data):
            raise ValueError("the validation set is empty: training needs validation pairs to choose the best "
                             "model and to stop early (look at the validation split and the data that made it)")
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.requested = settings
        settings = automatic.fill_in(settings, self.device.type, world_size)
        self.model, self.train_data, self.val_data, self.settings = model, train_data, val_data, settings
        self.pad_id, self.decoder_start_id, self.checkpoints = pad_id, decoder_start_id, checkpoints
        self.rank, self.world_size = rank, world_size
        self.precision = choose_precision(self.device, settings.precision)
        log.info("precision: %s (%s)", self.precision.name, self.precision.why)
        shape_agnostic_attention(self.device)
        torch.manual_seed(settings.seed)
        model.to(self.device).train()
        self.net = tokenloss.token_loss_module(model)
        if world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.multiple = batching.pad_multiple(self.device)
        self._schedule()
        self._optimizer()
        self.progress, self.best_state, self.resumed_from = Progress(), None, None
        self.stopped, self.stop_reason = False, None
        # On CPU a big batch runs as micro-batches with accumulated gradients: the same optimizer steps, but
        # activations (above all the vocabulary-sized logits) that stay in cache-friendly sizes.
        self.micro_tokens = automatic.CPU_MICRO_BATCH_TOKENS if self.device.type == "cpu" else 0

    def _batches(self, epoch: int) -> list[list[int]]:
        s = self.settings
        # Each data-parallel rank takes every world_size-th batch: a remainder would be left out of every epoch.
        return batching.for_ranks(batching.make_batches(self.train_data, s.max_tokens_per_batch,
                                                        s.max_sentences_per_batch, s.seed, epoch,
                                                        multiple=self.multiple), self.world_size)

    def _schedule(self) -> None:
        s = self.settings
        self.batches_per_epoch = len(self._batches(0)) // self.world_size
        if self.batches_per_epoch == 0:
            raise ValueError(f"{len(self.train_data)} training pairs make fewer batches than the "
                             f"{self.world_size} workers")
        self.total_steps = math.ceil(self.batches_per_epoch * s.num_train_epochs)
        if s.max_steps > 0:
            self.total_steps = min(self.total_steps, s.max_steps)
        self.eval_every = s.eval_every_steps or self.batches_per_epoch
        self.warmup = int(s.warmup_steps * self.total_steps) if s.warmup_steps < 1 else int(s.warmup_steps)
        self.planned_steps = self.total_steps  # what epochs and max_steps allow; a time budget may end sooner
        self.budget_ends_schedule = False  # the budget moved the last step earlier: reaching it spends the budget

    def _optimizer(self) -> None:
        import torch

        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:  # frozen weights (LoRA's base, freeze_*) need no optimizer state
                (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
        # fused: one kernel per step, on CPU too (4x faster than foreach there)
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.settings.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}],
                                           lr=self.settings.learning_rate, betas=(0.9, self.settings.adam_beta2),
                                           fused=True)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.needs_scaler)
        # What the device counts between looks (see _settle): skipped steps, the current run of failing steps
        # (a non-finite loss, or gradient outside fp16), the longest such run, the current run of skipped steps
        # (failing or fp16's overflows), and the applied steps' summed loss.
        self.health = torch.zeros(5, dtype=torch.float32, device=self.device)
        self.unsettled, self.careful, self.skips_in_a_row = 0, False, 0
        self.graphs = step_graphs(self._update, self.optimizer, self.model, self.device, self.world_size) \
            if self.settings.cuda_graphs else None

    def _lr_factor(self, step: int) -> float:
        """Linear warmup, then linear decay to zero at the last step (which a time budget may move earlier)."""
        total, warmup = self.total_steps, self.warmup
        return min((step + 1) / max(warmup, 1), max(0.0, (total - step) / max(total - warmup, 1)))

    def _learning_rate(self) -> float:
        """The rate of the next step: set from the applied steps, so a skipped step does not advance it."""
        return self.settings.learning_rate * self._lr_factor(self.progress.step)

    def resume(self) -> None:
        import torch

        self.resumed_from = self.checkpoints.latest()
        if self.resumed_from is None:
            return
        # weights_only: tensors and plain values, never arbitrary objects, from a file that may come from S3
        state = torch.load(self.resumed_from / STATE, map_location="cpu", weights_only=True)
        self._continue_the_plan(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = Progress(**state["progress"])
        self.best_state = state.get("best_model")
        if not restore_random_states(state.get("random"), self.rank):
            log.info("checkpoint %s holds no random generator states (written before they were kept): dropout "
                     "goes on from the seed, not as the interrupted run would have", self.resumed_from.name)
        # An fp16 run that fell back to fp32 stays there, and fp16's calibrated loss scale is kept.
        if state.get("precision", self.precision.name) != self.precision.name:
            self.precision = Precision(state["precision"], "as before the interruption")
            log.info("precision: %s (%s)", self.precision.name, self.precision.why)
            self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.needs_scaler)
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        log.info("resuming from %s at step %d (epoch %d, batch %d)", self.resumed_from.name, self.progress.step,
                 self.progress.epoch, self.progress.batch_in_epoch)
        if self.progress.stopped_by:
            log.info("training had stopped there (%s): keeping that decision", self.progress.stopped_by)
            self.stopped, self.stop_reason = True, self.progress.stopped_by

    def _continue_the_plan(self, state: dict) -> None:
        """The resumed run goes on with the first attempt's plan: its automatic batch and rates, and the schedule
        a time budget had fitted (so the learning rate goes on decaying where it was)."""
        written_on = state.get("device_type", self.device.type)
        if written_on != self.device.type:
            raise ValueError(
                f"checkpoint {self.resumed_from.name} was written on {written_on} and this attempt runs on "
                f"{self.device.type}: batches are padded and computed otherwise there, so its position in the epoch "
                f"would point at other batches. Resume on {written_on}, or remove the run's "
                f"{self.resumed_from.parent.name}/ to train from the start.")
        workers = state.get("world_size", self.world_size)
        if workers != self.world_size:
            raise ValueError(
                f"checkpoint {self.resumed_from.name} was written by {workers} data-parallel worker(s) and this "
                f"attempt has {self.world_size}: its position in the epoch would point at other batches. Resume on "
                f"{workers} GPU(s), or remove the run's {self.resumed_from.parent.name}/ to train from the start.")
        saved = state.get("settings") or {}
        kept = {name: saved[name] for name, auto in CHOSEN_ONCE.items() if getattr(self.requested, name) == auto
                and saved.get(name, auto) not in (auto, getattr(self.settings, name))}
        if kept:
            log.info("keeping the first attempt's automatic choices: %s",
                     ", ".join(f"{name} {value:g}" for name, value in kept.items()))
            self.settings = replace(self.settings, **kept)
            self._schedule()
        schedule = state.get("schedule")
        if schedule and schedule["planned_steps"] == self.planned_steps:
            self.total_steps, self.warmup = schedule["total_steps"], schedule["warmup"]
            self.budget_ends_schedule = schedule["budget_ends_schedule"]

    def log_plan(self) -> None:
        log.info("training: %d pairs, %d batches per epoch (≤ %d tokens each%s), %d steps, warmup %d, peak "
                 "learning rate %.3g, on %s", len(self.train_data), self.batches_per_epoch,
                 self.settings.max_tokens_per_batch,
                 f", in micro-batches of ≤ {self.micro_tokens}" if self.micro_tokens else "", self.total_steps,
                 self.warmup, self.settings.learning_rate, self.device)
        if self.settings.max_seconds:
            log.info("time budget: %s, %s of it spent before", duration(self.settings.max_seconds),
                     duration(self.progress.seconds))
        self.started = self.window_start = time.monotonic()
        self.seconds_before, self.handled_step = self.progress.seconds, self.progress.step
        self.window_tokens, self.steps_at_start, self.pace_mark = 0, self.progress.step, None
        self.running_loss, self.running_steps = 0.0, 0

    def one_epoch(self) -> None:
        """The rest of the current epoch's batches, or fewer when training ends within it."""
        progress = self.progress
        mine = self._batches(progress.epoch)[self.rank::self.world_size][:self.batches_per_epoch]
        with feed.Prefetch(self.train_data, mine[progress.batch_in_epoch:], micro_tokens=self.micro_tokens,
                           pad_id=self.pad_id, start_id=self.decoder_start_id, multiple=self.multiple,
                           pin=self.device.type == "cuda") as batches:
            for batch, pieces in batches:
                if self._step(pieces):
                    self._after_step(batch)
                else:  # skipped while careful: no step, but the time still counts
                    progress.batch_in_epoch += 1
                    self._keep_the_budget(validated=False)
                if self.stopped or progress.step >= self.total_steps:
                    break
        if progress.batch_in_epoch >= len(mine):  # also when training ends on the epoch's last batch
            progress.epoch += 1
            progress.batch_in_epoch = 0

    def _step(self, pieces: list[feed.Piece]) -> bool:
        """One optimizer step; False (and no update) when its loss or gradient is known not to be finite.

        Nothing here waits for the device: the finiteness check runs on it and tells the fused optimizer to
        skip the update, and the counts are read every few steps (_settle). After a skipped step the loop is
        careful: it reads each step's outcome until one is finite again.
        """
        import torch

        if self.graphs is not None:
            loss, norm, loss_ok, skipped, failing = self.graphs.step(pieces, self._learning_rate(), self.precision)
        else:
            loss, norm, loss_ok, skipped, failing = self._update(pieces, self._learning_rate())
        self.scaler.update()  # fp16: the scale halves after an overflow and grows after a run of good steps
        if self.careful:
            if not bool(skipped):
                self.careful, self.precision.overflows, self.skips_in_a_row = False, 0, 0
                self.running_loss += loss.item()
                self.running_steps += 1
                return True
            self._skipped_in_a_row(self.skips_in_a_row + 1)
            if bool(failing):
                return self._not_finite(f"loss {loss.item()}" if not bool(loss_ok) else f"gradient norm {float(norm)}")
            return False
        skips, streak, longest, run, loss_sum = self.health.unbind()
        streak.mul_(failing).add_(failing)  # (streak + 1) × failing: 0 again after a step that did not fail
        torch.maximum(longest, streak, out=longest)
        run.mul_(skipped).add_(skipped)
        skips.add_(skipped)
        loss_sum.add_(torch.where(skipped > 0, 0.0, loss))
        self.unsettled += 1
        return True

    def _update(self, pieces: list[feed.Piece], learning_rate, cache: bool = True):
        """The step's device work, reading nothing back (what a CUDA graph records): gradients, clipping, the
        finiteness check, and the update, which the fused optimizer skips on the device when it is not finite.
        Returns (loss, gradient norm, loss finite, skipped, failing) as device tensors."""
        import torch

        loss = forward_backward(self.net, pieces, self.device, self.precision, self.scaler, self.world_size, cache)
        self.scaler.unscale_(self.optimizer)  # records fp16's overflow for scaler.update; a no-op otherwise
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        # failing: the loss, or outside fp16 the gradient, is not finite; fp16's overflowing gradients are the
        # loss scale calibrating itself, skipped without counting against the precision.
        loss_ok = torch.isfinite(loss)
        failing = (~loss_ok if self.precision.needs_scaler else ~(loss_ok & torch.isfinite(norm))).float()
        skipped = (~(loss_ok & torch.isfinite(norm))).float()
        if self.world_size > 1:
            # Data-parallel ranks skip a batch together or not at all: one rank skipping its step while the
            # others go on would leave their weights apart.
            import torch.distributed as dist

            both = torch.stack([skipped, failing])
            dist.all_reduce(both, op=dist.ReduceOp.MAX)
            skipped, failing = both.unbind()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        self.optimizer.found_inf = skipped  # the fused kernel leaves weights and moments alone when it is 1
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf
        self.optimizer.zero_grad(set_to_none=True)
        return loss, norm, loss_ok, skipped, failing

    def _settle(self) -> None:
        """Read what the device counted since the last look (one sync). Skipped steps give their place in the
        step count and the schedule back; a run of failing ones in fp16 or bf16 falls back to fp32, and while
        the last steps are still skipped the loop turns careful."""
        if not self.unsettled:
            return
        counted = self.health.tolist()
        skipped, streak, longest, run, loss_sum = *(int(v) for v in counted[:4]), counted[4]
        self.health.zero_()
        steps, self.unsettled = self.unsettled, 0
        self.running_loss += loss_sum
        self.running_steps += steps - skipped
        if not skipped:
            return
        self.progress.step -= skipped
        log.log(logging.WARNING if longest else logging.INFO,
                "%d of the last %d steps were skipped in %s: %s", skipped, steps, self.precision.name,
                f"a non-finite loss or gradient, at most {longest} in a row" if longest else
                "gradients overflowed fp16's loss scale, which was lowered")
        self.precision.overflows = streak
        if longest >= MAX_CONSECUTIVE_OVERFLOWS and self.precision.name != "fp32":
            self._fall_back(f"{longest} non-finite steps in a row")
        elif run:  # still skipping (failing steps are skipped too): count on, step by step, from this run
            self.careful = True
            self._skipped_in_a_row(run)

    def _skipped_in_a_row(self, count: int) -> None:
        """fp16 skips a step whose gradient overflows and halves its loss scale. MAX_NONFINITE_IN_A_ROW such
        steps are no calibration: the gradient is not finite at any scale, so fp32 takes over (and fails training
        if it goes on). A run within one look's steps is shorter than that (SETTLE_EVERY_STEPS is less); the look
        that finds the last steps skipped passes its run on to the careful steps that follow."""
        self.skips_in_a_row = count
        if count >= MAX_NONFINITE_IN_A_ROW and self.precision.needs_scaler:
            self._fall_back(f"{count} skipped steps in a row")

    def _not_finite(self, what: str) -> bool:
        """Skip the batch; fail when training keeps producing nothing finite, rather than loop forever."""
        name = self.precision.name
        self.precision = self.precision.after_overflow(what)
        if self.precision.name != name:
            self._fall_back(what)
        if self.precision.overflows >= MAX_NONFINITE_IN_A_ROW:
            raise NonFiniteTraining(
                f"training diverged: {self.precision.overflows} batches in a row gave a non-finite {what.split()[0]}"
                f" (last: {what}) in {self.precision.name}, at step {self.progress.step}, epoch "
                f"{self.progress.epoch}; lower learning_rate ({self.settings.learning_rate:g}) or look for broken "
                "data. No model was saved.")
        return False

    def _fall_back(self, why: str) -> None:
        """Go on in fp32 (after fp16 or bf16 kept overflowing): no loss scaling there."""
        import torch

        if self.precision.name != "fp32":
            log.warning("falling back to fp32 after %s in %s", why, self.precision.name)
            self.precision = Precision("fp32", f"fallback after {why} in {self.precision.name}")
        if self.graphs is not None:  # recorded in the precision left behind (_not_finite may have switched already)
            self.graphs.forget()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=False)
        self.careful, self.skips_in_a_row = True, 0

    def _after_step(self, batch: list[int]) -> None:
        progress, settings = self.progress, self.settings
        tokens = self.train_data.tokens(batch) * self.world_size
        progress.step += 1
        progress.batch_in_epoch += 1
        progress.tokens_seen += tokens
        self.window_tokens += tokens

        def due(every: int) -> bool:
            return progress.step % every == 0

        if due(SETTLE_EVERY_STEPS) or due(settings.log_every_steps) or due(self.eval_every) or \
                due(settings.checkpoint_every_steps) or progress.step >= self.total_steps:
            self._settle()  # the step count may go back: skipped steps are done again
        if progress.step <= self.handled_step:  # back on a step already logged, validated or checkpointed
            self._keep_the_budget(validated=False)
            return
        self.handled_step = progress.step
        last = progress.step == self.total_steps
        if due(settings.log_every_steps) or last:
            self._log_progress()
        validated = due(self.eval_every) or last
        if validated:
            self._validate()
        self._keep_the_budget(validated=validated)
        if due(settings.checkpoint_every_steps):
            self._checkpoint()

    def _keep_the_budget(self, validated: bool) -> None:
        """With a time budget: plan the schedule to end within it (so the learning rate decays by then), and
        stop once it is spent, validating first so the best model is known."""
        progress, budget = self.progress, self.settings.max_seconds
        elapsed = time.monotonic() - self.started
        done_here = progress.step - self.steps_at_start
        # A fresh attempt first fits the schedule at its 10th step. A resumed one goes on with the schedule fitted
        # before, often past its half, where a cut never grows back: it first fits at its 20th, at the pace of the
        # steps after its slow start (loading, allocating), never at that start's.
        first_fit = 20 if self.steps_at_start else 10
        looks = validated or progress.step % SETTLE_EVERY_STEPS == 0 or done_here in (10, first_fit)
        if budget and not self.stopped and self.world_size > 1:
            # Each rank has its own clock: data-parallel ranks must stop at the same step and plan the same
            # schedule (one that stopped alone would hang the rest), so they all go by the slowest clock. Comparing
            # clocks waits for the device (a copy in, a collective, a read back), so they compare and decide only
            # at the steps where the loop looks anyway: the budget may run over by SETTLE_EVERY_STEPS steps.
            if not looks:
                progress.seconds = self.seconds_before + elapsed
                return
            elapsed = sum_over_ranks([elapsed], op="max")[0]
        progress.seconds = self.seconds_before + elapsed
        if not budget or self.stopped:
            return
        if progress.seconds >= budget:
            if not validated:
                self._settle()  # skipped steps give their place back first: the validation's step is the real one
                self._validate()
                progress.seconds = self.seconds_before + time.monotonic() - self.started  # the bill counts it too
            log.info("time budget of %s spent at step %d: stopping with the best model (step %d)",
                     duration(budget), progress.step, progress.best_step)
            self.stopped, self.stop_reason = True, "time budget"
            return
        if done_here == 10 or (validated and 10 < done_here < first_fit):
            self.pace_mark = (done_here, elapsed)  # a validation before the first fit: its time is not a step's
        if done_here == first_fit or (validated and done_here > first_fit):
            self._fit_the_schedule(done_here, elapsed)

    def _fit_the_schedule(self, done_here: int, elapsed: float) -> None:
        """Plan the schedule's last step where the budget runs out, at the pace seen: over the first 10 steps at
        first (a resumed attempt: the 10 after them), then over the steps since (the first are often slower:
        loading, allocating, a busy node; counted in, one slow start shrank a plan sevenfold). Re-estimated at each
        validation: it always shrinks to what fits, but grows only in its first half: grown later, the learning
        rate jumped back up a decay nearly done (at the schedule's end, from 0 to its peak)."""
        progress, budget = self.progress, self.settings.max_seconds
        marked_steps, marked_elapsed = self.pace_mark or (done_here, elapsed)
        per_step = elapsed / done_here if done_here <= marked_steps else \
            (elapsed - marked_elapsed) / (done_here - marked_steps)
        fits = min(progress.step + int((budget - progress.seconds) / max(per_step, 1e-9)), self.planned_steps)
        fits = max(fits, progress.step + 1)
        grows = self.budget_ends_schedule and 2 * progress.step < self.total_steps
        if fits < self.total_steps or (fits > self.total_steps and grows):
            self.total_steps = fits
            self.budget_ends_schedule = self.total_steps < self.planned_steps
            if self.settings.warmup_steps < 1:
                self.warmup = min(self.warmup, int(self.settings.warmup_steps * self.total_steps))
            log.info("time budget: %d steps fit (%.2f s each); the schedule now ends at step %d",
                     self.total_steps, per_step, self.total_steps)

    def _log_progress(self) -> None:
        progress, now = self.progress, time.monotonic()
        rate = self.window_tokens / max(now - self.window_start, 1e-9)
        per_step = (now - self.started) / max(progress.step - self.steps_at_start, 1)
        log.info("step %d/%d  epoch %d  loss %.4f  lr %.2e  %.0f tokens/s  ETA %s", progress.step, self.total_steps,
                 progress.epoch, self.running_loss / max(self.running_steps, 1), self._learning_rate(), rate,
                 duration(per_step * (self.total_steps - progress.step)))
        self.running_loss, self.running_steps, self.window_tokens, self.window_start = 0.0, 0, 0, now

    def _validate(self) -> None:
        progress = self.progress
        if progress.validations and progress.validations[-1][0] == progress.step:
            return  # the same weights: skipped steps gave the count back after this step's validation
        s = self.settings
        val_loss = evaluate_loss(self.model, self.val_data, self.pad_id, self.decoder_start_id, self.device,
                                 self.precision, max_tokens_per_batch=s.max_tokens_per_batch,
                                 max_sentences_per_batch=s.max_sentences_per_batch, rank=self.rank,
                                 world_size=self.world_size)
        if val_loss < progress.best_loss:
            progress.best_loss, progress.best_step = val_loss, progress.step
            progress.evals_without_improvement = 0
            # A copy on the device: copying every weight to host memory at each validation held a GPU up.
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            progress.evals_without_improvement += 1
        progress.validations.append([progress.step, round(val_loss, 4)])
        log.info("step %d  validation loss %.4f  (best %.4f at step %d)", progress.step, val_loss,
                 progress.best_loss, progress.best_step)
        if self.settings.target_loss and val_loss <= self.settings.target_loss:
            log.info("validation loss %.4f reached the target %.4f", val_loss, self.settings.target_loss)
            self.stopped, self.stop_reason = True, "target loss"
            return
        patience = self.settings.early_stopping_patience
        if patience and progress.evals_without_improvement >= patience:
            log.info("early stopping: no improvement in %d evaluations", patience)
            self.stopped, self.stop_reason = True, "early stopping"

    def _checkpoint(self) -> None:
        generators = random_states(self.device.type, self.world_size)  # a collective: before rank 0 saves
        if self.rank == 0:
            self.checkpoints.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                   "progress": asdict(replace(self.progress, stopped_by=self.stop_reason)),
                                   "best_model": self.best_state, "random": generators,
                                   "precision": self.precision.name, "scaler": self.scaler.state_dict(),
                                   "settings": asdict(self.settings), "world_size": self.world_size,
                                   "device_type": self.device.type,
                                   "schedule": {"planned_steps": self.planned_steps, "total_steps": self.total_steps,
                                                "warmup": self.warmup,
                                                "budget_ends_schedule": self.budget_ends_schedule}},
                                  self.progress.step)

    def finish(self) -> dict:
        self._settle()
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        progress = self.progress
        return {"steps": progress.step, "epochs_completed": progress.epoch, "best_step": progress.best_step,
                "best_validation_loss": round(progress.best_loss, 4), "tokens_seen": progress.tokens_seen,
                "seconds": round(time.monotonic() - self.started, 1), "precision": self.precision.name,
                "device": str(self.device), "tokens_per_batch": self.settings.max_tokens_per_batch,
                "learning_rate": self.settings.learning_rate, "warmup_steps": self.warmup,
                "scheduled_steps": self.total_steps,
                "resumed_from_step": int(self.resumed_from.name.split("-")[1]) if self.resumed_from else None,
                "early_stopped": self.stop_reason == "early stopping",
                "stopped_by": self.stop_reason or ("time budget" if self.budget_ends_schedule else "steps"),
                "seconds_total": round(progress.seconds, 1), "world_size": self.world_size,
                "cuda_graphs": self.graphs.summary() if self.graphs is not None else None,
                "validations": progress.validations}

