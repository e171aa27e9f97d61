"""The release gate and consumption: what one run's languages publish together, and what each one consumes.

A run with several target languages trains and gates each language on its own (a language with nothing new,
a failed validation or a refusal affects only itself), then releases them together: `decide` lets publishing
go ahead only when every language that reached its gate passed it. Its verdict is written into each
language's run directory (`release_gate.json`), so the consumption rule below and a reader of the run can see it.

A language's pulled objects are consumed (tasks/data/consumed.py) once its gate has decided and, when it
promoted a model to publish, once that model was published. A refusal consumes (the decision was made on that
data); a promoted model that was not published does not: not released because another language was refused, or
released but its publish failed. Its data stays new, so the next run trains it again and releases it, instead of
finding nothing new (`new_only`) or waiting for more data (`all`).
"""

from __future__ import annotations

import logging

from tasks import layout
from tasks.config import RunConfig
from tasks.data import consumed
from tasks.evaluate import gate
from tasks.io import storage

log = logging.getLogger(__name__)


def pair_name(config: RunConfig) -> str:
    return f"{config.source_lang}-{config.target_lang}"


def decide(configs: list[RunConfig]) -> dict:
    """{released, message, refused: {pair: reasons}, decisions: {pair: decision}}, also written per language."""
    reached = {pair_name(cfg): d for cfg in configs if (d := gate.result(cfg)) is not None}
    refused = {name: d["reasons"] for name, d in reached.items() if not d["promote"]}
    # A language short of its gate is one that pulled nothing new (its steps skipped), else a step of it failed and
    # was marked success by hand, or is cleared and running again: its data is undecided, so nothing is released.
    undecided = [pair_name(cfg) for cfg in configs if pair_name(cfg) not in reached and not _nothing_new(cfg)]
    if undecided:
        refused.update({name: ["it pulled new data but did not reach its gate (a failed step marked success?)"]
                        for name in undecided})
    if not reached and not undecided:
        message = "no language reached its gate (nothing new was pulled): nothing to release"
    elif refused:
        message = "not every language passed its gate: " + "; ".join(
            f"{name}: {', '.join(reasons)}" for name, reasons in refused.items())
    else:
        message = f"released: {', '.join(sorted(reached))}"
    outcome = {"released": bool(reached) and not refused, "message": message, "refused": refused,
               "decisions": {name: d["decision"] for name, d in reached.items()}}
    for cfg in configs:
        storage.write_json(cfg.uri(layout.RELEASE_GATE), outcome)
    log.info("release gate: %s", message)
    return outcome


def _nothing_new(config: RunConfig) -> bool:
    """Whether the language's pull found nothing new (what makes its steps skip)."""
    return bool((storage.read_json_or(config.uri(layout.PULL_MANIFEST)) or {}).get("nothing_new"))


def not_consumable(config: RunConfig) -> str | None:
    """Why this language's pulled objects must not be consumed yet, or None when they may be."""
    decision = gate.result(config)
    if decision is None:
        return "its gate did not run"
    if config.data_snapshot:
        return consumed.SNAPSHOT_CONSUMES_NOTHING
    if not decision["promote"] or not config.push_to_hub:
        return None
    released = storage.read_json_or(config.uri(layout.RELEASE_GATE))
    if released is None:
        return "the release gate did not run"
    if not released["released"]:
        return (f"its model passed its gate but was not released ({released['message']}); the next run trains "
                "and releases it again")
    published = storage.read_json_or(config.uri(layout.PUBLISH)) or {}
    if not published.get("published"):
        return "its promoted model was released but not published; the next run trains and publishes it again"
    return None
