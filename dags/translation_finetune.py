"""
### Keep a translation model fresh

Weekly, when the data watcher announces new data, or when triggered from the form or the REST API, this DAG
retrains a Hugging Face seq2seq translation model on fresh domain data and publishes it only when it is
measurably better:

1. **prepare** validates the form's values into one run config, written to `config.json` in the run
   directory `{MT_ARTIFACT_ROOT}/<dag id>/{run_id}/`. A run started by new data pulls, like any run, every
   object not consumed yet: the announced keys and any a failed run left. With several `target_langs`, each pair
   gets a sub-run of its own, `pairs/<src>-<tgt>/`, and every step below runs once per pair (dynamic task
   mapping);
2. **pull** copies what no successful run has consumed yet from the S3 prefix or folder in `data_uri` and
   records what it took; with nothing new, the pair's run ends early (skipped, not failed);
3. **validate** reads every supported format, applies the pair filters, screens each new pair's alignment with
   the base model (through the launcher, so on a GPU where training runs on one) and writes each rejected row
   with its reason to `rejects.jsonl`; a bad batch fails the run;
4. **split** keeps the frozen test set and hashes the rest into train / validation;
5. **train** fine-tunes `base_model` on a GPU (launcher: local subprocess, Docker or Kubernetes), in the
   `gpu` pool, which caps how many trainings and evaluations run at once;
6. **champion** copies the model currently published to `hub_repo_id` (if any) into the run directory;
7. **evaluate** translates the frozen test split (and the general-domain set, if any) with base, candidate
   and champion, identically (CTranslate2 where it converts the model faithfully, else transformers), and
   scores them with sacrebleu BLEU, chrF and TER, with paired bootstrap tests;
8. **gate** promotes a pair's candidate only if every check passes: a significant BLEU gain of at least
   `min_bleu_gain`, no loss beyond `max_champion_regression` against the champion, the `min_bleu` floor,
   no forgetting beyond `max_general_regression`, and at least `min_test_sentences` test sentences. It
   writes `gate.json` and `report.md`; its return value shows the decision and every check;
9. **release_gate** lets publishing go ahead only if every language's gate passed; a refusal is a normal,
   successful end (publish skipped) and is sent to the webhook;
10. **publish** releases model + model card to the Hugging Face Hub as a tagged commit, or as a pull request
   for review with `create_pr` (or to a local registry). Its **Published model** link opens the revision
   or the pull request;
11. **mark_consumed** marks each language's pulled objects consumed once its gate decided: a refusal consumes,
    a promoted model consumes once published (held back by another language's refusal, or a failed publish,
    its data stays new for the next run);
12. **summary** logs the outcome, also for a run that ended early or failed, and the run's note says it in one
    line; **release_verdict** fails the run when the release gate or publish failed (a run's state is its last
    tasks').

With `learning_curve_fractions` (e.g. `[0.1, 0.25, 0.5]`), **learning_curve_point** also trains and scores
one model per share of each pair's training split, as mapped tasks through the same launcher, and
**learning_curve** writes BLEU against data size (`learning_curve.md`, `learning_curve.png`) to each pair's
run directory. Without it those tasks are skipped. The candidate is the same either way.

Every step reads and writes the run directory; XCom carries only its URI and small summaries. A failed run
is reported to the webhook connection (`MT_WEBHOOK_CONN_ID`, default `mt_webhook`), when there is one.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, chain, dag, task, task_group

from mt_airflow.launcher import RunStepOperator, execution_timeout
from mt_airflow.notify import WebhookNotifier
from mt_airflow.params import dag_params
from mt_airflow.pipelines import main_pipeline
from mt_airflow.publish import PublishModelOperator
from mt_airflow.retry import transient_only

log = logging.getLogger(__name__)

# Steps that talk to S3 or the Hub retry transient failures with backoff (each step is idempotent); any other
# error fails them at once (mt_airflow.retry.transient_only).
IO_RETRIES = {"retries": 3, "retry_delay": timedelta(seconds=20), "retry_exponential_backoff": True,
              "max_retry_delay": timedelta(minutes=5)}
GPU_POOL = "gpu"  # created by `make airflow` / the Helm values; its size is how many GPU steps run at once
PIPELINES_FILE = Path(__file__).with_name("pipelines.yaml")


# --- the steps that run on an Airflow worker; each task body calls one function of tasks/ (imported inside the
# task: nothing heavy at parse time) and returns a URI or a small summary.

@task(**IO_RETRIES)
@transient_only
def prepare(params=None, dag_run=None, triggering_asset_events=None) -> list[str]:
    from mt_airflow import artifact_root, hub, pairs, refuse_backfill, watch
    from tasks import config

    refuse_backfill(dag_run.run_type)
    values = dict(params)
    if announced := watch.new_keys(triggering_asset_events):
        # Not a snapshot: the run pulls every object not consumed yet, so the announced keys and any a failed
        # earlier run left, never one that another run consumed since the announcement.
        log.info("started by new data: %d announced object(s): %s", len(announced), ", ".join(announced[:10]))
    cfg = config.build(values, dag_id=dag_run.dag_id, run_id=dag_run.run_id, artifact_root=artifact_root())
    if cfg.push_to_hub and cfg.publish_target == "hub":  # now, not after pull and validate screened the data
        hub.refuse_disallowed(cfg.hub_conn_id)
    config.save(cfg)
    run_pairs = pairs.expand(cfg)
    for pair in run_pairs:
        config.save(pair)
    return [pair.run_dir for pair in run_pairs]


@task(**IO_RETRIES)
@transient_only
def pull(run_dir: str) -> dict:
    from airflow.sdk.exceptions import AirflowSkipException

    from tasks import config
    from tasks.data import pull

    outcome = pull.run(config.load(run_dir))
    if outcome["nothing_new"]:
        raise AirflowSkipException(outcome["message"])
    return outcome


@task(**IO_RETRIES)
@transient_only
def split(run_dir: str) -> dict:
    from tasks import config
    from tasks.data import split

    return split.run(config.load(run_dir))


@task(**IO_RETRIES)
@transient_only
def champion(run_dir: str) -> dict:
    from mt_airflow.hub import registry_credentials
    from tasks import config
    from tasks.evaluate import champion

    cfg = config.load(run_dir)
    if not cfg.push_to_hub:  # no champion to look up: no connection to read
        return champion.run(cfg)
    credentials = registry_credentials(cfg)
    return champion.run(cfg, token=credentials.token, endpoint=credentials.endpoint)


@task(**IO_RETRIES)
@transient_only
def gate(run_dir: str) -> dict:
    from tasks import config
    from tasks.evaluate import gate

    return gate.summary(gate.run(config.load(run_dir)))


# none_failed: after the languages' groups, whichever of them ended early (skipped); a failed language fails it.
@task(trigger_rule="none_failed", **IO_RETRIES)
@transient_only
def release_gate(run_dirs: list[str], **context) -> dict:
    from airflow.sdk.exceptions import AirflowSkipException

    from mt_airflow import notify
    from tasks import config
    from tasks.publish import release

    outcome = release.decide([config.load(run_dir) for run_dir in run_dirs])
    if outcome["refused"]:
        notify.notify_refusal(context, f"refused, nothing published: {outcome['message']}")
    if not outcome["released"]:
        raise AirflowSkipException(outcome["message"])
    return outcome["decisions"]


# all_done: each language decides for itself (tasks/publish/release.py): consumed once its gate decided, not
# when its gate never ran (nothing new, a failure before it) or its promoted model was not published.
@task(trigger_rule="all_done", **IO_RETRIES)
@transient_only
def mark_consumed(run_dir: str) -> dict:
    from airflow.sdk.exceptions import AirflowSkipException

    from tasks import config
    from tasks.data import consumed
    from tasks.publish import release

    cfg = config.load(run_dir)
    if (why_not := release.not_consumable(cfg)) is not None:
        raise AirflowSkipException(f"nothing consumed: {why_not}")
    return consumed.commit(cfg)


@task(trigger_rule="none_failed")
def plan_learning_curve(run_dirs: list[str]) -> list[str]:
    from tasks import config
    from tasks.train import curve

    return [point for run_dir in run_dirs for point in curve.plan(config.load(run_dir))]


@task(trigger_rule="none_failed")
def learning_curve(run_dirs: list[str]) -> list[dict]:
    from airflow.sdk.exceptions import AirflowSkipException

    from tasks import config
    from tasks.train import curve

    curves = [curve.summarize(config.load(run_dir)) for run_dir in run_dirs]
    if not any(found["points"] for found in curves):
        raise AirflowSkipException("no learning curve: none was asked for, or no language reached its split")
    return curves


@task(trigger_rule="none_failed")
def release_verdict() -> None:
    """A leaf that fails the run when the release gate or publish failed. Airflow takes a run's state from its leaf
    tasks alone, and summary, after mark_consumed (which runs after anything), succeeds to report every run: a
    publish that failed (a token without write access) left the run green and the failure webhook silent."""


@task(trigger_rule="none_failed")
def summary(run_dirs: list[str]) -> dict:
    from mt_airflow import outcome, pairs
    from tasks import config, summary
    from tasks.evaluate import gate
    from tasks.publish import step as publish

    results, lines, configs = [], [], [config.load(run_dir) for run_dir in run_dirs]
    for cfg in configs:
        results.append(summary.summarize_run(cfg))
        decision = gate.read_decision(cfg) if results[-1]["decision"] else {}
        lines.append((pairs.pair_name(cfg), decision, publish.result(cfg)))
    note = outcome.one_line(lines)
    log.info("outcome: %s", note)
    return {"note": note, "pairs": results, "cost": summary.whole_run(configs)}


def gpu_step(step: str, **kwargs) -> dict:
    """What a step that runs `python -m tasks <step>` through the run's launcher takes: the gpu pool, and the
    deployment's timeout for the step (MT_TRAIN_TIMEOUT_HOURS, MT_EVALUATE_TIMEOUT_HOURS,
    MT_VALIDATE_TIMEOUT_HOURS); a timed-out or killed task stops its pod, container or subprocess."""
    return {"task_id": step, "step": step, "launcher": "{{ params.launcher }}", "pool": GPU_POOL,
            "execution_timeout": execution_timeout(step), **kwargs}


# --- the wiring

@task_group(group_id="language")
def language(run_dir):
    """One target language, from its new data to its gate. Each language of a run is one mapped instance of
    this group: its steps depend only on its own earlier steps, so a language with nothing new, a failed
    validation or a refusal affects no other until the release gate."""
    # validate screens alignment with the base model: where the launcher runs models (a GPU pod), in the gpu pool.
    steps = [pull(run_dir), RunStepOperator(run_dir=run_dir, **gpu_step("validate", **IO_RETRIES)), split(run_dir),
             champion(run_dir),
             RunStepOperator(run_dir=run_dir, **gpu_step("train", retries=2, retry_delay=timedelta(minutes=1))),
             RunStepOperator(run_dir=run_dir, **gpu_step("evaluate", retries=1)), gate(run_dir)]
    chain(*steps)  # champion before train: `init_from: champion` starts from it


def translation_finetune():
    run_dirs = prepare()
    languages = language.expand(run_dir=run_dirs)
    published = PublishModelOperator.partial(task_id="publish", **IO_RETRIES).expand(run_dir=run_dirs)
    released = release_gate(run_dirs)
    languages >> released >> published >> mark_consumed.expand(run_dir=run_dirs) >> summary(run_dirs)
    [released, published] >> release_verdict()
    learning_curve_points(run_dirs, after=languages)


def learning_curve_points(run_dirs, *, after) -> None:
    """One mapped task per learning-curve point (none by default: then these are skipped), for the languages
    that reached their gate. The points are GPU work like train: the same launcher and pool, each with its
    own run directory."""
    point_dirs = plan_learning_curve(run_dirs)
    after >> point_dirs
    points = RunStepOperator.partial(**gpu_step("curve", task_id="learning_curve_point", retries=2,
                                                 retry_delay=timedelta(minutes=1))).expand(run_dir=point_dirs)
    points >> learning_curve(run_dirs)


def build(dag_id: str, *, schedule: str | None, data_uri: str | None, watch_data: bool, params: dict,
          doc_md: str, tags: list[str], description: str | None = None):
    """The retraining DAG with these Param defaults; new data under `data_uri` triggers it when watched. Without
    a schedule and a data_uri it runs only when triggered."""
    from mt_airflow.watch import data_asset

    timetable = CronTriggerTimetable(schedule, timezone="UTC") if schedule else None
    if watch_data and data_uri:
        asset = data_asset(data_uri)
        schedule_arg = AssetOrTimeSchedule(timetable=timetable, assets=asset) if timetable else asset
    else:
        schedule_arg = timetable
    return dag(
        dag_id=dag_id,
        schedule=schedule_arg,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params=dag_params(**params),
        description=description,
        doc_md=doc_md,
        tags=tags,
        default_args={"owner": "mlops"},
        on_failure_callback=WebhookNotifier(event="failure"),
    )(translation_finetune)()


def _broken_pipeline(entry) -> None:
    """A stand-in DAG for an invalid pipelines.yaml entry: listed (tag `invalid-pipeline`), never scheduled,
    its description and its only task's failure say what is wrong. Every other pipeline still loads."""

    @task(task_id="explain_invalid_entry")
    def explain(message: str) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(message)

    @dag(dag_id=entry.dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         description=entry.message[:200], doc_md=f"### Invalid pipeline entry\n\n`{entry.message}`\n\n"
         f"Fix it in `dags/{PIPELINES_FILE.name}`.", tags=["invalid-pipeline"], is_paused_upon_creation=True)
    def invalid_pipeline():
        explain(entry.message)

    invalid_pipeline()


def build_pipelines(path: Path = PIPELINES_FILE) -> None:
    """One DAG per pipelines.yaml entry. Reading that file is part of the DAG definition: it ships next to
    this file, and tests/dags/parse_probe.py allows reading files inside the DAGs folder (nothing else)."""
    import warnings

    from mt_airflow.pipelines import BrokenEntry, load

    good, broken = load(path)
    for pipeline in good:
        doc = (f"### {pipeline.domain}: {pipeline.languages}\n\nDeclared in `dags/{path.name}` "
               f"(pipeline #{pipeline.index + 1}).\n\n" + __doc__)
        try:
            build(pipeline.dag_id, schedule=pipeline.schedule, data_uri=pipeline.data_uri,
                  watch_data=pipeline.watch_data, params=pipeline.params, doc_md=doc,
                  tags=["mlops", "translation", "retraining", f"domain:{pipeline.domain}"])
        except Exception as err:  # whatever validation missed still costs only this pipeline
            broken.append(BrokenEntry(pipeline.index, pipeline.dag_id,
                                      f"{path.name}: pipeline #{pipeline.index + 1}: {type(err).__name__}: {err}"))
    for entry in broken:
        warnings.warn(entry.message, stacklevel=1)  # the DAG processor records parse warnings per file
        _broken_pipeline(entry)


# The main pipeline: the production defaults of the form (tasks/config.py), retrained weekly and on new data once
# the deployment names its data prefix (MT_DATA_URI); until then only when triggered, never against a placeholder.
MAIN = main_pipeline()
build("translation_finetune", schedule=MAIN.schedule, data_uri=MAIN.data_uri, watch_data=True, params=MAIN.params,
      doc_md=MAIN.doc_md + __doc__, description=MAIN.description, tags=["mlops", "translation", "retraining"])
build_pipelines()
