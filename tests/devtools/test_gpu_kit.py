"""The kit for a lent GPU machine (devtools/gpu_kit.py) carries the versions the tests run with, which are the
training image's pins, as wheels for the machine's Python."""

import re

from devtools import gpu_kit


def test_the_kit_carries_the_training_images_pins_where_it_has_them():
    pinned = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (gpu_kit.REPO / "requirements-train.txt").read_text(),
                             flags=re.MULTILINE))
    carried = dict(pin.split("==") for pin in gpu_kit.pins())
    assert set(carried) == set(gpu_kit.CARRIED)
    shared = {name for name in carried if name in pinned}
    assert {"transformers", "datasets", "pydantic", "polib", "zstandard", "fasttext-predict"} <= shared
    assert {name: carried[name] for name in shared} == {name: pinned[name] for name in shared}


def test_the_download_is_wheels_only_for_the_machines_python_into_the_ignored_folder(capsys):
    gpu_kit.main(["--dry-run", "--python-version", "3.12"])
    command = capsys.readouterr().out.split()
    assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command
    assert command[command.index("--only-binary") + 1] == ":all:"
    assert command[command.index("--python-version") + 1] == "3.12"
    assert command[command.index("-d") + 1] == str(gpu_kit.REPO / ".whl")
    assert set(gpu_kit.pins()) <= set(command)
    assert "/.whl/" in (gpu_kit.REPO / ".gitignore").read_text().split()  # carried, never committed
