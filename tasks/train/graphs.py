"""Training steps replayed as CUDA graphs, one graph per batch shape (the run config's `cuda_graphs`).

A training step of a 6+6-layer Marian model issues some 4,000 operations: forward, backward, autocast's casts,
clipping, the fused optimizer (counted with a dispatch counter on CPU, `python -m devtools.step_ops`). The host
spends microseconds on each, so on a fast GPU the host sets the pace, not the GPU: on an H200 the GPU was busy
5 % of the time (bench/gpu.py's profile). A CUDA graph records the step's device work once, then issues all of
it with one call.

A graph replays fixed shapes at fixed addresses, so:
- there is one graph per batch shape. Batches of similar-length pairs, their lengths rounded to multiples of 8,
  come in few shapes: 14 over the 450 batches of the GPU bench's 16,000 pairs and 10 epochs;
- each graph reads its batch from its own input tensors, which the batch is copied into before a replay;
- the loss scores every position, padding weighing nothing (tokenloss's path without `target_rows`), so no
  shape depends on how many of the batch's tokens are real;
- the learning rate is a tensor on the device, filled before each replay.

The first step runs as before, on the stream that graphs are captured on: it creates the optimizer's state and
the libraries' workspaces, which a capture must not allocate. A step that cannot be replayed also runs as
before: several micro-batches, fp16 with its loss scaler, a shape past MAX_GRAPHS. When a capture fails, the
run says why once and goes on without graphs. The loop does not use graphs on several GPUs, or with
LayerDrop (which layers to skip is drawn on the host: a graph would skip the same ones at every replay). A
replay reads nothing back; the loop looks at its outputs as it looks at an ordinary step's.
"""

from __future__ import annotations

import logging

from tasks.train import feed
from tasks.train.precision import Precision

log = logging.getLogger(__name__)

MAX_GRAPHS = 32  # shapes given a graph; each keeps its inputs and outputs, the rest of its memory is shared


def step_graphs(update, optimizer, model, device, world_size: int) -> "StepGraphs | None":
    """The graphs for a run that asks for them, or None (and why, in the log) where they cannot be used."""
    config = model.config
    # LayerDrop draws on the host which layers to skip: a graph would replay one draw for ever.
    layerdrop = max(getattr(config, "encoder_layerdrop", 0) or 0, getattr(config, "decoder_layerdrop", 0) or 0)
    if layerdrop:
        log.warning("cuda_graphs: not used with LayerDrop (%g): a graph would skip the same layers each time",
                    layerdrop)
        return None
    if device.type != "cuda" or world_size != 1:
        log.info("cuda_graphs: not used on %s with %d worker(s) (one CUDA device only)", device, world_size)
        return None
    return StepGraphs(update, optimizer, device)


class StepGraphs:
    """Runs `update(pieces, learning_rate, cache)` (the loop's device work for one step, which returns its
    outputs as device tensors) as a replayed CUDA graph where it can."""

    def __init__(self, update, optimizer, device):
        import torch

        self.update, self.optimizer, self.device = update, optimizer, device
        self.stream = torch.cuda.Stream(device)
        self.pool = torch.cuda.graph_pool_handle()
        self.learning_rate = torch.zeros((), dtype=torch.float32, device=device)
        self.graphs: dict[tuple, tuple] = {}
        self.warm = False
        self.off = ""  # why graphs are no longer used, after a failed capture
        self.counts = {"captured": 0, "replayed": 0, "eager": 0}

    def step(self, pieces: list[feed.Piece], learning_rate: float, precision: Precision):
        if len(pieces) != 1 or precision.needs_scaler or self.off:
            self.counts["eager"] += 1
            return self.update(pieces, learning_rate, True)
        tensors = {name: value for name, value in pieces[0].tensors.items() if name != "target_rows"}
        whole = [feed.Piece(tensors, 1)]  # one piece: its share of the step's tokens is 1, whatever its count
        if not self.warm:
            self.warm = True
            self.counts["eager"] += 1
            return self._warm_up(whole, learning_rate)
        key = (precision.name, *((name, tuple(value.shape)) for name, value in tensors.items()))
        entry = self.graphs.get(key) or (self._capture(key, tensors) if len(self.graphs) < MAX_GRAPHS else None)
        if entry is None:
            self.counts["eager"] += 1
            return self.update(whole, learning_rate, True)
        inputs, outputs, graph = entry
        for name, value in tensors.items():
            inputs[name].copy_(value, non_blocking=True)
        self.learning_rate.fill_(learning_rate)
        graph.replay()
        self.counts["replayed"] += 1
        return outputs

    def forget(self) -> None:
        """Drop every graph (the precision changed: they were captured under the old one)."""
        self.graphs.clear()

    def summary(self) -> dict:
        return {**self.counts, "shapes": len(self.graphs), "off": self.off or None}

    def _warm_up(self, pieces: list[feed.Piece], learning_rate: float):
        """The first step, on the capture stream. Waiting for it once keeps the outputs it allocated there from
        being reused by that stream while the loop still reads them on its own."""
        import torch

        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            outputs = self.update(pieces, learning_rate, True)
        current.wait_stream(self.stream)
        torch.cuda.synchronize(self.device)
        return outputs

    def _capture(self, key: tuple, tensors: dict):
        """Record one step of this shape (nothing runs while recording); None when the capture failed."""
        import torch

        inputs = {name: torch.empty(value.shape, dtype=value.dtype, device=self.device)
                  for name, value in tensors.items()}
        graph = torch.cuda.CUDAGraph()
        groups = self.optimizer.param_groups
        saved = [(group["lr"], group["capturable"]) for group in groups]
        for group in groups:
            group["capturable"] = True  # the optimizer refuses to be captured otherwise
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        try:
            # thread_local: the batch-preparing thread pins memory meanwhile, which global mode would forbid.
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream, capture_error_mode="thread_local"):
                outputs = self.update([feed.Piece(inputs, 1)], self.learning_rate, False)
        except Exception as err:  # noqa: BLE001 - the run goes on without graphs, and says why
            # A failed capture_end leaves the capture stream current and may keep the graphs' memory reserved.
            torch.cuda.set_stream(current)
            _release_generator(self.device)
            self.off = f"capturing a step of shape {dict(key[1:])} failed: {type(err).__name__}: {err}"
            log.warning("CUDA graphs off for the rest of training: %s (%.1f GiB reserved on the GPU; a retry with "
                        "cuda_graphs off frees what the graphs held)", self.off,
                        torch.cuda.memory_reserved(self.device) / 2**30)
            self.optimizer.zero_grad(set_to_none=True)
            self.graphs.clear()
            return None
        finally:
            for group, (lr, capturable) in zip(groups, saved):
                group["lr"], group["capturable"] = lr, capturable
            current.wait_stream(self.stream)
        self.graphs[key] = (inputs, outputs, graph)
        self.counts["captured"] += 1
        log.info("CUDA graph %d captured for batches of shape %s", len(self.graphs), dict(key[1:]))
        return self.graphs[key]


def _release_generator(device) -> None:
    """A capture that ended in an error may leave the device's random generator marked as capturing (its end,
    which clears the mark, never ran): then the next ordinary step's dropout raises "Offset increment outside graph
    capture", and the fallback to ordinary steps would end training. A clone of the generator's state (the same
    seed and offset, what the failed capture drew discarded) carries no such mark; with none, the swap changes
    nothing. tests/gpu/test_cuda.py trains on after a failed capture."""
    import torch

    try:
        generator = torch.cuda.default_generators[torch.cuda.current_device() if device.index is None else device.index]
        generator.graphsafe_set_state(generator.clone_state())
    except Exception as err:  # noqa: BLE001 - an older torch without graph-safe states: nothing to clear
        log.warning("could not renew the GPU's random generator after the failed capture: %s", err)
