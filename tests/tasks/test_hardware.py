"""`python -m tasks` runs with tcmalloc where it is installed, and leaves a deployment's own preload alone."""

import subprocess
from pathlib import Path

import pytest

from support.runs import cli, cli_env
from tasks import hardware

REPO = Path(__file__).resolve().parents[2]


def test_tcmalloc_is_preloaded_only_where_installed_and_nothing_is_preloaded(tmp_path):
    library = tmp_path / "x86_64-linux-gnu" / "libtcmalloc_minimal.so.4"
    library.parent.mkdir()
    library.write_bytes(b"")
    patterns = (str(tmp_path / "*-linux-gnu" / "libtcmalloc_minimal.so.4"),)
    env = hardware.tcmalloc_env({"PATH": "/usr/bin"}, patterns, "linux")
    assert env == {"PATH": "/usr/bin", "LD_PRELOAD": str(library), **hardware.TCMALLOC_QUIET}
    # Set by the deployment (jemalloc, or empty for glibc's malloc), or by the start before: left alone.
    assert hardware.tcmalloc_env({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, patterns, "linux") is None
    assert hardware.tcmalloc_env({"LD_PRELOAD": ""}, patterns, "linux") is None
    assert hardware.tcmalloc_env({}, (str(tmp_path / "nowhere" / "*.so.4"),), "linux") is None
    assert hardware.tcmalloc_env({}, patterns, "darwin") is None


def _allocator_of_a_step(env: dict) -> str:
    """The allocator a real `python -m tasks` process reports (it logs it before reading the run's config, which
    here does not exist)."""
    done = subprocess.run(cli("validate", "/nonexistent/run"), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    (line,) = [line for line in done.stderr.splitlines() if "memory allocator:" in line]
    return line.rsplit(": ", 1)[1]


@pytest.mark.skipif(hardware.tcmalloc_env({}) is None, reason="tcmalloc is not installed here "
                                                             "(apt-get install libtcmalloc-minimal4; .ci/run does)")
def test_a_step_process_runs_with_tcmalloc_where_it_is_installed():
    env = {k: v for k, v in cli_env().items() if k != "LD_PRELOAD"}
    assert _allocator_of_a_step(env) == "tcmalloc"
    assert _allocator_of_a_step({**env, "LD_PRELOAD": ""}) == "malloc"


def test_the_images_install_the_tcmalloc_that_the_entrypoint_preloads():
    for image in ("train.Dockerfile", "airflow.Dockerfile"):
        assert "libtcmalloc-minimal4" in (REPO / "docker" / image).read_text()


@pytest.mark.parametrize("v2, v1, cpus", [
    ("250000 100000\n", None, 3),  # a pod limited to 2.5 CPUs may run 3 threads' worth, no more
    ("max 100000\n", None, "all"),  # no limit
    (None, ("150000", "100000"), 2),  # cgroup v1
    (None, ("-1", "100000"), "all"),
    (None, None, "all"),  # no cgroup files: the affinity mask alone
])
def test_usable_cpus_keep_within_the_containers_cpu_limit(tmp_path, monkeypatch, v2, v1, cpus):
    """A pod's `limits.cpu` is a cgroup quota: its affinity mask still shows every CPU of the node."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    for name, text in (("CGROUP_CPU_MAX", v2), ("CGROUP_V1_QUOTA", v1 and v1[0]), ("CGROUP_V1_PERIOD", v1 and v1[1])):
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(hardware, name, path)
    assert hardware.usable_cpus() == (64 if cpus == "all" else cpus)
