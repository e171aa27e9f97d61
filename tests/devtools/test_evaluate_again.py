"""devtools.evaluate_again: a finished run's evaluate step again, with and without the kept translations, each in
a process of its own; the run directory and the pipeline's kept translations are left as they were."""

import json
import subprocess
import sys
from pathlib import Path

from support.corpora import digit_pairs
from support.runs import REPO_ROOT, cli_env, ready_to_evaluate
from tasks import layout
from tasks.evaluate import step as evaluate

SETTINGS = {"num_beams": 2, "max_source_length": 32, "min_test_sentences": 10}


def test_it_measures_the_step_with_and_without_the_kept_translations(tmp_path, tiny_model, digits_translator):
    sets = {"test": digit_pairs(40, seed=31), "general": digit_pairs(20, seed=32)}
    evaluate.run(ready_to_evaluate(tmp_path, "week-1", tiny_model, digits_translator, **sets, **SETTINGS))
    week2 = ready_to_evaluate(tmp_path, "week-2", tiny_model, tiny_model, digits_translator, **sets, **SETTINGS)
    evaluate.run(week2)
    kept = {p.relative_to(tmp_path): p.read_bytes() for p in Path(week2.state_uri(layout.DECODED)).rglob("*")
            if p.is_file()}
    run_dir = sorted(Path(week2.run_dir).rglob("*"))
    done = subprocess.run([sys.executable, "-m", "devtools.evaluate_again", week2.run_dir, "--repeat", "1"],
                          cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    (with_kept,), (decoded,) = figures["kept"], figures["decoded"]
    assert {r: v["kept"] for r, v in with_kept["roles"].items()} == {"base": True, "candidate": False,
                                                                     "champion": True}
    assert not any(v["kept"] for v in decoded["roles"].values())
    assert {r: v["bleu"] for r, v in with_kept["roles"].items()} == {r: v["bleu"] for r, v in decoded["roles"].items()}
    assert min(with_kept["step_s"], decoded["step_s"], with_kept["decoding"], decoded["decoding"]) > 0
    # Everything as it was: the run directory, and the kept translations to the byte.
    assert sorted(Path(week2.run_dir).rglob("*")) == run_dir
    assert {p.relative_to(tmp_path): p.read_bytes() for p in Path(week2.state_uri(layout.DECODED)).rglob("*")
            if p.is_file()} == kept
    assert not list(Path(week2.run_dir).parent.glob("*-again-*"))


def test_a_measurement_that_fails_says_why_and_leaves_no_copy_beside_the_runs(tmp_path, tiny_model):
    week = ready_to_evaluate(tmp_path, "week-1", tiny_model, tiny_model, test=digit_pairs(20, seed=33),
                             general=digit_pairs(10, seed=34), **SETTINGS)
    runs = sorted(Path(week.run_dir).parent.iterdir())
    # The run's config names local models that this environment's MT_LOCAL_DATA_ROOTS does not allow.
    env = {**cli_env(), "MT_LOCAL_DATA_ROOTS": str(tmp_path / "elsewhere")}
    done = subprocess.run([sys.executable, "-m", "devtools.evaluate_again", week.run_dir, "--repeat", "1"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "MT_LOCAL_DATA_ROOTS" in done.stderr and "base_model" in done.stderr  # the reason, not only an exit code
    assert sorted(Path(week.run_dir).parent.iterdir()) == runs  # no `<run>-again-kept` left to pass for a run
