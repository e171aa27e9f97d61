"""Every GPU figure in one run (`make bench-gpu`): training against the seed recipe (tokens/s and time to the
seed's loss), evaluation against the seed's decoding, the alignment screen's pairs/s, and a profile of ten
training steps. Meant for one lent H200 in at most 8 minutes; it runs anywhere (on CPU the figures are CPU's).

Each benchmark runs as its own process with its own time limit, so one that fails or overruns costs only the
figures it had not printed yet (its error is reported beside the others). Workloads:

- train: bench/train_throughput.py's defaults (opus-mt-en-de shape, 16,000 pairs on a GPU, time to loss on),
  its epoch again with CUDA graphs and once more without, the time to loss with graphs (`--compare-graphs`),
  and the time to loss again at 4,096 tokens a batch and with the old 5 % warmup (COMPARE_BATCHES below);
- eval: bench/eval_throughput.py on the demo's base model (7.7 M parameters, trained on real catalog strings)
  and 1,000 of the demo's domain catalog pairs when .cache/demo/base-model exists (`make demo` or the
  alignment tests build it; carry it to a lent GPU), else its own default model; and the project's engine
  again at 1,024 sentences a batch instead of the run config's 256 (COMPARE_SENTENCES);
- alignment: bench/alignment_screen.py on the same model and 3,000 demo catalog pairs (built when missing);
- profile: torch.profiler over 10 project training steps (opus-mt shape, 3,000 pairs): the share of wall time
  the GPU computed, copies between host and device by kind, and the ten busiest kernels, written in full to
  profile.txt in the output folder; then the same with CUDA graphs (profile_graphs, profile-graphs.txt).

    python bench/gpu.py [--tiny] [--out DIR]

The last line is one JSON object: the headline figures (train_ratio, graphs_ratio, graphs_speedup,
time_to_loss_ratio, time_to_loss_ratio_graphs, eval_ratio, eval_engine with eval_engine_fallback, why the faster
engine was passed over (CTranslate2 without cuBLAS 12, say), eval_scoring_ratio, alignment_pairs_per_s,
gpu_busy_share, gpu_busy_share_graphs) and each benchmark's own JSON under its name.

On a lent machine (../shared/GPU.md: Python 3.12 and torch with CUDA are there, no network), carry two ignored
folders: `.cache/demo/base-model` and `.whl/`, the wheels the machine lacks (transformers, datasets, pydantic and
its dependencies, polib, regex, fsspec, dill, multiprocess, zstandard, fasttext-predict, and sacrebleu with
portalocker, tabulate and colorama, at this checkout's versions), both made here by `make gpu-kit`
(devtools/gpu_kit.py: 18 wheels, about 23 MiB). A lease is 15 minutes in
all, the machine's start (minutes) included, and one call may run 10: the bench's parts (limits below: 8 minutes)
and the GPU tests do not both fit twice, so the first call runs the bench and then the quickest GPU tests in what
is left of its 10 minutes, and a second call, only where `status` still leaves room, the rest:

    # first call, timeout_s 590:
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl
    python3 bench/gpu.py --out $OUT
    timeout 60 python3 -m pytest -q tests/gpu -k "train_and_evaluate or fused_head" > $OUT/gpu-tests.txt 2>&1
    # second call, where budget_left_s allows (~300 s): the kill-and-resume test (~110 s), the CUDA graph tests
    # (about as long), and the corpus tokenized on the node's CPUs (~30 s; CPU work, outside the 8 minutes)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl
    python3 -m pytest -q tests/gpu -k "not train_and_evaluate and not fused_head" > $OUT/gpu-tests-2.txt 2>&1
    python3 bench/tokenize_throughput.py --pairs 100000 | tail -1 > $OUT/tokenize.json

A part that fails or runs past its limit keeps the figures it printed before (the train bench prints them after
its throughput and after each time-to-quality run), with the error beside them; bench-gpu.json in the output
folder is rewritten after each part, so a call cut short still brings back the parts done.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

DEMO_MODEL = REPO / ".cache" / "demo" / "base-model"
# Seconds each part may take on the GPU (8 minutes in all, with room for start-up). Measured on an H200
# (2026-12-04): train 244 s (with the comparison batch), eval 99 s, alignment 30 s, profile ~20 s; the train
# part has 20 s more for the epochs with and without CUDA graphs, the eval part 5 s for its second batch size, both
# taken from the alignment part's slack; the eval part's scoring comparison (since 2026-12-06) takes about 5 s on
# 2 CPU cores here and fits within its slack. The two profiles (without and with graphs) run as one process of
# their own, under one limit like every part (a profiler that hangs over a graph capture, or a crash, costs their
# figures only); its 20 s more came from the train part's last comparisons, which its limit cuts anyway.
LIMITS = {"train": 270, "eval": 115, "alignment": 40, "profile": 55}
PROFILES = (("profile", False), ("profile_graphs", True))
# The train bench's time to the seed's loss at the automatic batch, then at a smaller one (its learning rate and
# warmup following it, as the run config's would), then with the old 5 % warmup at the automatic batch, each in
# turn while the train part's time lasts. A CPU proxy traced the plateau seen on 2026-12-04 (at the unigram loss,
# that of a model that ignores its source; 12,288 and 4,096 tokens, 5 % warmup) to the short warmup, and there
# leaving the plateau took about as many updates with 512, 1,024 and 4,096 tokens a batch (python -m
# devtools.warmup_study --tokens N): the time to quality is that many steps' time, and a smaller batch's steps may
# cost the GPU less than its tokens say.
COMPARE_BATCHES = {"tiny": "256", "full": "4096"}
COMPARE_WARMUP = "0.05"
# Sentences a decoding batch for the eval bench's second run of the project's engine: beam search reads the device
# at each decoding step, so on a GPU fewer, larger batches may decode faster (1,000 test sentences: one batch).
COMPARE_SENTENCES = {"tiny": "64", "full": "1024"}


def _run(name: str, argv: list[str], limit: int) -> dict:
    """One benchmark as a process; its last stdout line is its JSON. On failure or past its time limit, the error
    beside the figures of the last JSON line it printed (the train bench prints one after each part), so a run cut
    short keeps what it measured."""
    started = time.monotonic()
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path}
    try:
        done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=limit, env=env,
                              cwd=REPO)
    except subprocess.TimeoutExpired as late:
        stdout = late.stdout.decode(errors="replace") if isinstance(late.stdout, bytes) else late.stdout or ""
        return {**_last_figures(stdout), "error": f"{name} ran past its {limit} s"}
    if done.returncode != 0:
        return {**_last_figures(done.stdout),
                "error": f"{name} failed ({done.returncode}): {done.stderr.strip()[-1500:]}"}
    figures = _last_figures(done.stdout)
    if not figures:
        return {"error": f"{name} printed no figures: {done.stdout.strip()[-500:]}"}
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    return figures


def _last_figures(stdout: str) -> dict:
    """The last line of `stdout` that is a JSON object ({} if none)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            figures = json.loads(line)
        except ValueError:
            continue
        if isinstance(figures, dict):
            return figures
    return {}


def demo_test(scratch: Path, sentences: int = 1000) -> str:
    """1,000 of the demo's real catalog pairs (after the 3,000 the alignment bench screens) as a test file."""
    from alignment_screen import demo_pairs

    path = scratch / "test.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for en, de in demo_pairs(3000 + sentences)[3000:]:
            fh.write(json.dumps({"translation": {"en": en, "de": de}}, ensure_ascii=False) + "\n")
    return str(path)


def profile(tiny: bool, out: Path, graphs: bool = False) -> dict:
    """Ten project training steps under torch.profiler, after three to warm up; `graphs`: replayed as CUDA
    graphs (the ten steps then include their captures, one per batch shape)."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from tasks.train import batching
    from tasks.train import loop as trainloop
    from train_throughput import OPUS_MT, TINY, build_model, synthetic_pairs

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dims = TINY if tiny else OPUS_MT
    data = synthetic_pairs(200 if tiny else 3000, dims["vocab_size"], seed=1)
    validation = batching.Encoded(data.sources[:64], data.targets[:64])  # validated once, at the last step
    pad = dims["vocab_size"] - 1
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])

    def steps(n: int, checkpoints: Path, model):
        settings = trainloop.LoopSettings(learning_rate=0, weight_decay=0.01, num_train_epochs=100,
                                          max_tokens_per_batch=512 if tiny else 12288, max_steps=n,
                                          early_stopping_patience=0, eval_every_steps=10**9,
                                          checkpoint_every_steps=10**9, log_every_steps=10**9,
                                          precision="bf16" if device.type == "cuda" else "auto",
                                          cuda_graphs=graphs)
        return trainloop.train(model, data, validation, settings, pad_id=pad, decoder_start_id=pad,
                               checkpoints=trainloop.CheckpointDir(checkpoints), device=device)

    with tempfile.TemporaryDirectory() as scratch:
        steps(3, Path(scratch) / "warm", build_model(dims).to(device))
        # Built and moved before the profiler starts: its random initialization and weight uploads are no step's work.
        model = build_model(dims).to(device)
        with torch_profile(activities=activities) as prof:
            started = time.perf_counter()
            report = steps(10, Path(scratch) / "profiled", model)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - started
    events = prof.events()
    kernels = [e for e in events if e.device_type.name == "CUDA" and not e.name.startswith("Memcpy")]
    copies: dict[str, int] = {}
    for e in events:
        if e.name.startswith("Memcpy"):
            copies[e.name] = copies.get(e.name, 0) + 1
    busy = sum(e.device_time for e in kernels) / 1e6 if kernels else 0.0
    sort_by = "device_time_total" if device.type == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_by, row_limit=40)
    out.mkdir(parents=True, exist_ok=True)
    (out / ("profile-graphs.txt" if graphs else "profile.txt")).write_text(table + "\n")
    top = sorted(prof.key_averages(), key=lambda a: getattr(a, sort_by), reverse=True)[:10]
    # What the steps really ran as: a capture that failed (under the profiler, say) leaves graphs off, and the
    # profile would otherwise pass ordinary steps off as graph replays.
    return {"device": str(device), "wall_seconds": round(wall, 3), "steps": 10, "cuda_graphs": report["cuda_graphs"],
            "gpu_busy_seconds": round(busy, 3), "gpu_busy_share": round(busy / wall, 3) if kernels else None,
            "copies": copies, "top": [{"name": a.key[:80], "ms": round(getattr(a, sort_by) / 1e3, 2),
                                       "calls": a.count} for a in top],
            "table": str(out / ("profile-graphs.txt" if graphs else "profile.txt"))}


def profiles(tiny: bool, out: Path) -> None:
    """`--profile-only`: both profiles in this process, the figures printed after each (one JSON line holding
    every profile so far), so that one that hangs or takes the process down leaves those before it."""
    figures: dict = {}
    for name, graphs in PROFILES:
        try:
            figures[name] = profile(tiny, out, graphs)
        except Exception as err:  # noqa: BLE001 - reported in the figures' place
            figures[name] = {"error": f"{name} failed: {err}"}
        print(json.dumps(figures), flush=True)


def headline(results: dict, seconds: float, tiny: bool) -> dict:
    """The figures issue 19 asks for, read off each part's own."""
    train, evaluation = results.get("train", {}), results.get("eval", {})
    graphs, graphs_to_loss = train.get("graphs") or {}, train.get("time_to_loss_with_graphs") or {}
    return {"device": train.get("device"), "train_ratio": train.get("ratio"),
            "graphs_ratio": graphs.get("ratio"), "graphs_speedup": graphs.get("speedup"),
            "time_to_loss_ratio": train.get("time_to_loss_ratio"),
            "time_to_loss_ratio_graphs": graphs_to_loss.get("time_to_loss_ratio"),
            "project_tokens_per_s": train.get("project_tokens_per_s"),
            "project_share_of_matmul_peak": train.get("project_share_of_matmul_peak"),
            "eval_ratio": evaluation.get("ratio"),
            "eval_engine": evaluation.get("project_engine"),
            "eval_engine_fallback": evaluation.get("engine_fallback"),
            "eval_scoring_ratio": (evaluation.get("scoring") or {}).get("ratio"),
            "eval_ratio_by_batch_sentences": {n: run.get("ratio") for n, run in
                                              evaluation.get("by_batch_sentences", {}).items()},
            "alignment_pairs_per_s": results.get("alignment", {}).get("project_pairs_per_s"),
            "gpu_busy_share": results.get("profile", {}).get("gpu_busy_share"),
            "gpu_busy_share_graphs": results.get("profile_graphs", {}).get("gpu_busy_share"),
            "profile_graphs_steps": results.get("profile_graphs", {}).get("cuda_graphs"),
            "seconds": round(seconds, 1), "tiny": tiny}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run (figures mean nothing)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / ".cache" / "bench-gpu"),
                        help="where profile.txt goes (default: $OUT, else .cache/bench-gpu)")
    parser.add_argument("--profile-only", action="store_true", help=argparse.SUPPRESS)  # the profile part's process
    args = parser.parse_args()
    tiny = ["--tiny"] if args.tiny else []
    if args.profile_only:
        return profiles(args.tiny, args.out)
    started = time.monotonic()
    results: dict = {}

    def record(name: str, figures: dict) -> None:
        """Each part's figures are written as soon as they exist: a run cut short keeps what it measured."""
        results[name] = figures
        args.out.mkdir(parents=True, exist_ok=True)
        line = {**headline(results, time.monotonic() - started, args.tiny), **results}
        (args.out / "bench-gpu.json").write_text(json.dumps(line, indent=2) + "\n")

    compare = COMPARE_BATCHES["tiny" if args.tiny else "full"]
    record("train", _run("train", ["bench/train_throughput.py", *tiny, "--compare-graphs", "--compare-batches",
                                   compare, "--compare-warmup", COMPARE_WARMUP], LIMITS["train"]))
    with tempfile.TemporaryDirectory() as scratch:
        model = [] if args.tiny or not DEMO_MODEL.exists() else ["--model", str(DEMO_MODEL),
                                                                 "--test", demo_test(Path(scratch))]
        record("eval", _run("eval", ["bench/eval_throughput.py", *tiny, *model, "--compare-sentences",
                                     COMPARE_SENTENCES["tiny" if args.tiny else "full"]], LIMITS["eval"]))
    screen_model = ["--model", str(DEMO_MODEL)] if not args.tiny and DEMO_MODEL.exists() else []
    record("alignment", _run("alignment", ["bench/alignment_screen.py", *tiny, *screen_model], LIMITS["alignment"]))
    # Absolute: the part runs in the checkout, which need not be this process's working directory.
    done = _run("profile", ["bench/gpu.py", *tiny, "--profile-only", "--out", str(args.out.resolve())],
                LIMITS["profile"])
    for name, _ in PROFILES:  # one cut short or failed: the error in the place of the figures it did not print
        record(name, done.get(name) or {"error": done.get("error") or f"{name} printed no figures"})
    print(json.dumps({**headline(results, time.monotonic() - started, args.tiny), **results}))


if __name__ == "__main__":
    main()
