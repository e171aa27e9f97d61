"""The DAG's Params, derived from the run config's JSON schema so the trigger form and validation agree."""

from __future__ import annotations

import re

from airflow.sdk import Param

from tasks.config import param_formats, param_specs


_REGISTERED: dict[str, str] = {}  # words → the pattern registered under them in this process


def register_formats() -> None:
    """Teach jsonschema the place formats the Params name in words (tasks.config.param_formats).

    Airflow validates Params with jsonschema and its default FormatChecker, whose checkers are shared by the
    process: in the DAG processor and `airflow dags test` (which call this through `dag_params`) and in the API
    server (the plugin calls it at start-up). A refused place is then answered "'/etc' is not a place this
    deployment allows: s3://bucket/... or an absolute path under MT_LOCAL_DATA_ROOTS (...)" instead of with a
    regular expression. A process that never registered them lets the value through to the worker, whose
    config check refuses it in words too.
    """
    from jsonschema import FormatChecker

    for words, pattern in param_formats().items():
        if _REGISTERED.get(words) != pattern:  # once per process: every pipeline's DAG names the same ones
            FormatChecker.checkers[words] = (_matcher(re.compile(pattern)), ())
            _REGISTERED[words] = pattern


def _matcher(rx: re.Pattern):
    """A format check: jsonschema's own `pattern` semantics (search), and only strings (as formats apply)."""
    return lambda value: not isinstance(value, str) or rx.search(value) is not None


def dag_params(**overrides) -> dict[str, Param]:
    """One Param per PipelineParams field; `overrides` replace defaults (e.g. per-pipeline settings)."""
    register_formats()
    params = {}
    for name, spec in param_specs().items():
        spec = dict(spec)
        default = overrides.pop(name, spec.pop("default"))
        spec.pop("default", None)
        description = spec.pop("description", None)
        params[name] = Param(default, description=description, **spec)
    if overrides:
        raise ValueError(f"unknown parameter(s) {sorted(overrides)}")
    return params
