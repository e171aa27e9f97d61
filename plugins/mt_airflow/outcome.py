"""A run's outcome in one line, and the listener that writes it as the DAG run's note.

The `summary` task computes the line from the run directory (`one_line`) and returns it in its XCom as
`note`. The Task SDK cannot set its own run's note, so a listener does, where the run's state changes
(the scheduler, or `dag.test()`): on success it copies the summary's line, on failure it names the failed
task. The note shows in the grid and the run list, so nobody has to open logs to see what happened.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl

from tasks.summary import short_revision

log = logging.getLogger(__name__)

NOTE_LIMIT = 1000  # the length of Airflow's dag_run_note.content column
SUMMARY_TASK = "summary"


def p_value(decision: dict) -> float | None:
    """The gate's significance p-value of the gain over the base model (older gates have none)."""
    p = (decision.get("p_values") or {}).get("candidate_vs_base")
    if isinstance(p, (int, float)):
        return p
    for holder in (decision, decision.get("bleu") or {}, decision.get("significance") or {}):
        if isinstance(holder.get("p_value"), (int, float)):
            return holder["p_value"]
    for check in decision.get("checks", []):
        if "p_value" in check:
            return check["p_value"]
    return None


def pair_line(decision: dict, published: dict | None) -> str:
    """promoted: +2.3 BLEU (p=0.01) → rev abc123   |   refused: BLEU gain +0.40 < min_bleu_gain 1.0"""
    if not decision:
        return "no decision: the run ended before the gate"
    gain = (decision.get("bleu") or {}).get("gain")
    p = p_value(decision)
    if decision.get("decision") != "promote":
        return "refused: " + "; ".join(decision.get("reasons") or ["gate refused"])
    measured = (f"{gain:+.1f} BLEU" if gain is not None else "gate passed") + (f" (p={p:.3g})" if p is not None else "")
    if published and published.get("published"):
        if published.get("pr_url"):
            return f"promoted: {measured} → PR {published['pr_url']}"
        return f"promoted: {measured} → rev {short_revision(published)}"
    return f"passed the gate: {measured}, not published"


def one_line(pairs: list[tuple[str, dict, dict | None]]) -> str:
    """The whole run: (pair name, gate.json, publish.json) per language pair."""
    if len(pairs) == 1:
        return pair_line(*pairs[0][1:])[:NOTE_LIMIT]
    lines = [f"{name} {pair_line(decision, published)}" for name, decision, published in pairs]
    return (_head(pairs) + " | " + " | ".join(lines))[:NOTE_LIMIT]


def _head(pairs: list[tuple[str, dict, dict | None]]) -> str:
    """What the run did as a whole. A pair with no decision pulled nothing new (or failed before its gate): it is
    not a refusal, and the release gate publishes the pairs that passed beside it."""
    refused = [name for name, decision, _ in pairs if decision and decision.get("decision") != "promote"]
    undecided = [name for name, decision, _ in pairs if not decision]
    published = [name for name, _, record in pairs if record and record.get("published")]
    if not refused and not undecided and len(published) == len(pairs):
        return "promoted all pairs"
    # Every gate passed and yet a pair is not published: push_to_hub is off, or its publish failed.
    parts = [f"refused ({', '.join(refused)})" if refused else "",
             f"no decision ({', '.join(undecided)})" if undecided else "",
             "" if refused or undecided else "passed every gate",
             f"published ({', '.join(published)})" if published else "nothing published"]
    return "; ".join(part for part in parts if part)


def _summary_note(dag_run, session) -> str | None:
    from airflow.models.xcom import XComModel

    rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id,
                                              task_ids=SUMMARY_TASK, key="return_value")).all()
    for row in rows:
        value = XComModel.deserialize_value(row)
        if isinstance(value, dict) and value.get("note"):
            return str(value["note"])
    return None


def _bound(dag_run):
    """The run and the session whose transaction is changing its state. The listener is called inside
    that transaction (the scheduler's, or dag.test()'s), so the note is written with it: a second
    session would wait on the row lock the caller holds. Airflow's sessions are thread-scoped, so
    `settings.Session()` is the caller's when the run object itself has been detached."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is not None:
        return dag_run, session
    session = settings.Session()
    return session.get(DagRun, dag_run.id), session


def _ours(dag_run) -> bool:
    return dag_run.dag_id.startswith("translation_finetune")


def _write_note(dag_run, compose) -> None:
    if not _ours(dag_run):
        return
    try:
        run, session = _bound(dag_run)
        if run is None or run.note:  # a note someone wrote by hand stays
            return
        text = compose(run, session)
        if text:
            run.note = text[:NOTE_LIMIT]
            session.flush()
            log.info("note of %s: %s", run.run_id, text)
    except Exception:  # a note is a convenience: never let it disturb the scheduler
        log.exception("could not write the note of %s", dag_run.run_id)


def _failure_note(run, session) -> str:
    from airflow.utils.state import TaskInstanceState

    tis = run.get_task_instances(state=[TaskInstanceState.FAILED], session=session)
    failed = sorted({ti.task_id.rsplit(".", 1)[-1] for ti in tis})  # "language.validate" reads as "validate"
    return (f"failed in {', '.join(failed)}" if failed else "failed") + "; see the task log"


@hookimpl
def on_dag_run_success(dag_run, msg: str) -> None:
    _write_note(dag_run, _summary_note)


@hookimpl
def on_dag_run_failed(dag_run, msg: str) -> None:
    _write_note(dag_run, _failure_note)
