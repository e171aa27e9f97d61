"""What training needs from the launcher: progress in the task log line by line while the step runs (not
when it ends), and the deployment's data-parallel process count in the container."""

from mt_airflow import launcher
from mt_airflow.launcher import RunStepOperator

# A step that logs like tasks/__main__.py does, then waits until its first line has reached the task log:
# a launcher that buffered output until the step exits would leave it waiting (and failing after 60 s).
STEP = """
import logging, pathlib, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
log = logging.getLogger("tasks.train.loop")
log.info("step 20/40  epoch 0  loss 2.5000  lr 1.00e-04  900 tokens/s  ETA 0m05s")
released, deadline = pathlib.Path(sys.argv[1]), time.monotonic() + 60
while not released.exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.02)
log.info("step 40/40  epoch 1  loss 1.2500  lr 0.00e+00  900 tokens/s  ETA 0m00s")
print('{"steps": 40}', flush=True)
"""


class TaskLog:
    def __init__(self, release):
        self.lines, self.release = [], release

    def info(self, message, *args):
        self.lines.append(message % args)
        if "step 20/40" in self.lines[-1]:
            self.release.touch()


def test_local_launcher_streams_progress_while_the_step_runs(tmp_path, monkeypatch):
    release = tmp_path / "first-line-logged"
    monkeypatch.setattr(launcher, "step_command", lambda step, run_dir: ["python", "-c", STEP, str(release)])
    task_log = TaskLog(release)
    monkeypatch.setattr(RunStepOperator, "log", property(lambda self: task_log))

    RunStepOperator(task_id="train", step="train", run_dir=str(tmp_path)).run_local()
    assert task_log.lines == [
        "INFO tasks.train.loop: step 20/40  epoch 0  loss 2.5000  lr 1.00e-04  900 tokens/s  ETA 0m05s",
        "INFO tasks.train.loop: step 40/40  epoch 1  loss 1.2500  lr 0.00e+00  900 tokens/s  ETA 0m00s",
        '{"steps": 40}',
    ]


def test_the_data_parallel_process_count_reaches_the_container(monkeypatch):
    monkeypatch.setenv("MT_TRAIN_PROCESSES", "4")
    settings = launcher.LaunchSettings(gpus=8)
    pod = RunStepOperator(task_id="train", step="train", run_dir="s3://runs/r1", launcher="kubernetes") \
        .build_delegate(settings).build_pod_request_obj(dry_run=True)
    assert {e.name: e.value for e in pod.spec.containers[0].env}["MT_TRAIN_PROCESSES"] == "4"
    docker = RunStepOperator(task_id="train", step="train", run_dir="s3://runs/r1", launcher="docker") \
        .build_delegate(settings)
    assert docker.environment["MT_TRAIN_PROCESSES"] == "4"
