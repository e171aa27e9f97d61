"""make bench-gpu's smoke mode: every benchmark runs, the profile is written, the headline figures are there."""

import json

from support.runs import tiny_bench
from tasks.train import automatic


def test_tiny_gpu_bench_runs_every_part_and_writes_the_profile(tmp_path):
    figures = tiny_bench("gpu.py", "--out", str(tmp_path))
    for part in ("train", "eval", "alignment", "profile", "profile_graphs"):
        assert "error" not in figures[part], figures[part]
    for key in ("train_ratio", "time_to_loss_ratio", "eval_ratio", "eval_scoring_ratio", "alignment_pairs_per_s",
                "project_tokens_per_s"):
        assert figures[key] is not None and figures[key] > 0, key
    assert figures["profile"]["steps"] == 10 and figures["profile"]["top"]
    assert figures["eval_engine_fallback"] == []  # CTranslate2 decoded here: nothing was passed over
    # The next lease compares the old 5 % warmup with the automatic one (which follows the peak rate) at the
    # time-to-quality run (the plateau), and reads both against the loss of a model that ignores its source.
    by_warmup = figures["train"]["time_to_loss_by_warmup"]["0.05"]
    assert by_warmup["project_time_to_loss_steps"] > 0
    assert by_warmup["warmup_steps"] == int(0.05 * by_warmup["scheduled_steps"])
    assert figures["train"]["warmup_steps"] == int(automatic.auto_warmup(figures["train"]["project_learning_rate"])
                                                   * figures["train"]["scheduled_steps"])
    assert 0 < figures["train"]["unigram_loss"] < figures["train"]["initial_loss"]
    # ... and times a smaller batch to the same loss, its rate and warmup following it as the run config's would.
    smaller = figures["train"]["time_to_loss_by_batch"]["256"]
    assert smaller["learning_rate"] == automatic.auto_learning_rate(256)
    assert smaller["warmup_steps"] == int(automatic.auto_warmup(smaller["learning_rate"]) * smaller["scheduled_steps"])
    # CUDA graphs against ordinary steps: measured on a GPU, said so elsewhere; the graphs' profile is written.
    assert figures["train"]["graphs"] == {"skipped": "CUDA graphs need a CUDA device"}
    assert figures["graphs_ratio"] is None and (tmp_path / "profile-graphs.txt").exists()
    # ... and the project's engine at a second decoding batch size.
    assert figures["eval_ratio_by_batch_sentences"]["64"] > 0
    assert figures["eval"]["by_batch_sentences"]["64"]["identical_outputs_vs_transformers"] > 0
    table = (tmp_path / "profile.txt").read_text()
    assert "Name" in table
    # Only steps are profiled: the model is built and moved before (its random init and weight uploads are not
    # a step's work, and the uploads would count as pageable copies).
    assert "aten::normal_" not in table
    assert json.loads((tmp_path / "bench-gpu.json").read_text())["train"] == figures["train"]


def _gpu_bench_module():
    import sys

    from support.runs import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import gpu

    return gpu


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "part.py"
    path.write_text("import json, sys, time\n" + body)
    return str(path)


def test_a_part_past_its_time_limit_keeps_the_figures_it_printed(tmp_path):
    """A lease is 15 minutes: the train bench running past its limit in its last comparison must not take the
    throughput and time-to-quality figures it printed before with it."""
    gpu = _gpu_bench_module()
    script = _script(tmp_path, 'print(json.dumps({"ratio": 3.1}), flush=True)\n'
                               'print("a log line", flush=True)\n'
                               'print(json.dumps({"ratio": 3.1, "time_to_loss_ratio": 7.2}), flush=True)\n'
                               'time.sleep(60)\n'
                               'print(json.dumps({"never": True}))\n')
    figures = gpu._run("train", [script], limit=3)
    assert figures == {"ratio": 3.1, "time_to_loss_ratio": 7.2, "error": "train ran past its 3 s"}


def test_a_part_that_fails_keeps_its_figures_and_says_why(tmp_path):
    gpu = _gpu_bench_module()
    script = _script(tmp_path, 'print(json.dumps({"ratio": 3.1}), flush=True)\n'
                               'raise SystemExit("CUDA out of memory in the comparison run")\n')
    figures = gpu._run("train", [script], limit=30)
    assert figures["ratio"] == 3.1
    assert figures["error"].startswith("train failed (1)") and "CUDA out of memory" in figures["error"]
    silent = gpu._run("eval", [_script(tmp_path, 'print("no figures here")\n')], limit=30)
    assert silent == {"error": "eval printed no figures: no figures here"}
    nothing = gpu._run("eval", [_script(tmp_path, 'sys.exit(3)\n')], limit=30)
    assert nothing["error"].startswith("eval failed (3)") and set(nothing) == {"error"}


def test_the_graphs_profile_says_what_the_steps_ran_as(tmp_path):
    """A capture that fails (or a device without CUDA) leaves graphs off: the profile meant for graph replays then
    says so, instead of passing ordinary steps off as replays."""
    gpu = _gpu_bench_module()
    figures = gpu.profile(tiny=True, out=tmp_path, graphs=True)
    assert figures["steps"] == 10 and "cuda_graphs" in figures
    assert figures["cuda_graphs"] is None  # this CPU ran ordinary steps (on CUDA: captured, replayed, eager, off)


def test_a_profile_that_hangs_costs_only_its_own_figures(tmp_path, monkeypatch, capsys):
    """The profiles ran in the bench's own process with no limit: a profiler that hung over a graph capture took
    the rest of the lease's call, and the JSON line with it. Now they are a part like the others: the one that
    hangs loses its figures, the line still comes, and every part's limit fits the issue's 8 minutes."""
    import sys

    gpu = _gpu_bench_module()
    hangs = _script(tmp_path, 'print(json.dumps({"profile": {"steps": 10, "gpu_busy_share": 0.4}}), flush=True)\n'
                              'time.sleep(60)\n')
    real_run, limits = gpu._run, {}

    def run(name, argv, limit):
        limits[name] = limit
        if name == "profile":  # the graphs' profile never returns
            return real_run(name, [hangs], 2)
        return {"device": "a GPU", "ratio": 3.0, "project_pairs_per_s": 9.0}

    monkeypatch.setattr(gpu, "_run", run)
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--tiny", "--out", str(tmp_path / "out")])
    gpu.main()
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["profile"] == {"steps": 10, "gpu_busy_share": 0.4} and line["gpu_busy_share"] == 0.4
    assert line["profile_graphs"] == {"error": "profile ran past its 2 s"} and line["gpu_busy_share_graphs"] is None
    assert line["train_ratio"] == line["eval_ratio"] == 3.0 and line["alignment_pairs_per_s"] == 9.0
    written = json.loads((tmp_path / "out" / "bench-gpu.json").read_text())
    assert written["profile_graphs"] == line["profile_graphs"] and "_line" not in written
    assert limits == gpu.LIMITS and sum(limits.values()) <= 8 * 60


def test_the_profile_part_reports_each_profile_and_a_failed_one_in_its_place(tmp_path, monkeypatch, capsys):
    gpu = _gpu_bench_module()

    def profile(tiny, out, graphs=False):
        if graphs:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return {"steps": 10}

    monkeypatch.setattr(gpu, "profile", profile)
    gpu.profiles(True, tmp_path)
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert lines[0] == {"profile": {"steps": 10}}  # printed before the graphs' profile started
    assert lines[-1]["profile_graphs"]["error"].startswith("profile_graphs failed: CUDA error")


def test_parts_run_from_the_checkout_whatever_the_working_directory(tmp_path, monkeypatch):
    """`python /path/to/bench/gpu.py` from another folder: the parts' relative paths are the checkout's."""
    gpu = _gpu_bench_module()
    monkeypatch.chdir(tmp_path)
    figures = gpu._run("where", ["-c", "import json, os; print(json.dumps({'cwd': os.getcwd()}))"], limit=30)
    assert figures["cwd"] == str(gpu.REPO)


def test_the_profile_part_writes_where_the_bench_was_told_from_any_working_directory(tmp_path, monkeypatch):
    """`--out out` from another folder than the checkout: bench-gpu.json went there, while the profile part (run in
    the checkout) wrote profile.txt under the checkout's own `out`."""
    import sys

    gpu = _gpu_bench_module()
    argvs = {}
    monkeypatch.setattr(gpu, "_run", lambda name, argv, limit: argvs.setdefault(name, argv) and {})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--tiny", "--out", "out"])
    gpu.main()
    profile_argv = argvs["profile"]
    assert profile_argv[profile_argv.index("--out") + 1] == str(tmp_path / "out")
    assert (tmp_path / "out" / "bench-gpu.json").exists()
