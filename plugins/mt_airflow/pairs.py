"""One run, several language pairs: each pair is a complete run directory of its own.

A run with `target_langs` fans out into one sub-run per pair, `{run_dir}/pairs/{src}-{tgt}/`, whose
config.json is the run's config with that pair's target language, data prefix and Hub repository. Every step
of tasks/ then works on a pair exactly as on a single-pair run, and the DAG maps its steps over the list of
pair run directories. A run without `target_langs` is its own only pair, so its layout does not change.

Conventions (documented in the Param's description and the README):
- data of a pair: `{data_uri}/{src}-{tgt}/`; a `data_snapshot` and a `retract_data` are split by that prefix
  (a folder above it stands for the whole of it; an entry in no pair's folder is refused by the config);
- Hub repository of a pair: `{hub_repo_id}-{tgt}`;
- base model of a pair: `target_base_models[tgt]`, else `base_model`.
"""

from __future__ import annotations

from tasks.config import RunConfig, entries_of, pair_data_uri, sub_run

PAIRS = "pairs"


def pair_name(config: RunConfig) -> str:
    return f"{config.source_lang}-{config.target_lang}"


def data_prefixes(data_uri: str, source_lang: str, target_lang: str, target_langs: list[str] | None) -> dict[str, str]:
    """Each target language → the data prefix its runs pull: its pair's with `target_langs`, else `data_uri`."""
    if not target_langs:
        return {target_lang: data_uri}
    return {target: pair_data_uri(data_uri, source_lang, target) for target in target_langs}


def expand(config: RunConfig) -> list[RunConfig]:
    """The run's pairs as run configs, in the order of `target_langs` (or the run itself)."""
    if not config.target_langs:
        return [config]
    pairs = []
    for target in config.target_langs:
        name = f"{config.source_lang}-{target}"
        data_uri = pair_data_uri(config.data_uri, config.source_lang, target)
        changes = {
            "target_lang": target,
            "target_langs": [],
            "data_uri": data_uri,
            "data_snapshot": entries_of(config.data_snapshot, data_uri),
            "retract_data": entries_of(config.retract_data, data_uri),
            "hub_repo_id": f"{config.hub_repo_id}-{target}",
            "base_model": config.target_base_models.get(target, config.base_model),
            "target_base_models": {},
            "languages_in_run": len(config.target_langs),
        }
        pairs.append(sub_run(config, f"{PAIRS}/{name}", **changes))
    return pairs
