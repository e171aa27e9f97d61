"""What each try of a GPU step cost, in the run directory's launches.json: its seconds from launch to end, the GPUs
its pod or container requested, how it ended, and for a pod what its own status said: how long it waited for a node
(a GPU node the autoscaler adds can take minutes) and how long it then held its node's GPUs. The launcher
(mt_airflow/launcher.py) writes a record after every try, failed, killed or timed out included: what a retry's bill
counts, and what the step's own reports cannot know (a killed attempt writes nothing after its last checkpoint).
tasks/cost.py reads them back.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk.exceptions import AirflowTaskTimeout

# Seconds the launcher waits for the Kubernetes API when it reads a pod's timings after its try.
POD_READ_TIMEOUT_S = 10
# ... and when it reads them in on_kill, just before the pod is deleted (once deleted, it is soon gone): the Airflow
# supervisor SIGKILLs the task 5 s after its SIGTERM, and the delete and the try's record must fit in them too.
KILL_POD_READ_TIMEOUT_S = 1.5


def timed_out(failed: BaseException | None) -> bool:
    """Whether Airflow's execution timeout is behind `failed`: raised as such, or replaced by an error a pod or
    container operator raised while cleaning up after it."""
    seen = set()
    while failed is not None and id(failed) not in seen:
        if isinstance(failed, AirflowTaskTimeout):
            return True
        seen.add(id(failed))
        failed = failed.__cause__ or failed.__context__
    return False


def record_launch(run_dir: str, step: str, launch: dict, log) -> None:
    """Add one try of `step` to the run directory's launches.json (a try recorded twice keeps its last record).
    Never fails the task nor replaces its error: a store that cannot be written loses the record, which the log
    keeps; so does an execution timeout that fires while it is written."""
    def add(record):  # what is not a record of tries (a hand-edited file) is replaced, not kept failing
        record = record if isinstance(record, dict) else {}
        tries = record.get(step) if isinstance(record.get(step), list) else []
        tries = [t for t in tries if isinstance(t, dict) and (launch["try"] is None or t.get("try") != launch["try"])]
        return {**record, step: [*tries, launch]}

    log.info("step %r, try %s: %s after %.1f s from launch to end%s", step, launch["try"], launch["outcome"],
             launch["seconds"], "; its pod waited {waiting_s} s for a node and held it {on_node_s} s".format(
                 **launch["pod"]) if launch.get("pod") else "")
    try:
        from tasks import layout
        from tasks.io import storage

        uri = storage.join(run_dir, layout.LAUNCHES)
        try:
            storage.update_json(uri, add)
        except ValueError:  # not JSON at all: nothing in it can be kept
            storage.write_json(uri, add(None))
    except (Exception, AirflowTaskTimeout) as err:  # noqa: BLE001 - a lost record must not fail the step
        log.warning("could not record this launch in %s: %s: %s", run_dir, type(err).__name__, err)


def recorded_until(run_dir: str, step: str, created: float) -> float | None:
    """When the try that started a container created at `created` (a Unix time) ended by its own record: the last
    try of `step` recorded as started by then (a try's `started` is taken before its container is made). None when
    there is none: a try whose worker died records nothing, and records of containers left running (no try) or of
    tries started later (on another host's Docker daemon) say nothing of this one."""
    from tasks import layout
    from tasks.io import storage

    try:
        tries = (storage.read_json_or(storage.join(run_dir, layout.LAUNCHES)) or {}).get(step) or []
        spans = [(datetime.fromisoformat(t["started"]).timestamp(), float(t["seconds"])) for t in tries
                 if t.get("try") is not None]
    except (Exception, AirflowTaskTimeout):  # noqa: BLE001 - an unreadable record: bill the container whole
        return None
    own = [start + seconds for start, seconds in spans if start <= created]
    return max(own) if own else None


def pod_times(pod, now: datetime) -> dict | None:
    """{"waiting_s": for a node, "on_node_s": from being placed on one to its containers' end (or `now`, where they
    have not ended: a pod stopped as the try ends)} of a pod as the Kubernetes API returns it; None when it says too
    little. A pod a retry reattached to counts whole: the pod operator reattaches only to a pod still running, whose
    own try ended without a record (its worker died)."""
    created = pod.metadata.creation_timestamp
    if created is None:
        return None
    scheduled = next((c.last_transition_time for c in pod.status.conditions or []
                      if c.type == "PodScheduled" and c.status == "True" and c.last_transition_time), None)
    if scheduled is None:  # never placed: it held no GPU
        return {"waiting_s": round(max((now - created).total_seconds(), 0.0), 1), "on_node_s": 0.0}
    ended = [s.state.terminated.finished_at for s in pod.status.container_statuses or []
             if s.state and s.state.terminated and s.state.terminated.finished_at]
    end = max(ended) if ended and len(ended) == len(pod.status.container_statuses) else now
    return {"waiting_s": round(max((scheduled - created).total_seconds(), 0.0), 1),
            "on_node_s": round(max((end - scheduled).total_seconds(), 0.0), 1)}


def pod_ended(pod) -> bool:
    return getattr(pod.status, "phase", None) in ("Succeeded", "Failed")
