"""The offline demo: two weeks of the `translation_finetune` DAG through Airflow, end to end.

1. builds (or reuses) the demo base model: a small Marian model pretrained on bundled general-domain
   sentences (demo/base_model.py), cached in .cache/demo;
2. migrates a SQLite metadata DB in a project-local AIRFLOW_HOME (.demo/airflow);
3. starts a local Hugging Face Hub-compatible server (devtools/local_hub.py) as the publish target, and
   hands its token to Airflow as the `huggingface_default` connection;
4. week 1: most of the bundled GNU software-message catalogs land in .demo/incoming; `airflow dags test`
   pulls, validates and splits them (freezing the test set), fine-tunes the base model, gates it and
   publishes it;
5. week 2: one more catalog lands; the retrain trains on both weeks' data, continuing from week 1's
   published model (`init_from: champion`), and faces that model as the champion;
6. prints what each week did: rows, base/candidate/champion BLEU, the gate's decision, where it was published.

Each `make demo` starts from an empty .demo/ (the cached base model is kept).

    python -m demo.run            (or: make demo)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from demo import base_model
from tasks import config, summary

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".demo"
HUB_TOKEN = "hf_demo_write_token"
HUB_REPO = "demo/opus-mt-en-de-gnu-messages"

DOMAIN = ROOT / "demo" / "data" / "domain"
INCOMING = WORK / "incoming"
WEEK_2 = ["wget.de.jsonl"]  # lands a week later; every other catalog is week 1's data

# The run's settings: the production defaults, with what a 2-core CPU and a small model need instead.
RUN_CONF = {
    "data_uri": str(INCOMING),
    "base_model": str(base_model.CACHE),
    "hub_repo_id": HUB_REPO,
    "model_license": "gpl-3.0",  # the GNU catalogs it is trained on are GPL-3.0-or-later
    "max_chars": 100,  # the CPU budget: long help texts would cost most of the training time
    "min_clean_pairs": 1000,
    "learning_rate": 1e-3,  # a small model (1M parameters): a higher rate than opus-mt's 2e-5
    "warmup_steps": 0.05,
    "max_tokens_per_batch": 1024,
    "num_train_epochs": 20,
    "max_train_minutes": 0.75,  # the budget of each week's fine-tuning; the schedule is fitted to it
    "precision": "fp32",  # bf16 destabilised this small model at this learning rate
    "max_source_length": 64,
    "max_target_length": 64,
    "eval_every_steps": 100,
    "num_beams": 1,
}
# Week 2 continues from week 1's model. Measured on 2 cores: retrained from the base for the same minute, on
# both weeks' data, the candidate scored 22.17 against the champion's 23.40 and was refused; a minute a week
# cannot catch up with a model that already had one. (45 s a week keeps the first `make demo` under 12 min.) (With GPU hours to spend, the default `init_from: base`
# retrains on the whole corpus and forgets nothing; see README, "Continue from the champion".)
WEEK_2_CONF = {"init_from": "champion"}


def _env(hub_url: str | None = None) -> dict:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(WORK / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MT_ARTIFACT_ROOT": str(WORK / "artifacts"),
        # What a run may name locally: the landed data and the cached base model; not the checkout, which holds
        # the artifact store (.demo/artifacts) with every run's files and the frozen test set.
        "MT_LOCAL_DATA_ROOTS": os.pathsep.join([str(INCOMING), str(base_model.CACHE)]),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
        "HF_HOME": str(WORK / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
    })
    if hub_url:
        env["HF_ENDPOINT"] = hub_url
        env["AIRFLOW_CONN_HUGGINGFACE_DEFAULT"] = json.dumps(
            {"conn_type": "generic", "password": HUB_TOKEN, "extra": {"endpoint": hub_url}})
    return env


def _airflow(*args: str, env: dict, log_file: Path) -> int:
    with log_file.open("a") as log:
        return subprocess.run([str(Path(sys.executable).with_name("airflow")), *args], env=env, stdout=log,
                              stderr=subprocess.STDOUT).returncode


def _land(names: list[str]) -> None:
    """New data lands in the watched folder, as a data team's export would."""
    INCOMING.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(DOMAIN / name, INCOMING / name)


def _week(number: int, hub_url: str, log_file: Path) -> int:
    names = [p.name for p in sorted(DOMAIN.iterdir()) if (p.name in WEEK_2) == (number == 2)]
    _land(names)
    print(f"    week {number}: {len(names)} file(s) land in {INCOMING.relative_to(ROOT)} "
          f"({', '.join(names) if len(names) < 4 else f'{names[0]} … {names[-1]}'}); airflow dags test ...",
          flush=True)
    conf = {**RUN_CONF, **WEEK_2_CONF} if number == 2 else RUN_CONF
    code = _airflow("dags", "test", "translation_finetune", "--conf", json.dumps(conf), env=_env(hub_url),
                    log_file=log_file)
    runs = sorted((p for p in (WORK / "artifacts" / "translation_finetune").iterdir()
                   if (p / "config.json").exists()), key=lambda p: p.stat().st_mtime)
    _show_week(number, code, runs[-1])
    return code


def _show_week(number: int, code: int, run_dir: Path) -> None:
    result = summary.summarize_run(config.load(str(run_dir)))
    print(f"\n== week {number}: translation_finetune " + ("success" if code == 0 else "FAILED") + " ==")
    for line in summary.format_summary(result):
        print("  " + line)
    print()


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # summarize_run logs each line of the summary, which _show_week prints under its heading: once is enough.
    logging.getLogger(summary.__name__).setLevel(logging.WARNING)


def main() -> int:
    _setup_logging()
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)  # every demo starts from week 1
    WORK.mkdir()
    log_file = WORK / "demo.log"
    # This process reads the runs' configs too: the same local roots, and the same quiet libraries.
    os.environ.update({k: v for k, v in _env().items()
                       if k.startswith(("HF_", "TOKENIZERS", "TRANSFORMERS", "MT_LOCAL_DATA_ROOTS"))})

    print("1/5 base model (pretrained once on demo/data/general, then cached) ...", flush=True)
    base_model.build()
    print(f"2/5 Airflow metadata DB in {WORK / 'airflow'} ...", flush=True)
    if _airflow("db", "migrate", env=_env(), log_file=log_file):
        print(f"airflow db migrate failed; see {log_file}")
        return 1
    print("3/5 local Hub-compatible server ...", flush=True)
    hub = subprocess.Popen([sys.executable, "-m", "devtools.local_hub", "--root", str(WORK / "hub"), "--port", "0",
                            "--token", HUB_TOKEN], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        hub_url = hub.stdout.readline().strip()
        print(f"    {hub_url}; the DAG's log: .demo/demo.log", flush=True)
        print("4/5 week 1", flush=True)
        code = _week(1, hub_url, log_file)
        print("5/5 week 2: new data, the retrain learns from both weeks and faces week 1's model", flush=True)
        code = _week(2, hub_url, log_file) or code
    finally:
        hub.terminate()
        hub.wait(timeout=10)
    print(f"  hub: {hub_url}/{HUB_REPO} (stored under {WORK / 'hub'})")
    print(f"  demo took {time.monotonic() - started:.0f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
