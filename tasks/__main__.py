"""`python -m tasks <step> --run-dir URI`: run one pipeline step against a run directory.

This is the entrypoint of the training image and of the local launcher. The step reads `config.json` from
the run directory; its summary goes to the log, and the last line of stdout is that summary as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

STEPS = ("pull", "validate", "split", "train", "evaluate", "gate", "publish")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=STEPS, help="pipeline step to run")
    parser.add_argument("--run-dir", required=True, help="run directory: local path or s3://bucket/prefix")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from tasks import config

    module = importlib.import_module(f"tasks.{args.step}")
    summary = module.run(config.load(args.run_dir))
    print(json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
