"""What a run's compute cost, in words, for the steps that run where a GPU may be: training (wall time, GPU time,
steps, tokens/s), the alignment screen in validation, and each model's translation of the test set. Read back from
train_report.json, validation_report.json and scores.json, so the run's summary, report.md and the model card say
what every weekly retrain cost without anyone opening its logs. What the steps cannot see of themselves (each try's
time from launch to end, a killed one's included, the GPUs its pod requested, and how long the pod waited for a
node and then held it) comes from the launcher's launches.json: that is the bill.

A record a line cannot read (an older report, a hand-edited or hostile file in the artifact store) gives None: a
line about cost never fails the step that writes a report, nor the promotion history page that reads every run.
"""

from __future__ import annotations

import collections
import functools
import logging

log = logging.getLogger(__name__)

# The train step's time beside its loop (train_report.json's `step_seconds`), in the order it spends it.
TRAIN_PHASES = (("loading", "loading the model"), ("tokenizing", "tokenizing the pairs"), ("saving", "saving it"))


def _or_none(describe):
    """`describe(record)`, or None (logged) when the record does not hold what it should."""
    @functools.wraps(describe)
    def guarded(record, *more):
        try:
            return describe(record, *more)
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as err:
            log.warning("%s: cannot read the record (%s: %s); the line is left out", describe.__name__,
                        type(err).__name__, err)
            return None
    return guarded


def duration(seconds: float) -> str:
    """`1h02m` or `3m12s`."""
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


@_or_none
def training(report: dict) -> str | None:
    """One line on what training cost: the loop's wall time, validations included, over every attempt of a resumed
    run up to its last checkpoint (what a killed attempt spent after it, and loading and saving the model, are
    outside it, and the last attempt's are listed beside it); None when the report predates these figures or there is
    none. On several GPUs the tokens are one rank's times the ranks: about right, marked ≈."""
    if (wall := training_time(report)) is None:
        return None
    seconds, workers, kind = report["seconds_total"], int(report.get("world_size") or 1), _device_kind(report)
    device_time = f": {duration(seconds * workers)} of GPU time" if kind == "cuda" else ""
    tokens, about = int(report.get("tokens_seen") or 0), "≈" if workers > 1 else ""
    line = (f"{report['steps']} steps ({report.get('epochs_completed', 0)} full epochs) in {wall}, "
            f"{report.get('precision', 'unknown precision')}{device_time}; {about}{tokens:,} tokens, "
            f"{about}{tokens / max(seconds, 1e-9):,.0f} tokens/s")
    if report.get("resumed_from_step") is not None:
        line += f"; resumed at step {report['resumed_from_step']}"
    if graphs := report.get("cuda_graphs"):
        line += (f"; CUDA graphs (last attempt): {graphs['replayed']} steps replayed from {graphs['shapes']} "
                 f"graphs, {graphs['eager']} ordinary" + (f", then off: {graphs['off']}" if graphs.get("off") else ""))
    phases = report.get("step_seconds") or {}
    if said := [f"{float(phases[name]):.1f} s {what}" for name, what in TRAIN_PHASES if name in phases]:
        line += "; beside the loop (last attempt): " + ", ".join(said)
    return line


@_or_none
def training_time(report: dict, tries: list | None = None) -> str | None:
    """Training's time and where it ran (`3m12s on 1 × cuda`), or None: the promotion history's column and the
    learning curve's. The time is the step's from launch to end over every try where the launcher recorded them
    (`tries`, from launches.json: `14m02s on 2 × cuda, 3 tries`), the loop's otherwise. Tries that gave no model
    still cost: `31m05s, 2 tries, no model`."""
    launched = _launched_seconds(tries)
    if report.get("seconds_total") is None or not report.get("steps"):
        return None if launched is None else \
            f"{duration(launched)}, {len(tries)} {'try' if len(tries) == 1 else 'tries'}, no model"
    more = f", {len(tries)} tries" if launched is not None and len(tries) > 1 else ""
    return (f"{duration(report['seconds_total'] if launched is None else launched)} on "
            f"{int(report.get('world_size') or 1)} × {_device_kind(report)}{more}")


def _launched_seconds(tries: list | None) -> float | None:
    """The seconds of every recorded try, or None when there are none it can read (the loop's time then)."""
    try:
        return sum(float(launch["seconds"]) for launch in tries) if tries else None
    except (KeyError, TypeError, ValueError):
        return None


def tries(launched, step: str) -> list | None:
    """The launcher's records of `step`'s tries in a launches.json, or None when it holds none it can read."""
    found = launched.get(step) if isinstance(launched, dict) else None
    return found if isinstance(found, list) else None


@_or_none
def launches(launched: dict) -> str | None:
    """One line on how long each GPU step ran, from launch to end over all its tries (a killed or timed-out try
    whole; waiting for a node and pulling the image included), and the GPU time its pods or containers took: GPUs ×
    the time each pod was on its node, as its status said (`held`, the time it waited for a node left out), else ×
    the time from launch to end (`requested`: at most what was held). None when nothing was recorded. The local
    launcher requests nothing: its steps run on the Airflow worker's devices."""
    steps = sorted(((step, tries) for step, tries in launched.items() if tries), key=lambda item: item[1][0]["started"])
    if not steps:
        return None
    parts, total, gpu, local = [], 0.0, _GpuTime(), False
    for step, tries in steps:
        seconds = [float(launch["seconds"]) for launch in tries]
        stopped = collections.Counter(launch["outcome"] for launch in tries if launch["outcome"] != "succeeded")
        how = ", ".join(f"{count} {outcome}" for outcome, count in stopped.items())
        parts.append(f"{step} {duration(sum(seconds))}" + (f" over {len(tries)} tries" if len(tries) > 1 else "")
                     + (f" ({how})" if how else ""))
        total += sum(seconds)
        for launch in tries:
            gpu.add(launch)
        local = local or any(launch["launcher"] == "local" for launch in tries)
    return (", ".join(parts) + f": {duration(total)} from launch to end" + gpu.describe()
            + (" (local launcher: on the Airflow worker's own devices)" if local else ""))


@_or_none
def whole_run(records: list[dict]) -> str | None:
    """One line on what a run of several language pairs cost in all: the time of every pair's tries from launch
    to end, added up (pairs that ran side by side count each), and their GPU time as `launches` counts it; None
    when nothing was recorded. The bill of a weekly multi-language retrain, without adding up the pairs' lines."""
    tries = [launch for record in records for step in record.values() if step for launch in step]
    if not tries:
        return None
    gpu = _GpuTime()
    for launch in tries:
        gpu.add(launch)
    seconds = sum(float(launch["seconds"]) for launch in tries)
    return (f"{len(records)} language pairs, {len(tries)} launches: {duration(seconds)} from launch to end in all"
            + gpu.describe())


class _GpuTime:
    """The GPU seconds of the tries that requested GPUs: held on a node where the pod's timings were recorded,
    requested from launch to end where they were not."""

    def __init__(self):
        self.seconds, self.waiting, self.all_held, self.any = 0.0, 0.0, True, False

    def add(self, launch: dict) -> None:
        if not launch.get("gpus"):
            return
        pod, gpus = launch.get("pod"), int(launch["gpus"])
        self.any = True
        if isinstance(pod, dict) and pod.get("on_node_s") is not None:
            self.seconds += gpus * float(pod["on_node_s"])
            self.waiting += float(pod.get("waiting_s") or 0)
        else:
            self.seconds += gpus * float(launch["seconds"])
            self.all_held = False

    def describe(self) -> str:
        if not self.any:
            return ""
        waited = f" ({duration(self.waiting)} waiting for a node left out)" if self.waiting >= 0.5 else ""
        return f", {duration(self.seconds)} of GPU time {'held' if self.all_held else 'requested'}{waited}"


def _device_kind(report: dict) -> str:
    return str(report.get("device", "an unknown device")).split(":")[0]


@_or_none
def decoding(scores: dict) -> str | None:
    """One line on how long each model took to translate the domain test set, and where the evaluate step's time
    went (fetching the models: the candidate and champion from the store, the base model's pinned commit from the
    Hub; opening them: loading, converting to CTranslate2 and checking the conversion; decoding every test set;
    scoring and writing the results), or None when not measured."""
    timed = [(role, scores[role]["seconds"]) for role in ("base", "candidate", "champion")
             if (scores.get(role) or {}).get("seconds") is not None]
    if not timed:
        return None
    how = scores.get("decoding") or {}
    engine = f" ({how['engine']} on {how['device']}, {how['precision']})" if {"engine", "device", "precision"} <= \
        how.keys() else ""
    phases = scores.get("step_seconds") or {}
    spent = (f"; the step: {phases['fetching']:.1f} s fetching and {phases['opening']:.1f} s opening the models, "
             f"{phases['decoding']:.1f} s decoding every set, {phases['scoring']:.1f} s scoring and writing the "
             "results") if phases else ""
    kept = [role for role in ("base", "champion") if (scores.get(role) or {}).get("reused_from")]
    reused = f" (the {' and '.join(kept)} kept from an earlier run, not decoded again)" if kept else ""
    return (f"{scores.get('test_sentences', '?')} test sentences in "
            + ", ".join(f"{seconds:.1f} s by the {role}" for role, seconds in timed) + reused + engine + spent)


@_or_none
def screening(validation: dict) -> str | None:
    """One line on what the alignment screen cost in validation, or None when it did not run."""
    screen = validation.get("alignment") or {}
    if screen.get("seconds") is None:
        return None
    where = f" on {screen['device']}, {screen['precision']}" if {"device", "precision"} <= screen.keys() else ""
    both = " and back" if screen.get("reverse_model") else ""
    return f"{screen['screened']:,} new pairs scored{both} in {screen['seconds']:.1f} s{where}"
