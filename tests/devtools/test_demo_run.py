"""demo/run.py: what `make demo` prints for each week is its summary, under the week's heading, once; the
progress lines the demo logs (the base model's) still show."""

import subprocess
import sys

from support.runs import REPO_ROOT, cli_env, make_promoted_run
from tasks import config, layout, summary
from tasks.io import storage

SHOW = """
import logging, sys
from pathlib import Path
from demo import run
run._setup_logging()
logging.getLogger("demo.base_model").info("base model cached")
run._show_week(1, 0, Path(sys.argv[1]))
"""


def test_each_line_of_a_weeks_summary_is_shown_once(tmp_path, tiny_model):
    cfg = make_promoted_run(tmp_path, tiny_model)
    manifest = storage.read_json_or(cfg.uri(layout.PULL_MANIFEST))
    storage.write_json(cfg.uri(layout.PULL_MANIFEST), {**manifest, "message": "1 new object(s) under the data"})
    run_dir = cfg.run_dir
    lines = summary.format_summary(summary.summarize_run(config.load(run_dir)))
    done = subprocess.run([sys.executable, "-c", SHOW, run_dir], cwd=REPO_ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = done.stdout + done.stderr  # `make demo` shows both on the terminal
    assert "== week 1: translation_finetune success ==" in shown and "base model cached" in shown
    assert len(lines) > 3 and {line: shown.count(line) for line in lines} == {line: 1 for line in lines}
