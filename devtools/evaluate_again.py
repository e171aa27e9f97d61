"""What the kept translations spare the evaluate step (tasks/evaluate/reuse.py): a finished run's evaluate step run
again, in copies of its run directory, once with the pipeline's kept translations and once with them set aside
(so every model decodes), each in a process of its own so that neither pays the other's imports.

    python -m devtools.evaluate_again RUN_DIR [--repeat 2]

RUN_DIR is a run whose evaluate step is done, e.g. the demo's week 2 (the newest folder under
.demo/artifacts/translation_finetune/). MT_LOCAL_DATA_ROOTS must allow the local places its config names, as it
did for the run: for the demo's, the landed data and the cached base model, both inside the checkout:

    MT_LOCAL_DATA_ROOTS=$PWD python -m devtools.evaluate_again .demo/artifacts/translation_finetune/<week 2>

The copies are deleted afterwards, also when a measurement fails (its error is shown, and the exit status is not
0), and the kept translations put back as they were. The last line of stdout is one JSON object:
for "kept" and "decoded", a list (one per repeat) of the step's wall seconds, its step_seconds, and each role's BLEU
and whether its translations were kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tasks import config as configs
from tasks import layout

MODES = ("kept", "decoded")


def evaluate_copy(run_dir: Path, mode: str) -> dict:
    """The evaluate step on a copy of `run_dir` (its eval/ and what follows left out), in this process."""
    from tasks.evaluate import step

    copy = run_dir.with_name(f"{run_dir.name}-again-{mode}")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns(layout.EVAL, layout.GATE, "report.*", layout.PUBLISH))
    try:  # the copy sits beside the pipeline's runs: it must not outlive the measurement, whatever fails
        saved = json.loads((copy / layout.CONFIG).read_text())
        (copy / layout.CONFIG).write_text(json.dumps({**saved, "run_dir": str(copy), "run_id": copy.name}))
        config = configs.load(str(copy))
        kept = Path(config.state_uri(layout.DECODED))
        aside = kept.with_name(f"{layout.DECODED}-aside")
        shutil.copytree(kept, aside)  # put back afterwards as it was: what the copy keeps names a folder that goes
        if mode == "decoded":
            shutil.rmtree(kept)
        try:
            started = time.perf_counter()
            scores = step.run(config)
            seconds = time.perf_counter() - started
        finally:
            shutil.rmtree(kept, ignore_errors=True)
            aside.rename(kept)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return {"step_s": round(seconds, 2), **scores["step_seconds"],
            "roles": {role: {"bleu": scores[role]["bleu"], "kept": "reused_from" in scores[role]}
                      for role in layout.ROLES if scores.get(role)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(evaluate_copy(args.run_dir.resolve(), args.mode)))
        return
    figures: dict[str, list] = {mode: [] for mode in MODES}
    for _ in range(args.repeat):
        for mode in MODES:
            # Its stderr (the step's log, or why it failed) goes to the terminal; stdout ends with its figures.
            done = subprocess.run([sys.executable, "-m", "devtools.evaluate_again", str(args.run_dir), "--mode", mode],
                                  stdout=subprocess.PIPE, text=True)
            if done.returncode:
                sys.exit(f"evaluate_again: the {mode!r} measurement of {args.run_dir} failed (exit status "
                         f"{done.returncode}); its error is above")
            figures[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(mode, figures[mode][-1], flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
