"""Parse time of many pipelines: the DAG processor reads dags/translation_finetune.py, which builds one DAG per
pipelines.yaml entry (each with its Params, its languages' task groups and its asset schedule), within Airflow's
import timeout (`[core] dagbag_import_timeout`, 30 s by default).

The workload is a pipelines.yaml of `--pipelines` entries with `--languages` target languages each (default
50 × 3), in a scratch copy of the DAG folder, parsed by Airflow's own DagBag in a fresh process, as the DAG
processor parses it. Every entry must become a DAG, and none an import error.

    python bench/pipelines_parse.py [--tiny] [--pipelines N] [--languages N]

The last line is one JSON object: pipelines, languages, dags, parse_seconds (translation_finetune.py alone, as
DagBag timed it), import_timeout_seconds and headroom (the timeout over the parse time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LANGUAGES = ["de", "nl", "fr", "es", "it", "pt", "pl", "sv"]

_PARSE = """
import json, sys
from airflow.configuration import conf
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"dags": sorted(bag.dags), "errors": {k: str(v)[:500] for k, v in bag.import_errors.items()},
                  "invalid": sorted(d for d, dag in bag.dags.items() if "invalid-pipeline" in dag.tags),
                  "seconds": {s.file.rsplit("/", 1)[-1]: s.duration.total_seconds() for s in bag.dagbag_stats},
                  "timeout": conf.getfloat("core", "dagbag_import_timeout")}))
"""


def pipelines_yaml(pipelines: int, languages: int) -> str:
    """`pipelines` entries, each fine-tuning into `languages` target languages from its own base models."""
    targets = LANGUAGES[:languages]
    entries = []
    for i in range(pipelines):
        models = "".join(f"\n      {t}: Helsinki-NLP/opus-mt-en-{t}" for t in targets)
        entries.append(f"""  - domain: domain{i:03d}
    source_lang: en
    target_langs: [{", ".join(targets)}]
    data_uri: s3://translation-data/domain{i:03d}/
    base_model:{models}
    hub_repo_id: my-org/opus-mt-domain{i:03d}
    schedule: "@weekly"
    thresholds:
      min_bleu_gain: 0.5
""")
    return "defaults:\n  launcher: kubernetes\n\npipelines:\n" + "".join(entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run: 3 pipelines × 2 languages")
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--languages", type=int, default=3, choices=range(1, len(LANGUAGES) + 1))
    args = parser.parse_args()
    pipelines, languages = (3, 2) if args.tiny else (args.pipelines, args.languages)
    with tempfile.TemporaryDirectory() as scratch:
        dags, home = Path(scratch) / "dags", Path(scratch) / "airflow-home"
        dags.mkdir()
        shutil.copy(REPO / "dags" / "translation_finetune.py", dags)
        (dags / "pipelines.yaml").write_text(pipelines_yaml(pipelines, languages), encoding="utf-8")
        env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run([sys.executable, "-c", _PARSE, str(dags)], env=env, capture_output=True, text=True,
                              timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"parsing failed: {done.stderr[-3000:]}")
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    if parsed["errors"]:
        raise SystemExit(f"import errors: {parsed['errors']}")
    expected = pipelines + 1  # and the main DAG
    if len(parsed["dags"]) != expected or parsed["invalid"]:
        raise SystemExit(f"{len(parsed['dags'])} DAGs, expected {expected}; invalid: {parsed['invalid'][:5]}")
    seconds = parsed["seconds"]["translation_finetune.py"]
    print(json.dumps({"pipelines": pipelines, "languages": languages, "dags": len(parsed["dags"]),
                      "parse_seconds": round(seconds, 2), "import_timeout_seconds": parsed["timeout"],
                      "headroom": round(parsed["timeout"] / seconds, 1), "tiny": args.tiny}))


if __name__ == "__main__":
    main()
