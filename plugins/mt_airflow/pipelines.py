"""The retraining pipelines declared in `dags/pipelines.yaml`, validated entry by entry.

Each entry names a domain, a language pair (or several target languages), where its data lands, the base
model, the Hub repository, thresholds and a schedule; any other run parameter goes under `params`. An entry
becomes the Param defaults of one DAG, `translation_finetune__<domain>_<src>_<tgt>[_<tgt>...]`, so its
values are validated by the same typed config (tasks/config.py) that validates a run.

`load()` never raises for a bad entry: it returns the good pipelines and, separately, one `BrokenEntry`
per bad one, whose message names the entry and the field. The DAG file turns each broken entry into a
small marker DAG that shows the error, so one typo hides nothing but its own pipeline (see
dags/translation_finetune.py). A file that cannot be read or parsed at all is one broken entry.

The main DAG, `translation_finetune`, is no entry: its data prefix and its Hub repository are deployment settings,
MT_DATA_URI and MT_HUB_REPO_ID (`main_pipeline()`). Until a deployment sets both, the main DAG has no schedule and
the watcher does not watch for it, so a fresh install never retrains, or polls, against the placeholder bucket of
the form's default, nor trains every week to fail publishing to its placeholder repository.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks import locations
from tasks.config import PipelineParams

MAIN_DAG_ID = "translation_finetune"
DEFAULT_SCHEDULE = "@weekly"
DATA_URI_ENV = "MT_DATA_URI"
LAUNCHER_ENV = "MT_LAUNCHER"
HUB_REPO_ENV = "MT_HUB_REPO_ID"


class PipelineEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$", description="Short name of the data's domain.")
    source_lang: str
    target_lang: str | None = None
    target_langs: list[str] = []
    data_uri: str
    base_model: str | dict[str, str]  # one for every target language, or one per target language
    hub_repo_id: str
    schedule: str | None = DEFAULT_SCHEDULE
    watch_data: bool = True  # retrain when the data watcher announces new keys under data_uri
    thresholds: dict[str, Any] = {}  # gate thresholds, e.g. min_bleu_gain: any PipelineParams field
    params: dict[str, Any] = {}  # any other PipelineParams field


@dataclass(frozen=True)
class Pipeline:
    index: int
    dag_id: str
    domain: str
    data_uri: str
    schedule: str | None
    watch_data: bool
    params: dict[str, Any]  # Param defaults of the pipeline's DAG, validated by PipelineParams

    @property
    def languages(self) -> str:
        targets = self.params.get("target_langs") or [self.params["target_lang"]]
        return f"{self.params['source_lang']}→{','.join(targets)}"


@dataclass(frozen=True)
class MainPipeline:
    data_uri: str | None  # the deployment's data prefix; None: the main DAG runs only when triggered
    schedule: str | None
    params: dict[str, Any]  # Param defaults that differ from tasks/config.py's
    description: str  # one line for the DAG list: when it runs, or why it does not
    doc_md: str  # the same, with how to change it, above the DAG's own documentation


_HOW_TO_SCHEDULE = (
    f"Set `{DATA_URI_ENV}` in the environment of the DAG processor and the workers (both parse this file) to the "
    "data prefix to retrain on (`s3://bucket/prefix/`, or a folder under `MT_LOCAL_DATA_ROOTS`), and `MT_HUB_REPO_ID` "
    "to the Hub repository its releases go to. The DAG then retrains weekly and whenever `translation_data_watcher` "
    "announces new files there, and the form's `data_uri` and `hub_repo_id` default to them. Until then it runs only "
    "when triggered, on the `data_uri` given at the trigger.")


def deployment_defaults(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Param defaults the deployment gives every retraining DAG: `MT_LAUNCHER`, where the GPU steps run. A run
    started by the schedule or by new data cannot choose its launcher, so without it those runs would train on
    the worker (`local`), with no GPU, in a compose or Kubernetes deployment. A pipelines.yaml `defaults` or
    entry still says otherwise; an unknown launcher is refused where it is used, naming the variable."""
    value = env.get(LAUNCHER_ENV, "").strip()
    return {"launcher": value} if value else {}


def _launcher_problem(env: Mapping[str, str]) -> str | None:
    launcher = deployment_defaults(env).get("launcher")
    allowed = PipelineParams.model_fields["launcher"].annotation.__args__
    if launcher is None or launcher in allowed:
        return None
    return f"{LAUNCHER_ENV}={launcher!r} is not a launcher ({', '.join(allowed)})"


def _publishing_problem(env: Mapping[str, str], data_uri: str) -> str | None:
    """Why the main DAG's scheduled runs could not publish: they take no form, so without MT_HUB_REPO_ID each
    would train and then fail at publish, every week, on the form's placeholder repository."""
    repo = env.get(HUB_REPO_ENV, "").strip()
    if not repo:
        placeholder = PipelineParams.model_fields["hub_repo_id"].default
        return f"{HUB_REPO_ENV} is not set: its runs would publish to the form's placeholder {placeholder}"
    try:
        PipelineParams(data_uri=data_uri, hub_repo_id=repo)
    except ValidationError as err:
        found = [e["msg"] for e in err.errors() if e["loc"][:1] == ("hub_repo_id",)]
        return f"{HUB_REPO_ENV}={repo!r} is not allowed: {found[0]}" if found else None
    return None


def main_pipeline(env: Mapping[str, str] = os.environ) -> MainPipeline:
    """How the main DAG is scheduled, from the deployment's environment (read at parse time, like any
    setting of the DAG processor; never a Variable or a connection)."""
    value = env.get(DATA_URI_ENV, "").strip()
    why = f"{DATA_URI_ENV} is not set" if not value else locations.problem(value, env)
    if value and why:
        why = f"{DATA_URI_ENV}={value!r} is not allowed: {why}"
    why = why or _launcher_problem(env) or _publishing_problem(env, value)
    if why is None:
        line = f"Retrains weekly and on new data under {value} ({DATA_URI_ENV})."
        return MainPipeline(data_uri=value, schedule=DEFAULT_SCHEDULE,
                            params={**deployment_defaults(env), "data_uri": value,
                                    "hub_repo_id": env[HUB_REPO_ENV].strip()},
                            description=line, doc_md=f"**{line}**\n\n")
    line = f"Not scheduled: {why}. Runs only when triggered."
    # A trigger by hand still runs where the deployment's other DAGs run.
    return MainPipeline(data_uri=None, schedule=None, params={} if _launcher_problem(env) else deployment_defaults(env),
                        description=line,
                        doc_md=f"### Not scheduled yet\n\n{why[0].upper() + why[1:]}. {_HOW_TO_SCHEDULE}\n\n")


@dataclass(frozen=True)
class BrokenEntry:
    index: int | None  # None: the file itself
    dag_id: str  # the DAG id the entry would have had, or a stand-in
    message: str


def dag_id_for(domain: str, source: str, targets: list[str]) -> str:
    return f"{MAIN_DAG_ID}__{domain}_{source}_{'_'.join(targets)}"


def _label(index: int, raw: Any) -> str:
    domain = raw.get("domain") if isinstance(raw, dict) else None
    return f"pipeline #{index + 1}" + (f" ({domain!r})" if domain else "")


def _field_errors(err: ValidationError, prefix: str = "") -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "entry"
        got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""
        parts.append(f"field {prefix}{where}: {e['msg']}{got}")
    return "; ".join(parts)


def _stand_in_id(index: int, raw: Any) -> str:
    domain = raw.get("domain") if isinstance(raw, dict) else None
    safe = re.sub(r"[^a-z0-9_]+", "_", str(domain).lower()).strip("_") if domain else ""
    return f"{MAIN_DAG_ID}__invalid_{index + 1}" + (f"_{safe}" if safe else "")


def check_schedule(schedule: str | None) -> None:
    """Raise ValueError when Airflow could not schedule this cron expression or preset."""
    if schedule is None:
        return
    # The scheduler's own timetable checks the expression; the Task SDK's class only stores it.
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    timetable = CronTriggerTimetable(schedule, timezone="UTC")
    try:
        timetable.validate()
    except Exception as err:  # Airflow raises different types for a bad preset and a bad expression
        raise ValueError(f"not a cron expression or preset: {err}") from None
    # A valid expression can name a day that never comes (`0 3 30 2 *`): the scheduler only logs that it found no
    # next run, and the pipeline is silently never scheduled.
    try:
        upcoming = timetable.next_dagrun_info(last_automated_data_interval=None,
                                              restriction=TimeRestriction(earliest=None, latest=None, catchup=False))
    except Exception as err:  # croniter's CroniterBadDateError: no such day
        raise ValueError(f"it never fires ({err}); use `schedule: null` for no schedule") from None
    if upcoming is None:
        raise ValueError("it never fires; use `schedule: null` for no schedule")


def _base_models(label: str, entry: PipelineEntry, targets: list[str]) -> dict[str, Any]:
    """`base_model` and, with several target languages, `target_base_models`: an en→de model cannot be the
    base of en→nl, so a mapping gives each target its own (`{de: opus-mt-en-de, nl: opus-mt-en-nl}`)."""
    listed = entry.params.get("target_base_models") or {}
    where = "params.target_base_models" if listed else "base_model"
    if isinstance(entry.base_model, dict):
        if listed:
            raise ValueError(f"{label}: field base_model / params.target_base_models: give the base models of the "
                             "target languages in one place, base_model")
        listed = entry.base_model
    if not isinstance(listed, dict):
        raise ValueError(f"{label}: field {where}: expected a mapping of target language to model, got {listed!r}")
    for lang in listed:
        if lang not in targets:
            raise ValueError(f"{label}: field {where}.{lang}: {lang!r} is not a target language of this pipeline "
                             f"({', '.join(targets)})")
    if isinstance(entry.base_model, str):
        return {"base_model": entry.base_model}
    missing = [lang for lang in targets if lang not in listed]
    if missing:
        raise ValueError(f"{label}: field base_model: no base model for {', '.join(missing)}; name one for every "
                         f"target language ({', '.join(targets)}), or one model for all")
    models = {"base_model": listed[targets[0]]}
    return {**models, "target_base_models": dict(listed)} if entry.target_langs else models


def parse_entry(index: int, raw: Any, defaults: dict[str, Any]) -> Pipeline:
    """One validated pipeline; ValueError names the entry and every bad field."""
    label = _label(index, raw)
    if not isinstance(raw, dict):
        raise ValueError(f"{label}: expected a mapping of fields, got {type(raw).__name__}")
    if repeated := repeated_keys(raw):
        raise ValueError(f"{label}: " + "; ".join(repeated) + ": YAML would keep only the last; give each once")
    try:
        entry = PipelineEntry(**raw)
    except ValidationError as err:
        raise ValueError(f"{label}: {_field_errors(err)}") from None
    if bool(entry.target_lang) == bool(entry.target_langs):
        raise ValueError(f"{label}: field target_lang / target_langs: give exactly one of them")
    try:
        check_schedule(entry.schedule)
    except ValueError as err:
        raise ValueError(f"{label}: field schedule: {err} (got {entry.schedule!r})") from None
    targets = entry.target_langs or [entry.target_lang]
    named = {"source_lang": entry.source_lang, "data_uri": entry.data_uri, "hub_repo_id": entry.hub_repo_id,
             **_base_models(label, entry, targets)}
    if entry.target_langs:
        named.update(target_lang=entry.target_langs[0], target_langs=entry.target_langs)
    else:
        named["target_lang"] = entry.target_lang
    params = {**defaults, **entry.params, **entry.thresholds, **named}
    try:
        PipelineParams(**params)
    except ValidationError as err:
        from_env = "launcher" in deployment_defaults() and defaults["launcher"] == deployment_defaults()["launcher"]
        shown = {k: f"defaults.{k}" for k in defaults if k not in named}
        shown |= {"launcher": f"launcher (from {LAUNCHER_ENV})"} if from_env else {}
        shown |= {k: f"thresholds.{k}" for k in entry.thresholds} | {k: f"params.{k}" for k in entry.params}
        if isinstance(entry.base_model, dict):
            shown["target_base_models"] = "base_model"  # the per-language models come from there
        messages = []
        for e in err.errors():
            name = str(e["loc"][0]) if e["loc"] else ""
            got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""
            field = f"field {shown.get(name, name)}" if name else "fields"
            messages.append(f"{field}: {e['msg']}{got}")
        raise ValueError(f"{label}: " + "; ".join(messages)) from None
    return Pipeline(index=index, dag_id=dag_id_for(entry.domain, entry.source_lang, targets), domain=entry.domain,
                    data_uri=entry.data_uri, schedule=entry.schedule, watch_data=entry.watch_data, params=params)


def parse(document: Any) -> tuple[list[Pipeline], list[BrokenEntry]]:
    """Validate a parsed pipelines document: {defaults: {param: value}, pipelines: [entry, ...]}."""
    if document is None:
        return [], []
    if not isinstance(document, dict) or not isinstance(document.get("pipelines", []), list):
        return [], [BrokenEntry(None, f"{MAIN_DAG_ID}__invalid_file",
                                "expected a mapping with a 'pipelines' list (and optional 'defaults')")]
    unknown = sorted(set(document) - {"defaults", "pipelines"})
    defaults = document.get("defaults") or {}
    repeated = repeated_keys({key: value for key, value in document.items() if key != "pipelines"}) + [
        f"key {key} is given twice ({lines})" for key, lines in getattr(document, "repeated", ())]
    if unknown or not isinstance(defaults, dict) or repeated:
        what = (f"unknown top-level key(s) {unknown}" if unknown else "'defaults' must be a mapping"
                if not isinstance(defaults, dict) else "; ".join(repeated) + ": YAML would keep only the last")
        return [], [BrokenEntry(None, f"{MAIN_DAG_ID}__invalid_file", what)]
    defaults = {**deployment_defaults(), **defaults}
    good: list[Pipeline] = []
    broken: list[BrokenEntry] = []
    mains = main_destinations()
    for index, raw in enumerate(document.get("pipelines") or []):
        try:
            pipeline = parse_entry(index, raw, defaults)
        except ValueError as err:
            broken.append(BrokenEntry(index, _stand_in_id(index, raw), str(err)))
            continue
        taken = next((p for p in good if p.dag_id == pipeline.dag_id), None)
        if taken or pipeline.dag_id == MAIN_DAG_ID:
            broken.append(BrokenEntry(index, _stand_in_id(index, raw),
                                      f"{_label(index, raw)}: fields domain/source_lang/target: DAG id "
                                      f"{pipeline.dag_id} is already used by pipeline #{taken.index + 1}"))
            continue
        if shared := mains & destinations(pipeline):
            broken.append(BrokenEntry(index, _stand_in_id(index, raw), _shared_with_main(index, raw, shared)))
            continue
        if clash := next(((p, shared) for p in good if (shared := destinations(p) & destinations(pipeline))), None):
            broken.append(BrokenEntry(index, _stand_in_id(index, raw), _shared_destination(index, raw, *clash)))
            continue
        good.append(pipeline)
    return good, broken


def destinations(pipeline: Pipeline) -> set[tuple[str, ...]]:
    """Where the pipeline publishes, one model per target language (plugins/mt_airflow/pairs.py names them): the
    Hub's repositories (their names are case-insensitive there), or a local registry's folders."""
    params = pipeline.params
    repos = [f"{params['hub_repo_id']}-{t}" for t in params["target_langs"]] if params.get("target_langs") \
        else [params["hub_repo_id"]]
    if params.get("publish_target") == "local":
        return {("local", str(params.get("registry_uri") or "").rstrip("/"), repo) for repo in repos}
    return {("hub", repo.casefold()) for repo in repos}


def main_destinations() -> set[tuple[str, ...]]:
    """Where the main DAG's scheduled and data-triggered runs publish (MT_HUB_REPO_ID), once the deployment
    schedules it; a main DAG run only by hand publishes where its trigger says."""
    main = main_pipeline()
    if main.data_uri is None:
        return set()
    return destinations(Pipeline(index=-1, dag_id=MAIN_DAG_ID, domain="main", data_uri=main.data_uri,
                                 schedule=main.schedule, watch_data=True, params=main.params))


def _shared_with_main(index: int, raw: Any, shared: set[tuple[str, ...]]) -> str:
    where = ", ".join(sorted(d[-1] for d in shared))
    return (f"{_label(index, raw)}: field hub_repo_id: it publishes to {where}, as the main DAG {MAIN_DAG_ID} does "
            f"({HUB_REPO_ENV}): each would judge its model against the other's and replace it; give this pipeline "
            f"its own hub_repo_id, or unset {DATA_URI_ENV} and {HUB_REPO_ENV} to retire the main DAG's schedule")


def _shared_destination(index: int, raw: Any, other: Pipeline, shared: set[tuple[str, ...]]) -> str:
    """Two pipelines publishing to one repository would each gate their candidate against the other's champion
    on their own test set, and take turns replacing each other's model."""
    where = ", ".join(sorted(d[-1] for d in shared))
    return (f"{_label(index, raw)}: field hub_repo_id: it publishes to {where}, as pipeline #{other.index + 1} "
            f"({other.domain!r}) does: each would judge its model against the other's and replace it; give each "
            "pipeline its own hub_repo_id")


class _Mapping(dict):
    """A YAML mapping that remembers the keys it repeats: YAML keeps the last one silently, so a second
    `thresholds:` in an entry would drop the first, and a second `pipelines:` list every pipeline of the first."""

    repeated: tuple[tuple[str, str], ...] = ()  # (key, "lines 3 and 9")


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode):
    data = _Mapping()
    yield data
    first: dict[Any, int] = {}
    repeated = []
    for key_node, _ in node.value:  # before the mapping is built: building it folds `<<` merges into node.value
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            line = key_node.start_mark.line + 1
            if key_node.value in first:
                repeated.append((key_node.value, f"lines {first[key_node.value]} and {line}"))
            first.setdefault(key_node.value, line)
    data.update(loader.construct_mapping(node))
    data.repeated = tuple(repeated)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def repeated_keys(value: Any, where: str = "", seen: set[int] | None = None) -> list[str]:
    """Each key given twice in one mapping of `value` (parsed by `load`), with its field path and lines. A mapping
    or list that YAML aliases (`*name`) is looked at once: an alias may name its own ancestor, or fan out."""
    seen = set() if seen is None else seen
    if not isinstance(value, (dict, list)) or id(value) in seen:
        return []
    seen.add(id(value))
    found = []
    if isinstance(value, dict):
        found += [f"field {where}{key} is given twice ({lines})" for key, lines in getattr(value, "repeated", ())]
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        found += repeated_keys(item, f"{where}{key}.", seen)
    return found


def load(path: Path) -> tuple[list[Pipeline], list[BrokenEntry]]:
    """Read and validate the pipelines file; a missing file declares no pipelines."""
    if not path.exists():
        return [], []
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a SafeLoader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return [], [BrokenEntry(None, f"{MAIN_DAG_ID}__invalid_file", f"{path.name} cannot be read: {err}")]
    good, broken = parse(document)
    return good, [BrokenEntry(b.index, b.dag_id, f"{path.name}: {b.message}") for b in broken]
