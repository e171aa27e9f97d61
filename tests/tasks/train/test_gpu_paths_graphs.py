"""tasks/train/graphs.py on a CPU, with CUDA graphs emulated: what a capture records is what a replay does.

A CUDA graph records the device work of one step and replays it at fixed addresses; whatever the host decided
while recording (a Python number, an attribute read once, a draw on the host) is frozen into every replay. CI has
no GPU, so this file stands a recorder in for torch.cuda's graph: a capture records every ATen operation the step
issues (without letting it change the weights, as a real capture does not run them), a replay runs those same
operations again on the same tensors, writing each result where the capture's result lives. A training run with
its steps replayed this way must then train as ordinary steps do: host state frozen at capture time shows up as a
different model. (Memory reuse inside a graph's pool and the CUDA streams are not emulated: only a GPU shows those;
tests/gpu/test_cuda.py.)
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from support.corpora import digit_pairs
from tasks.train import batching, graphs
from tasks.train import loop as trainloop


class _Recorder(TorchDispatchMode):
    """Records (op, args, kwargs, outputs) of every ATen call; refuses a read back to the host, as capture does."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default and not _cpu_only_read():
            raise RuntimeError("operation not permitted when stream is capturing (a value read back to the host)")
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out


def _cpu_only_read() -> bool:
    """The fused head's look at its bias, which it takes on a CPU only (tokenloss._padded_head)."""
    import traceback

    return any(frame.name == "_padded_head" for frame in traceback.extract_stack())


def _tensors(tree) -> list:
    return [x for x in tree_flatten(tree)[0] if isinstance(x, torch.Tensor)]


class _FakeGraph:
    """torch.cuda.CUDAGraph's part the loop uses: replay() reruns the recorded operations on the same tensors."""

    def __init__(self):
        self.ops = []

    @torch.no_grad()  # kernels, not autograd: the backward pass is among the recorded operations
    def replay(self):
        for func, args, kwargs, recorded in self.ops:
            out = func(*args, **kwargs)
            inputs = {t.untyped_storage().data_ptr() for t in _tensors((args, kwargs))}
            for kept, fresh in zip(_tensors(recorded), _tensors(out)):
                if kept is not fresh and kept.untyped_storage().data_ptr() not in inputs:
                    kept.copy_(fresh)  # else in place, out= or a view of an input: already where it belongs


@contextlib.contextmanager
def _fake_capture(graph, *, optimizer_and_model, **_):
    """Records the step without letting it change anything: weights, optimizer state and the host's random
    generator are put back as they were, as a real capture leaves them."""
    optimizer, model = optimizer_and_model()
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = {id(t): (t, t.detach().clone()) for s in optimizer.state.values() for t in s.values()
             if isinstance(t, torch.Tensor)}
    rng = torch.get_rng_state()
    recorder = _Recorder()
    try:
        with recorder:
            yield
    finally:
        with torch.no_grad():
            for name, value in model.state_dict().items():
                value.copy_(params[name])
            for tensor, saved in state.values():
                tensor.copy_(saved)
        torch.set_rng_state(rng)
        graph.ops = recorder.ops


class _Stream:
    def __init__(self, *_):
        pass

    def wait_stream(self, _):
        pass


def _emulate_cuda_graphs(monkeypatch, run):
    """Graphs for `run` (a loop._Training on CPU) with torch.cuda's graph and stream calls emulated."""
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "Stream", _Stream)
    monkeypatch.setattr(cuda, "graph_pool_handle", lambda: None)
    monkeypatch.setattr(cuda, "current_stream", lambda *_: _Stream())
    monkeypatch.setattr(cuda, "stream", lambda *_: contextlib.nullcontext())
    monkeypatch.setattr(cuda, "set_stream", lambda *_: None)
    monkeypatch.setattr(cuda, "synchronize", lambda *_: None)
    monkeypatch.setattr(cuda, "memory_reserved", lambda *_: 0)
    monkeypatch.setattr(cuda, "CUDAGraph", _FakeGraph)
    monkeypatch.setattr(cuda, "graph", lambda graph, **kw: _fake_capture(
        graph, optimizer_and_model=lambda: (run.optimizer, run.model), **kw))
    capture = graphs.StepGraphs._capture

    def capture_from_zeros(self, key, tensors):
        # A real capture runs nothing, so the inputs it allocates empty are never read while recording; here the
        # recording runs the step, on inputs that must be valid token ids: zeros.
        with monkeypatch.context() as patch:
            patch.setattr(torch, "empty", torch.zeros)
            return capture(self, key, tensors)

    monkeypatch.setattr(graphs.StepGraphs, "_capture", capture_from_zeros)
    run.graphs = graphs.StepGraphs(run._update, run.optimizer, run.device)


def _train(tiny_model, tmp_path, monkeypatch, emulated: bool, **overrides):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    pairs = digit_pairs(300, seed=4)
    data = batching.encode(tokenizer, [s for s, _ in pairs[:260]], [t for _, t in pairs[:260]], 32, 32)
    heldout = batching.encode(tokenizer, [s for s, _ in pairs[260:]], [t for _, t in pairs[260:]], 32, 32)
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model, dropout=0.0, attention_dropout=0.0,
                                                  activation_dropout=0.0)
    settings = trainloop.LoopSettings(**{
        "learning_rate": 3e-3, "weight_decay": 0.01, "num_train_epochs": 2, "max_tokens_per_batch": 256,
        "early_stopping_patience": 0, "precision": "fp32", "warmup_steps": 0.3, **overrides})
    run = trainloop._Training(model, data, heldout, settings, pad_id=model.config.pad_token_id,
                              decoder_start_id=model.config.decoder_start_token_id,
                              checkpoints=trainloop.CheckpointDir(tmp_path / f"checkpoints-{emulated}"),
                              device=torch.device("cpu"), rank=0, world_size=1)
    run.multiple = batching.PAD_MULTIPLE  # batches shaped as on a GPU
    if emulated:
        _emulate_cuda_graphs(monkeypatch, run)
    run.resume()
    run.log_plan()
    while run.progress.step < run.total_steps and not run.stopped:
        run.one_epoch()
    report = run.finish()
    return report, torch.cat([p.detach().flatten() for p in model.parameters()])


def test_steps_replayed_from_an_emulated_capture_train_as_ordinary_steps(tiny_model, tmp_path, monkeypatch):
    ordinary, ordinary_weights = _train(tiny_model, tmp_path, monkeypatch, emulated=False)
    replayed, replayed_weights = _train(tiny_model, tmp_path, monkeypatch, emulated=True)
    summary = replayed["cuda_graphs"]
    assert summary["off"] is None and summary["eager"] == 1 and summary["replayed"] == replayed["steps"] - 1, summary
    assert summary["captured"] == summary["shapes"] >= 2, summary
    assert replayed["steps"] == ordinary["steps"]
    assert replayed["best_validation_loss"] == pytest.approx(ordinary["best_validation_loss"], rel=1e-3)
    assert (replayed_weights - ordinary_weights).norm() < 1e-3 * ordinary_weights.norm()
