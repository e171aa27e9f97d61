import json
import shutil
import subprocess
import sys
from pathlib import Path

from support.corpora import digit_pairs
from support.runs import cli, cli_env, kill_once_checkpointed, make_run, write_splits
from tasks import cost, layout
from tasks.io import storage
from tasks.train import automatic
from tasks.train import loop as trainloop
from tasks.train import step as train


def _digit_run(tmp_path, tiny_model, **params):
    cfg = make_run(tmp_path / "artifacts", base_model=str(tiny_model), learning_rate=3e-3, warmup_steps=0.1,
                   max_tokens_per_batch=512, **params)
    pairs = digit_pairs(1200, seed=5)
    write_splits(cfg, tmp_path, train=pairs[:1000], validation=pairs[1000:1100], test=pairs[1100:])
    return cfg


def test_training_saves_the_best_model_and_its_report(tmp_path, tiny_model):
    cfg = _digit_run(tmp_path, tiny_model, num_train_epochs=2, eval_every_steps=20)
    report = train.run(cfg)
    assert report["steps"] > 20 and report["best_step"] > 0
    model_dir = Path(cfg.uri(layout.MODEL))
    assert {"config.json", "model.safetensors", "vocab.json", "source.spm", layout.TRAIN_REPORT_NAME} <= \
        {p.name for p in model_dir.iterdir()}
    assert train.result(cfg) == json.loads((model_dir / layout.TRAIN_REPORT_NAME).read_text())
    _assert_validation_curve(report, every=20)
    assert train.run(cfg) == report  # a retry finds the finished model and does not train again


def _assert_validation_curve(report: dict, every: int) -> None:
    """The report's validation losses, in order: one every `every` steps, the best of them the model kept."""
    steps = [step for step, _ in report["validations"]]
    assert steps[:-1] == list(range(every, every * len(steps), every)) and steps[-1] in (steps[-2] + every,
                                                                                           report["steps"])
    assert min(loss for _, loss in report["validations"]) == report["best_validation_loss"]
    assert dict(report["validations"])[report["best_step"]] == report["best_validation_loss"]


def test_a_killed_training_resumes_from_its_last_checkpoint(tmp_path, tiny_model):
    cfg = _digit_run(tmp_path, tiny_model, max_steps=300, num_train_epochs=100, checkpoint_every_steps=20,
                     eval_every_steps=20, early_stopping_patience=0)
    saved = kill_once_checkpointed(cfg, within=120)
    assert train.result(cfg) is None
    assert 0 < saved < 300

    retry = subprocess.run(cli("train", cfg.run_dir), env=cli_env(), capture_output=True, text=True, timeout=900)
    assert retry.returncode == 0, retry.stderr[-3000:]
    report = train.result(cfg)
    assert report["resumed_from_step"] >= saved
    assert report["steps"] == 300
    _assert_validation_curve(report, every=20)  # the validations before the kill are in the resumed run's report
    assert f"resuming from step-{report['resumed_from_step']:08d}" in retry.stderr
    # What training cost counts the killed attempt's time up to its checkpoint, and says the run was resumed.
    assert report["seconds_total"] > report["seconds"] > 0
    line = cost.training(report)
    assert line.startswith("300 steps ") and f"; resumed at step {report['resumed_from_step']};" in line
    # And what the step spent beside the loop: the retry's loading, tokenizing and saving.
    assert set(report["step_seconds"]) == {"loading", "tokenizing", "saving"} and "s tokenizing the pairs" in line


def test_training_on_s3_mirrors_checkpoints_and_model(tmp_path, tiny_model, s3):
    s3.create_bucket(Bucket="runs")
    cfg = make_run("s3://runs/artifacts", base_model=str(tiny_model), max_steps=30, num_train_epochs=100,
                   checkpoint_every_steps=10,
                   max_tokens_per_batch=512, early_stopping_patience=0)
    pairs = digit_pairs(300, seed=6)
    write_splits(cfg, tmp_path, train=pairs[:250], validation=pairs[250:])
    report = train.run(cfg)
    assert report["steps"] == 30
    keys = {o.relpath for o in storage.list_objects(cfg.run_dir)}
    assert f"{layout.MODEL}/{layout.TRAIN_REPORT_NAME}" in keys and f"{layout.MODEL}/model.safetensors" in keys
    assert storage.read_text(cfg.uri(layout.CHECKPOINTS, "LATEST")) == "step-00000030"
    assert "checkpoints/step-00000030/state.pt" in keys


def test_an_automatic_batch_size_is_chosen_for_the_device_and_reported(tmp_path, tiny_model):
    cfg = make_run(tmp_path / "artifacts", base_model=str(tiny_model), max_tokens_per_batch=0, max_steps=2,
                   early_stopping_patience=0)
    write_splits(cfg, tmp_path, train=digit_pairs(300, seed=5), validation=digit_pairs(20, seed=6))
    report = train.run(cfg)
    assert report["tokens_per_batch"] == automatic.AUTO_TOKENS_PER_BATCH["cpu"] == 512
    assert report["settings"]["loop"]["max_tokens_per_batch"] == 0  # the run config keeps saying "automatic"



def test_a_time_budget_stops_training_and_keeps_the_best_model(tmp_path, tiny_model):
    cfg = _digit_run(tmp_path, tiny_model, num_train_epochs=1000, max_train_minutes=0.1, eval_every_steps=10,
                     early_stopping_patience=0)
    report = train.run(cfg)
    # Stopped by the budget: either when it was spent or at the end of the schedule it was fitted to.
    assert report["stopped_by"] == "time budget"
    assert 3 <= report["seconds_total"] < 60  # near the budget of 6 s, not after 1000 epochs
    assert 0 < report["best_step"] <= report["steps"]
    assert storage.exists(cfg.uri(layout.MODEL, "model.safetensors"))


def test_init_from_champion_continues_from_the_published_model(tmp_path, tiny_model, digits_translator):
    import shutil

    cfg = _digit_run(tmp_path, tiny_model, init_from="champion", max_steps=5)
    storage.write_json(cfg.uri(layout.CHAMPION_RECORD), {"found": False, "reason": "nothing published yet"})
    assert train.starting_model(cfg, tmp_path) == (str(tiny_model), f"base {tiny_model}")
    shutil.copytree(digits_translator, cfg.uri(layout.CHAMPION))
    storage.write_json(cfg.uri(layout.CHAMPION_RECORD), {"found": True, "label": "org/digits@run-1",
                                                         "model_uri": cfg.uri(layout.CHAMPION)})
    report = train.run(cfg)
    assert report["init_from"] == "champion org/digits@run-1"
    # The champion already reads digits: a few steps from it are far better than a few steps from scratch.
    scratch = train.run(_digit_run(tmp_path / "scratch", tiny_model, max_steps=5))
    assert report["best_validation_loss"] < scratch["best_validation_loss"] / 2


def test_the_report_lists_every_object_the_model_learned_from(tmp_path, tiny_model):
    cfg = _digit_run(tmp_path, tiny_model, max_steps=2)
    storage.write_json(cfg.uri(layout.PULL_MANIFEST), {
        "objects": [{"uri": "s3://d/in/new.jsonl", "etag": "e2"}],
        "carried": [{"uri": "s3://d/in/old.jsonl", "etag": "e1"}]})
    assert train.run(cfg)["training_objects"] == [{"uri": "s3://d/in/new.jsonl", "etag": "e2", "how": "new"},
                                                  {"uri": "s3://d/in/old.jsonl", "etag": "e1", "how": "carried"}]


def _budget_run(**fields):
    """A stand-in for loop._Training with what its time-budget methods read, and those methods bound to it."""
    from types import SimpleNamespace

    run = SimpleNamespace(
        settings=SimpleNamespace(max_seconds=100.0, warmup_steps=0.1), stopped=False, stop_reason=None,
        progress=SimpleNamespace(step=0, seconds=0.0, best_step=0), seconds_before=0.0, started=0.0,
        steps_at_start=0, total_steps=1000, planned_steps=1000, warmup=100, budget_ends_schedule=False,
        world_size=1, pace_mark=None, _validate=lambda: None, _settle=lambda: None, **fields)
    run._fit_the_schedule = lambda *args: trainloop._Training._fit_the_schedule(run, *args)
    return run


def test_a_time_budget_fits_the_schedule_both_ways_as_the_pace_becomes_known(monkeypatch):
    """The first steps are often slower than the rest: the plan shrinks to what the budget fits at their pace, and
    grows back once the steps since show a faster one (never past what epochs and max_steps allow). It grows only
    in its first half: later, the learning rate would jump back up a decay nearly done (from 0, at its end)."""
    from types import SimpleNamespace

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(trainloop.time, "monotonic", lambda: clock.now)
    run = _budget_run()

    def at(step, seconds, validated=True):
        run.progress.step, clock.now = step, seconds
        trainloop._Training._keep_the_budget(run, validated=validated)
        return run.total_steps

    assert at(10, 5.0, validated=False) == 200  # 0.5 s a step: 190 more fit in the 95 s left
    assert run.budget_ends_schedule and run.warmup == 20
    assert at(60, 13.0) == 60 + int(87 / (8 / 50))  # 0.16 s a step since step 10 (0.22 over all 60): grows back
    assert at(400, 30.0) == 603  # faster still, but two thirds of the schedule are done: it stays
    assert at(500, 95.0) == 527  # slower: it shrinks, also late
    assert at(527, 99.0) == 527  # its last step, with a second left: no new schedule from a learning rate of 0
    at(527, 100.0)
    assert run.stopped and run.stop_reason == "time budget"


def test_a_time_budget_grows_to_the_planned_steps_early_and_no_further(monkeypatch):
    from types import SimpleNamespace

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(trainloop.time, "monotonic", lambda: clock.now)
    run = _budget_run()
    for step, seconds, validated in ((10, 5.0, False), (60, 7.0, True)):
        run.progress.step, clock.now = step, seconds
        trainloop._Training._keep_the_budget(run, validated=validated)
    assert run.total_steps == 1000 and not run.budget_ends_schedule  # capped by the plan, which now ends training


def test_the_last_validation_of_a_spent_budget_is_counted_in_the_training_time(monkeypatch):
    from types import SimpleNamespace

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(trainloop.time, "monotonic", lambda: clock.now)
    run = _budget_run()
    run._validate = lambda: setattr(clock, "now", clock.now + 30.0)  # the final validation takes 30 s
    run.progress.step, clock.now = 300, 101.0
    trainloop._Training._keep_the_budget(run, validated=False)
    assert run.stopped and run.progress.seconds == 131.0


def test_a_resumed_attempt_fits_its_schedule_at_the_pace_after_its_slow_start(monkeypatch):
    """A resumed attempt (a retried pod) goes on with the schedule fitted before, often past its half, where a cut
    never grows back. Fitted at its first 10 steps' pace (loading, allocating: 0.5 s a step, then 0.1), the plan
    shrank for good from 1000 to 680 steps, and training ended with a third of the remaining budget unspent."""
    from types import SimpleNamespace

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(trainloop.time, "monotonic", lambda: clock.now)
    run = _budget_run()  # resumed at step 600 with 60 s spent, on the schedule the earlier attempt fitted
    run.total_steps, run.planned_steps, run.budget_ends_schedule = 1000, 2000, True
    run.progress.step, run.progress.seconds, run.seconds_before, run.steps_at_start = 600, 60.0, 60.0, 600

    def at(step, seconds, validated=False):
        run.progress.step, clock.now = step, seconds
        trainloop._Training._keep_the_budget(run, validated=validated)
        return run.total_steps

    assert at(610, 5.0) == 1000  # its slow start is no pace to plan by
    assert at(620, 6.0) == 620 + int(34 / 0.1)  # the steps since: 0.1 s each, 340 more fit in the 34 s left
    assert at(650, 9.0, validated=True) == 960


def test_a_validation_before_a_resumed_attempts_first_fit_is_not_its_pace(monkeypatch):
    """Resumed at step 1000 from a checkpoint, it validated at step 1015 (30 s): fitted there, on a few slow steps and
    the validation, the plan was cut from 2000 to 1107 steps for good, though all 2000 fitted in the budget."""
    from types import SimpleNamespace

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(trainloop.time, "monotonic", lambda: clock.now)
    run = _budget_run()
    run.settings.max_seconds, run.total_steps, run.planned_steps = 1000.0, 2000, 2000
    run.progress.step, run.progress.seconds, run.seconds_before, run.steps_at_start = 1000, 400.0, 400.0, 1000

    def at(step, seconds, validated=False):
        run.progress.step, clock.now = step, seconds
        trainloop._Training._keep_the_budget(run, validated=validated)
        return run.total_steps

    assert at(1010, 5.0) == 2000  # 0.5 s a step: its slow start
    assert at(1015, 35.5, validated=True) == 2000  # 0.1 s a step and a validation of 30 s: no pace either
    assert at(1020, 36.0) == 2000  # 0.1 s a step since the validation: everything fits
RANKS_WITH_THEIR_OWN_CLOCKS = '''
import json, os, sys
from types import SimpleNamespace
import torch.distributed as dist
from tasks.train import loop

dist.init_process_group("gloo")
rank = dist.get_rank()
clock = SimpleNamespace(now=0.0)
loop.time.monotonic = lambda: clock.now
start = int(sys.argv[2])  # the step an attempt resumed at (0: a fresh one), with 10 s of the budget spent before
run = SimpleNamespace(
    settings=SimpleNamespace(max_seconds=100.0, warmup_steps=0.1), stopped=False, stop_reason=None,
    progress=SimpleNamespace(step=start, seconds=0.0, best_step=0), seconds_before=10.0 if start else 0.0,
    started=0.0, steps_at_start=start, total_steps=1000, planned_steps=1000, warmup=100,
    budget_ends_schedule=False, world_size=dist.get_world_size(), pace_mark=None, _validate=lambda: None,
    _settle=lambda: None)
run._fit_the_schedule = lambda *args: loop._Training._fit_the_schedule(run, *args)
seen, compared = [], []
reduce = loop.sum_over_ranks
loop.sum_over_ranks = lambda *args, **kwargs: compared.append(1) or reduce(*args, **kwargs)
for step in range(start + 1, 1001):
    run.progress.step, clock.now = step, (step - start) * (0.30 if rank == 0 else 0.31)  # rank 1 a bit slow
    loop._Training._keep_the_budget(run, validated=step % 10 == 0)
    seen.append(run.total_steps)
    if run.stopped:
        break
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as out:
    json.dump({"stopped_at": step, "plans": seen, "compared": len(compared)}, out)
dist.destroy_process_group()
'''


def _ranks_with_their_own_clocks(tmp_path, start: int) -> list[dict]:
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_WITH_THEIR_OWN_CLOCKS)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(tmp_path), str(start)], env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["stopped_at"] == ranks[1]["stopped_at"]
    assert ranks[0]["plans"] == ranks[1]["plans"]
    return ranks


def test_data_parallel_ranks_keep_one_time_budget(tmp_path):
    """Each rank reads its own clock; they must still stop at the same step and plan the same schedule,
    or the one that stops first leaves the others waiting in a collective forever."""
    ranks = _ranks_with_their_own_clocks(tmp_path, 0)
    # They go by the slower clock: 100 s at 0.31 s a step (step 323), and decide where the loop looks anyway (every
    # SETTLE_EVERY_STEPS steps and at validations, here every 10): comparing clocks waits for the GPU, and once a
    # step it held every step up.
    assert ranks[0]["stopped_at"] == 330
    assert ranks[0]["compared"] == ranks[1]["compared"] < 330 / 5


def test_data_parallel_ranks_of_a_resumed_attempt_fit_its_schedule_together(tmp_path):
    """A resumed attempt first fits its schedule at its 20th step (here step 525: no validation, no settling step),
    where each rank must look at the slowest clock too, or the ranks plan different schedules and one waits in a
    collective forever."""
    ranks = _ranks_with_their_own_clocks(tmp_path, 505)
    assert ranks[0]["plans"][18] == 1000 != ranks[0]["plans"][19]  # the plan changed at step 525: the fit was there


def test_a_base_saved_in_half_precision_trains_and_is_saved_in_fp32(tmp_path, tiny_model):
    """transformers 5 loads a model in the dtype its config declares: a base saved in fp16 trained fp16 weights
    (Adam's second moments underflowed and the loss was NaN within 10 steps, blamed on the learning rate), and one
    in bf16 trained and published bf16 weights while the report said fp32. Training keeps fp32 weights."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from support.corpora import write_jsonl

    base = Path(shutil.copytree(tiny_model, tmp_path / "half-base"))  # its tokenizer, then weights in fp16
    AutoModelForSeq2SeqLM.from_pretrained(tiny_model).to(torch.float16).save_pretrained(base)
    assert AutoModelForSeq2SeqLM.from_pretrained(base).dtype == torch.float16  # what transformers would train
    pairs = digit_pairs(1300, seed=21)
    settings = train.TrainSettings("en", "de", 32, 32, trainloop.LoopSettings(
        learning_rate=3e-3, weight_decay=0.01, num_train_epochs=100, max_tokens_per_batch=512, max_steps=30,
        warmup_steps=0.1, eval_every_steps=30, precision="fp32", checkpoint_every_steps=10**6))
    report = train.fine_tune(str(base), write_jsonl(tmp_path / "train.jsonl", pairs[:1200]),
                             write_jsonl(tmp_path / "validation.jsonl", pairs[1200:]), settings,
                             output_dir=tmp_path / "model", checkpoints=trainloop.CheckpointDir(tmp_path / "ckpt"))
    assert report["steps"] == 30 and report["best_validation_loss"] < 3.0
    assert AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "model").dtype == torch.float32
