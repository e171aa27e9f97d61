"""
### Keep a translation model fresh

Weekly (or when triggered from the form), this DAG retrains a Hugging Face seq2seq translation model on
fresh domain data and publishes it only when it is measurably better:

1. **prepare** validates the form's values into one run config, written to `config.json` in the run
   directory `{MT_ARTIFACT_ROOT}/translation_finetune/{run_id}/`;
2. **pull** copies what is new in the S3 prefix or folder in `data_uri` since the last successful run; with
   nothing new, the run ends here, skipped (`force_full_retrain` takes everything, `data_snapshot` an old
   run's exact files);
3. **validate** puts every pair that fails a filter into `rejects.jsonl` with all its reasons, removes
   duplicates and test-set leakage, and fails a bad batch;
4. **split** hashes each source sentence into train / validation; the first run freezes the test set, later
   runs reuse it;
5. **train** fine-tunes `base_model` on a GPU (launcher: local subprocess, Docker or Kubernetes);
6. **evaluate** translates the test split with base and candidate and scores them with sacrebleu;
7. **gate** promotes the candidate only if its BLEU gain reaches `min_bleu_gain`;
8. **publish** releases model + model card to the Hugging Face Hub as a tagged commit, or as a pull request
   for review with `create_pr` (or to a local registry); skipped when the gate refuses, and a retry or a
   re-run never publishes twice. Its **Published model** link opens the revision or the pull request;
9. **mark_consumed** marks the pulled objects consumed, only when nothing upstream failed (a refused
   gate is a success and consumes);
10. **summary** logs the outcome in one place, also for a run that ended early.

With `learning_curve_fractions` (e.g. `[0.1, 0.25, 0.5]`), **learning_curve_point** also trains and scores
one model per share of the training split, as mapped tasks through the same launcher, and
**learning_curve** writes BLEU against data size (`learning_curve.md`, `learning_curve.png`) to the run
directory. Without it those tasks are skipped. The candidate is the same either way.

Every step reads and writes the run directory; XCom carries only its URI and small summaries.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task
from mt_airflow.launcher import RunStepOperator
from mt_airflow.params import dag_params
from mt_airflow.publish import PublishModelOperator

# Steps that talk to S3 or the Hub retry transient failures with backoff; each step is idempotent.
IO_RETRIES = {"retries": 3, "retry_delay": timedelta(seconds=20), "retry_exponential_backoff": True,
              "max_retry_delay": timedelta(minutes=5)}


@dag(
    dag_id="translation_finetune",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=dag_params(),
    doc_md=__doc__,
    tags=["mlops", "translation", "retraining"],
    default_args={"owner": "mlops"},
)
def translation_finetune():
    @task(**IO_RETRIES)
    def prepare(params=None, dag_run=None) -> str:
        from tasks import config

        artifact_root = os.environ.get("MT_ARTIFACT_ROOT") or os.path.join(
            os.environ.get("AIRFLOW_HOME", "."), "artifacts")
        cfg = config.build(dict(params), dag_id=dag_run.dag_id, run_id=dag_run.run_id,
                           artifact_root=artifact_root)
        config.save(cfg)
        return cfg.run_dir

    @task(**IO_RETRIES)
    def pull(run_dir: str) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException
        from tasks import config, pull

        outcome = pull.run(config.load(run_dir))
        if outcome["nothing_new"]:
            raise AirflowSkipException(outcome["message"])
        return outcome

    @task
    def validate(run_dir: str) -> dict:
        from tasks import config, validate

        return validate.run(config.load(run_dir))

    @task
    def split(run_dir: str) -> dict:
        from tasks import config, split

        return split.run(config.load(run_dir))

    @task
    def gate(run_dir: str) -> dict:
        from tasks import config, gate

        return gate.run(config.load(run_dir))

    # none_failed: runs after a refused gate (publish skipped) or an early end (all skipped), never after
    # a failure, so a failed run consumes nothing.
    @task(trigger_rule="none_failed", **IO_RETRIES)
    def mark_consumed(run_dir: str) -> dict:
        from tasks import config, pull

        return pull.commit_consumed(config.load(run_dir))

    @task
    def plan_learning_curve(run_dir: str) -> list[str]:
        from tasks import config, curve

        return curve.plan(config.load(run_dir))

    @task
    def learning_curve(run_dir: str) -> dict:
        from tasks import config, curve

        return curve.summarize(config.load(run_dir))

    @task(trigger_rule="none_failed")
    def summary(run_dir: str) -> dict:
        from tasks import config, report

        return report.summarize_run(config.load(run_dir))

    run_dir = prepare()
    train = RunStepOperator(task_id="train", step="train", run_dir=run_dir, launcher="{{ params.launcher }}",
                            retries=2, retry_delay=timedelta(minutes=1))
    evaluate = RunStepOperator(task_id="evaluate", step="evaluate", run_dir=run_dir,
                               launcher="{{ params.launcher }}", retries=1)
    decided = gate(run_dir)
    published = PublishModelOperator(task_id="publish", run_dir=run_dir, **IO_RETRIES)
    splits = pull(run_dir) >> validate(run_dir) >> split(run_dir)
    splits >> train >> evaluate >> decided >> published
    published >> mark_consumed(run_dir) >> summary(run_dir)

    # One mapped task per learning-curve point (none by default: then these are skipped). The points are
    # GPU work like train, so they go through the same launcher, each with its own run directory.
    point_dirs = plan_learning_curve(run_dir)
    splits >> point_dirs
    points = RunStepOperator.partial(task_id="learning_curve_point", step="curve", launcher="{{ params.launcher }}",
                                     retries=2, retry_delay=timedelta(minutes=1)).expand(run_dir=point_dirs)
    [points, evaluate] >> learning_curve(run_dir)


translation_finetune()
