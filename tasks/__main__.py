"""`python -m tasks <step> --run-dir URI`: run one pipeline step against a run directory.

This is the entrypoint of the training image and of the local launcher. The step reads `config.json` from
the run directory; its summary goes to the log, and the last line of stdout is that summary as JSON.

On a machine with several GPUs, `train` re-executes itself under torchrun with one process per GPU, so
training is data-parallel with no change to the command, the image or the launcher. Before that, where
tcmalloc is installed and nothing is preloaded, it starts itself over with tcmalloc (tasks/hardware.py says why).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Mapping

from tasks import hardware

if __name__ == "__main__":
    hardware.preload_tcmalloc()  # before the heavier imports below, which a new start would do again

from tasks import config  # noqa: E402
from tasks.steps import STEPS  # noqa: E402

# Set by torchrun in every process it starts: their presence means "already data-parallel".
TORCHRUN_ENV = ("LOCAL_RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID")
# How many processes to train with; default: one per visible GPU. 1 turns data parallelism off.
PROCESSES_ENV = "MT_TRAIN_PROCESSES"


def data_parallel_command(step: str, argv: list[str], env: Mapping[str, str], visible_gpus: int,
                          python: str = sys.executable) -> list[str] | None:
    """The torchrun command that runs this same step with one process per GPU, or None to run it here."""
    if not STEPS[step].data_parallel or any(name in env for name in TORCHRUN_ENV):
        return None
    requested = env.get(PROCESSES_ENV, "").strip()
    if requested and not (requested.isdigit() and int(requested) >= 1):
        raise ValueError(f"{PROCESSES_ENV} must be a whole number ≥ 1, not {requested!r}")
    processes = int(requested) if requested else visible_gpus
    if processes <= 1:
        return None
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "tasks", *argv]


def _visible_gpus() -> int:
    import torch  # heavy: only the data-parallel steps ask

    return torch.cuda.device_count()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=list(STEPS), help="pipeline step to run: " +
                        "; ".join(f"{s.name}: {s.summary}" for s in STEPS.values()))
    parser.add_argument("--run-dir", required=True, help="run directory: local path or s3://bucket/prefix")
    args = parser.parse_args(argv)

    rank = int(os.environ.get("RANK", "0"))
    # One progress stream in the task log: the other data-parallel ranks report only problems.
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tasks").info("memory allocator: %s", hardware.allocator())
    if STEPS[args.step].data_parallel:
        command = data_parallel_command(args.step, argv, os.environ, _visible_gpus())
        if command:
            logging.getLogger("tasks").info("data-parallel training: %s", " ".join(command))
            os.execvp(command[0], command)  # replaces this process: the launcher sees torchrun's exit code

    summary = STEPS[args.step].run(config.load(args.run_dir))
    if rank == 0:
        print(json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
