"""What a run cost, as its summary, report.md and model card say it (tasks/cost.py)."""

import pytest

from tasks import cost


def _report(**changes) -> dict:
    report = {"steps": 450, "epochs_completed": 10, "tokens_seen": 4_000_000, "seconds_total": 600.0,
              "precision": "bf16", "device": "cuda:0", "world_size": 1, "resumed_from_step": None,
              "cuda_graphs": None}
    return {**report, **changes}


def test_training_on_gpus_counts_each_gpu_for_the_whole_training():
    line = cost.training(_report(world_size=4, seconds_total=3725.0, tokens_seen=7_450_000))
    assert line.startswith("450 steps (10 full epochs) in 1h02m on 4 × cuda, bf16: 4h08m of GPU time; ")
    assert line.endswith("≈7,450,000 tokens, ≈2,000 tokens/s")  # one rank's tokens × ranks: about right


def test_training_on_cpu_has_no_gpu_time_and_says_where_a_resumed_run_went_on():
    line = cost.training(_report(device="cpu", precision="fp32", seconds_total=192.4, resumed_from_step=200))
    assert line == ("450 steps (10 full epochs) in 3m12s on 1 × cpu, fp32; 4,000,000 tokens, 20,790 tokens/s; "
                    "resumed at step 200")


def test_training_says_how_cuda_graphs_ran_and_why_they_stopped():
    graphs = {"captured": 14, "replayed": 430, "eager": 6, "shapes": 14, "off": None}
    assert cost.training(_report(cuda_graphs=graphs)).endswith(
        "; CUDA graphs (last attempt): 430 steps replayed from 14 graphs, 6 ordinary")
    off = {**graphs, "shapes": 0, "off": "capturing a step of shape {...} failed: RuntimeError: boom"}
    assert cost.training(_report(cuda_graphs=off)).endswith(
        "6 ordinary, then off: capturing a step of shape {...} failed: RuntimeError: boom")


def test_training_says_where_the_step_spent_its_time_beside_the_loop():
    phases = {"loading": 3.21, "tokenizing": 41.5, "saving": 1.04}
    assert cost.training(_report(step_seconds=phases)).endswith(
        "tokens/s; beside the loop (last attempt): 3.2 s loading the model, 41.5 s tokenizing the pairs, 1.0 s "
        "saving it")
    # A process that saved nothing (another rank's report) lists what it timed.
    assert cost.training(_report(step_seconds={"loading": 3.21, "tokenizing": 41.5})).endswith(
        "41.5 s tokenizing the pairs")


def test_a_report_without_the_figures_costs_nothing_to_say():
    assert cost.training({}) is None
    assert cost.training({"best_step": 250, "train_pairs": 1200}) is None  # a report from before the figures
    assert cost.training(_report(steps=0)) is None


def test_decoding_lists_each_timed_model_and_the_engine():
    scores = {"test_sentences": 599, "base": {"seconds": 7.13}, "candidate": {"seconds": 7.0}, "champion": None,
              "decoding": {"engine": "ctranslate2", "device": "cuda", "precision": "int8_float16"}}
    assert cost.decoding(scores) == ("599 test sentences in 7.1 s by the base, 7.0 s by the candidate "
                                     "(ctranslate2 on cuda, int8_float16)")
    assert cost.decoding({"test_sentences": 599, "base": {"bleu": 3.1}}) is None
    phases = {"fetching": 0.41, "opening": 6.77, "decoding": 3.04, "scoring": 2.88}
    assert cost.decoding({**scores, "step_seconds": phases}).endswith(
        "(ctranslate2 on cuda, int8_float16); the step: 0.4 s fetching and 6.8 s opening the models, 3.0 s decoding "
        "every set, 2.9 s scoring and writing the results")


def test_durations_read_as_minutes_or_hours():
    assert [cost.duration(s) for s in (0, 59.4, 59.6, 192, 3599, 3600, 3725, 90000)] == \
        ["0m00s", "0m59s", "1m00s", "3m12s", "59m59s", "1h00m", "1h02m", "25h00m"]  # rounded: parts add up


def test_screening_says_how_many_pairs_the_screen_scored_where_and_how_long():
    screen = {"screened": 6434, "unscreened": 3, "misaligned": 126, "seconds": 23.04, "device": "cpu",
              "precision": "fp32", "model": "base"}
    assert cost.screening({"alignment": screen}) == "6,434 new pairs scored in 23.0 s on cpu, fp32"
    assert cost.screening({"alignment": {**screen, "reverse_model": "rev", "device": "cuda", "precision": "bf16"}}) \
        == "6,434 new pairs scored and back in 23.0 s on cuda, bf16"
    assert cost.screening({"alignment": {"skipped": "alignment_screen is off"}}) is None
    assert cost.screening({}) is None


@pytest.mark.parametrize("report", [
    {**_report(), "cuda_graphs": {"replayed": 1}},  # graph counts without their other keys
    {**_report(), "seconds_total": float("nan")},
    {**_report(), "seconds_total": "600", "steps": 3},
    {**_report(), "world_size": "two"},
    {**_report(), "tokens_seen": "many"},
    ["not", "a", "report"],
])
def test_a_record_the_line_cannot_read_gives_no_line_rather_than_an_error(report, caplog):
    assert cost.training(report) is None
    assert "cannot read the record" in caplog.text


@pytest.mark.parametrize("describe, record", [
    (cost.decoding, {"candidate": {"seconds": "slow"}}),
    (cost.decoding, {"candidate": {"seconds": 3.0}, "step_seconds": {"opening": 1.0}}),
    (cost.screening, {"alignment": {"seconds": 3.0}}),  # no count of screened pairs
    (cost.training_time, {"steps": 3, "seconds_total": float("inf")}),
])
def test_every_line_leaves_out_what_it_cannot_read(describe, record):
    assert describe(record) is None


def _launch(seconds, outcome="succeeded", launcher="kubernetes", gpus=2, started="2026-12-06T08:00:00+00:00"):
    return {"try": None, "launcher": launcher, "gpus": gpus, "started": started, "outcome": outcome,
            "seconds": seconds}


def test_launches_bill_every_try_of_every_step_in_the_order_they_ran():
    launched = {"evaluate": [_launch(70.0, started="2026-12-06T09:00:00+00:00")],
                "validate": [_launch(31.0, started="2026-12-06T07:00:00+00:00")],
                "train": [_launch(300.0, "killed"), _launch(3600.0, "timed out"), _launch(1242.4)]}
    assert cost.launches(launched) == (
        "validate 0m31s, train 1h25m over 3 tries (1 killed, 1 timed out), evaluate 1m10s: 1h27m from launch to end, "
        "2h54m of GPU time requested")


def test_pods_that_said_when_they_reached_a_node_bill_the_gpu_time_they_held():
    def on_node(seconds, waiting_s, on_node_s, outcome="succeeded"):
        return {**_launch(seconds, outcome), "pod": {"waiting_s": waiting_s, "on_node_s": on_node_s}}

    # Training waited 5 minutes for the autoscaler's node, then held its 2 GPUs for 20; its retry found one at once.
    launched = {"validate": [{**on_node(40.0, 2.0, 37.0), "started": "2026-12-06T07:00:00+00:00"}],
                "train": [on_node(1500.0, 300.0, 1200.0, "failed"), on_node(610.0, 0.0, 600.0)]}
    assert cost.launches(launched) == (
        "validate 0m40s, train 35m10s over 2 tries (1 failed): 35m50s from launch to end, "
        "1h01m of GPU time held (5m02s waiting for a node left out)")
    # A try whose pod said nothing (its status could not be read) counts from launch to end: at most what it held.
    launched["train"].append(_launch(100.0))
    assert cost.launches(launched).endswith("1h04m of GPU time requested (5m02s waiting for a node left out)")
    # A pod never placed on a node held no GPU.
    assert cost.launches({"train": [on_node(900.0, 895.0, 0.0, "failed")]}) == (
        "train 15m00s (1 failed): 15m00s from launch to end, 0m00s of GPU time held "
        "(14m55s waiting for a node left out)")


def test_the_local_launcher_reserves_no_gpu_and_says_so():
    line = cost.launches({"train": [_launch(50.8, launcher="local", gpus=None)], "validate": []})
    assert line == "train 0m51s: 0m51s from launch to end (local launcher: on the Airflow worker's own devices)"
    assert cost.launches({}) is None


@pytest.mark.parametrize("launched", [
    {"train": [{"seconds": 3.0}]},  # no start, no outcome
    {"train": [_launch("slow")]},
    {"train": [_launch(3.0, gpus="two")]},
    {"train": [{**_launch(3.0), "pod": {"on_node_s": "long"}}]},
    ["not", "a", "record"],
])
def test_launches_the_line_cannot_read_give_no_line(launched):
    assert cost.launches(launched) is None


def test_the_history_column_counts_the_train_step_from_launch_to_end_over_every_try():
    tries = [_launch(300.0, "killed"), _launch(542.0)]
    assert cost.training_time(_report(seconds_total=600.0), tries) == "14m02s on 1 × cuda, 2 tries"
    assert cost.training_time(_report(seconds_total=600.0), [_launch(642.0)]) == "10m42s on 1 × cuda"
    assert cost.training_time(_report(seconds_total=600.0), None) == "10m00s on 1 × cuda"  # no record: the loop's
    assert cost.training_time(_report(seconds_total=600.0), [{"seconds": "slow"}]) == "10m00s on 1 × cuda"
    # Tries that gave no model (no train report) still cost their time.
    assert cost.training_time({}, [_launch(1200.0, "failed"), _launch(665.0, "timed out")]) == \
        "31m05s, 2 tries, no model"
    assert cost.training_time({}, [_launch(60.0, "failed")]) == "1m00s, 1 try, no model"
    assert cost.training_time({}, None) is None


def test_a_launch_record_that_is_no_record_reads_as_none(tmp_path):
    from tasks.io import storage

    for text in ("not json {", "[1, 2]", "42"):
        (tmp_path / "launches.json").write_text(text)
        assert storage.read_record(str(tmp_path / "launches.json")) == {}
    assert storage.read_record(str(tmp_path / "missing.json")) == {}
    assert cost.tries({"train": "hand-edited"}, "train") is None and cost.tries([1], "train") is None


def test_a_run_of_several_pairs_adds_up_every_pairs_launches():
    """The bill of a weekly run over en-de and en-nl: both pairs' tries, held GPU time where the pod said it."""
    de = {"validate": [_launch(31.0)], "train": [_launch(300.0, "killed"), _launch(1242.4)]}
    nl = {"train": [{**_launch(600.0, gpus=4), "pod": {"waiting_s": 60.0, "on_node_s": 540.0}}],
          "evaluate": [_launch(70.0, launcher="local", gpus=None)]}
    assert cost.whole_run([de, nl, {}]) == (
        "3 language pairs, 5 launches: 37m23s from launch to end in all, 1h28m of GPU time requested "
        "(1m00s waiting for a node left out)")  # 2 × 1573.4 s + 4 × 540 s = 5306.8 s
    assert cost.whole_run([{}, {"train": []}]) is None
    assert cost.whole_run([de, ["not", "a", "record"]]) is None


def test_the_summary_of_a_run_of_several_pairs_says_what_they_cost_together(tmp_path, caplog):
    import logging

    from support.runs import make_run
    from tasks import layout, summary
    from tasks.io import storage

    de, nl = make_run(tmp_path / "de"), make_run(tmp_path / "nl", target_lang="nl")
    storage.write_json(de.uri(layout.LAUNCHES), {"train": [_launch(1200.0)]})
    storage.write_json(nl.uri(layout.LAUNCHES), {"train": [_launch(600.0, gpus=1)]})
    with caplog.at_level(logging.INFO, logger="tasks.summary"):
        line = summary.whole_run([de, nl])
    assert line == "2 language pairs, 2 launches: 30m00s from launch to end in all, 50m00s of GPU time requested"
    assert f"the whole run: {line}" in caplog.text
    assert summary.whole_run([de]) is None  # one pair: its own launches line is the whole bill
