"""The README's pictures of the grid and of the promotion history, taken from the demo's real runs.

    python -m devtools.demo_screenshots [--out docs]      (make screenshots runs it after the live tests)

It reads what `make demo` left in .demo/ (the SQLite metadata DB with the two weeks' runs and their notes, the
artifact store with their reports) and runs `make demo` first when that is missing. It starts Airflow's API
server alone on 127.0.0.1 over that database (nothing is scheduled: the runs are done), logs in through the
UI's own form in Debian's headless Chromium, as a person would, and saves

- grid-run-note.png: week 2's run, its tasks and the note the listener wrote (promoted, BLEU gain, revision);
- promotion-history.png: the history page, BLEU rising from the base through week 1 to week 2.

The server is stopped, with its children, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from demo import run as demo
from devtools import standalone

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "translation_finetune"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The network is closed where these run: without these flags Chromium stalls on connection attempts.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def demo_runs() -> list[str]:
    """The demo's finished runs, oldest first (their run ids, from each run's config.json)."""
    folder = demo.WORK / "artifacts" / DAG_ID
    configs = sorted(folder.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return [json.loads(p.read_text())["run_id"] for p in configs]


def start_api_server(port: int, password: str) -> subprocess.Popen:
    home = demo.WORK / "airflow"
    passwords = home / "screenshots-passwords.json"
    passwords.write_text(json.dumps({"admin": password}))
    env = {**demo._env(), "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port),
           "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords)}
    log = (demo.WORK / "screenshots.log").open("w")
    return subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "api-server"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"airflow api-server exited with {server.returncode}; see .demo/screenshots.log")
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"airflow api-server did not answer on {url} within {timeout:.0f}s")


def log_in(page, url: str, password: str) -> None:
    """Through the Airflow UI's own login form, as a person would (the simple auth manager's admin)."""
    page.goto(f"{url}/auth/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda at: "/auth/login" not in at, timeout=60_000)


def take(url: str, password: str, run_id: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            log_in(page, url, password)
            page.goto(f"{url}/dags/{DAG_ID}/runs/{run_id}")
            page.get_by_text("promoted: +").first.wait_for(timeout=60_000)  # the listener's note
            page.get_by_text("summary", exact=True).first.wait_for()  # the grid's task list has rendered
            shots = [out / "grid-run-note.png"]
            page.screenshot(path=str(shots[-1]))
            page.goto(f"{url}/plugin/promotion-history")
            frame = page.frame_locator("iframe")
            frame.locator("svg.bleu-chart circle").first.wait_for(timeout=60_000)
            shots.append(out / "promotion-history.png")
            page.set_viewport_size({"width": 1400, "height": 1400})  # the chart and both weeks' rows
            page.screenshot(path=str(shots[-1]))
            return shots
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    if len(demo_runs()) < 2:
        print("no finished demo in .demo/: running `make demo` first", flush=True)
        if demo.main() != 0 or len(demo_runs()) < 2:
            print("the demo failed; see .demo/demo.log")
            return 1
    args.out.mkdir(parents=True, exist_ok=True)
    port, password = standalone.free_port(), secrets.token_urlsafe(12)
    url = f"http://127.0.0.1:{port}"
    server = start_api_server(port, password)
    try:
        wait_ready(url, server)
        for shot in take(url, password, demo_runs()[-1], args.out):
            print(f"saved {shot}")
    finally:
        standalone.stop(server)  # its uvicorn workers first, then the server
    return 0


if __name__ == "__main__":
    sys.exit(main())
