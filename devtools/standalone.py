"""Start `airflow standalone` with this project's DAGs and plugins, and stop it cleanly.

    python -m devtools.standalone [--port 8080]      (or: make airflow)

AIRFLOW_HOME is the project-local `.airflow/`. Before starting, the metadata DB is migrated and the `gpu`
pool is created (size 2, or --gpu-slots): the DAGs' train and evaluate tasks run in it, and the scheduler
does not schedule tasks of a pool that does not exist. Ctrl-C (or SIGTERM) stops the children first (API
server, scheduler, DAG processor, triggerer), then `airflow standalone` itself: stopping only the parent
leaves a scheduler behind that hangs.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


GPU_POOL = "gpu"
GPU_SLOTS = 2  # how many train/evaluate tasks run at once on one machine; match the GPUs you have


def environment(home: Path, port: int, dags: Path = ROOT / "dags") -> dict:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "MT_ARTIFACT_ROOT": env.get("MT_ARTIFACT_ROOT", str(home / "artifacts")),
        # Local folders a trigger may name (data, base models, registries): this checkout, unless set.
        "MT_LOCAL_DATA_ROOTS": env.get("MT_LOCAL_DATA_ROOTS", str(ROOT)),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        # `airflow standalone` starts its components as `airflow ...` found on PATH: this venv's, even when
        # it is not activated (make airflow runs .venv/bin/python directly).
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    })
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for servers started by tests and tools)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM the children, wait, then the parent; SIGKILL whatever is still alive after `timeout`."""
    try:
        parent = psutil.Process(proc.pid)
        children = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for child in children:
        try:
            child.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        child.kill()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prepare(env: dict, gpu_slots: int = GPU_SLOTS) -> None:
    """Migrate the metadata DB and create the gpu pool (both idempotent)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    for command in (["db", "migrate"],
                    ["pools", "set", GPU_POOL, str(gpu_slots), "train and evaluate steps (one per GPU)"]):
        subprocess.run([airflow, *command], env=env, check=True, stdout=subprocess.DEVNULL)


def start(home: Path, port: int, dags: Path = ROOT / "dags", gpu_slots: int = GPU_SLOTS, extra_env=None,
          **popen) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    env = {**environment(home, port, dags), **(extra_env or {})}
    prepare(env, gpu_slots)
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.Popen([str(airflow), "standalone"], env=env, start_new_session=True, **popen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--home", type=Path, default=ROOT / ".airflow")
    parser.add_argument("--gpu-slots", type=int, default=GPU_SLOTS, help="size of the gpu pool")
    args = parser.parse_args()
    proc = start(args.home, args.port, gpu_slots=args.gpu_slots)
    print(f"airflow standalone (pid {proc.pid}) on http://localhost:{args.port}; AIRFLOW_HOME={args.home}\n"
          f"the admin password is printed below and stored in {args.home}/simple_auth_manager_passwords.json"
          ".generated; Ctrl-C stops everything", flush=True)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while proc.poll() is None and not stopping:
        time.sleep(0.5)
    stop(proc)
    print("airflow standalone stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
