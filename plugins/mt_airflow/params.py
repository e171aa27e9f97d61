"""The DAG's Params, derived from the run config's JSON schema so the trigger form and validation agree."""

from __future__ import annotations

from airflow.sdk import Param

from tasks.config import param_specs


def dag_params(**overrides) -> dict[str, Param]:
    """One Param per PipelineParams field; `overrides` replace defaults (e.g. per-pipeline settings)."""
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
