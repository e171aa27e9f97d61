"""The promotion history, read from the artifact store: one row per run (and language pair) of each pipeline.

Every run directory `{artifact_root}/{dag_id}/{run}/` (and each pair of a multi-language run,
`.../pairs/{src}-{tgt}/`) already holds what a reviewer asks about: config.json, validation_report.json,
model/train_report.json and launches.json (what training cost, and each try of a GPU step), eval/scores.json,
gate.json, publish.json and, when the evaluation wrote one, report.md. Rows are built from whatever is present, so
a failed run or an older run layout still shows, with blanks where a step never ran. Nothing here imports Airflow:
the history page (history_app.py) serves it.
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tasks import cost, layout
from tasks.io import storage
from tasks.summary import short_revision

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")
# What a row is made of, config first.
# pull_manifest.json is not among them: it holds the pipeline's whole carried history (12 MB a year into weekly
# runs), and a row only wants a date, which the run id holds (read from the manifest only for a run id without one).
ROW_RECORDS = (layout.CONFIG, layout.VALIDATION_REPORT, layout.SCORES, layout.GATE, layout.PUBLISH,
               layout.TRAIN_REPORT, layout.LAUNCHES)
READERS = 16  # concurrent reads of the records of runs not seen before


@dataclass
class Row:
    pipeline: str  # dag_id, plus the pair for multi-language runs
    dag_id: str
    pair: str
    run_id: str
    run_path: str  # "{dag_id}/{run}[/pairs/{pair}]": the key of the report link
    date: str | None = None
    rows_in: int | None = None
    rows_kept: int | None = None
    bleu_base: float | None = None
    bleu_candidate: float | None = None
    bleu_champion: float | None = None
    gain: float | None = None
    p_value: float | None = None
    training: str | None = None  # time and where (`3m12s on 1 × cuda`); the cost lines as its tooltip (tasks/cost.py)
    training_cost: str | None = None
    decision: str | None = None
    reasons: list[str] = field(default_factory=list)
    revision: str | None = None
    release_url: str | None = None
    has_report: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


_ROWS: dict[tuple[str, str], tuple[tuple, Row | None]] = {}  # (root, run path) → (its records' ETags, its row)


def _number(value) -> float | None:
    """A figure from a record, or None when it is none (a hand-edited "n/a", a list, a bool, NaN): one run's
    garbled record must not take down the page of every pipeline."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _bleu(scores: dict, role: str) -> float | None:
    return _number(_mapping(scores.get(role)).get("bleu"))


def run_dirs(root: str) -> list[str]:
    """Relative paths of every run directory (and pair sub-run) with a config.json, newest layout first."""
    return _listed(root)[0]


def _listed(root: str) -> tuple[list[str], dict[str, str]]:
    """The run directories, and on S3 the ETag of every object by its path under `root` (one listing tells which
    records a run has and whether they changed; a local root is globbed, its files read as needed)."""
    etags: dict[str, str] = {}
    if storage.is_s3(root):
        etags = {o.relpath: o.etag for o in storage.list_objects(root)}
        found = [rel for rel in etags if rel.endswith("/config.json")]
    else:
        base = Path(root)
        if not base.is_dir():
            return [], {}
        found = [p.relative_to(base).as_posix() for pattern in ("*/*/config.json", "*/*/pairs/*/config.json")
                 for p in base.glob(pattern)]
    runs = []
    for rel in found:
        parts = rel.split("/")[:-1]
        if len(parts) == 2 or (len(parts) == 4 and parts[2] == "pairs"):
            if all(SAFE.match(p) for p in parts) and not parts[0].startswith("_"):
                runs.append("/".join(parts))
    return sorted(runs), etags


def read_row(root: str, run_path: str, etags: dict[str, str] | None = None) -> Row | None:
    """The row of one run; with an S3 listing's `etags`, the records the listing does not show are not asked for."""
    from mt_airflow.outcome import p_value

    run_dir = storage.join(root, *run_path.split("/"))

    def read(name: str) -> dict:
        listed = not etags or f"{run_path}/{name}" in etags
        return storage.read_record(storage.join(run_dir, name)) if listed else {}

    config = read(layout.CONFIG)
    if not config or config.get("target_langs"):  # a multi-language run's results live in its pairs
        return None
    dag_id = _text(config.get("dag_id")) or run_path.split("/")[0]
    pair = f"{_text(config.get('source_lang')) or '?'}-{_text(config.get('target_lang')) or '?'}"
    multi = "/pairs/" in run_path
    row = Row(pipeline=f"{dag_id} ({pair})" if multi else dag_id, dag_id=dag_id, pair=pair,
              run_id=_text(config.get("run_id")) or run_path.split("/")[1], run_path=run_path)
    validation, scores, decision, published, trained, launched = (read(name) for name in ROW_RECORDS[1:])
    row.date = _date_from_run_id(row.run_id) or _text(read(layout.PULL_MANIFEST).get("pulled_at"))
    row.rows_in, row.rows_kept = _number(validation.get("rows_in")), _number(validation.get("kept"))
    row.bleu_base, row.bleu_candidate = _bleu(scores, "base"), _bleu(scores, "candidate")
    row.bleu_champion = _bleu(scores, "champion")
    bleu = _mapping(decision.get("bleu"))
    row.gain = _number(bleu.get("gain"))
    row.bleu_champion = row.bleu_champion if row.bleu_champion is not None else _number(bleu.get("champion"))
    try:
        row.p_value = _number(p_value(decision)) if decision else None
    except (AttributeError, TypeError):  # checks or p-values that are not what a gate writes
        row.p_value = None
    row.training = cost.training_time(trained, cost.tries(launched, "train"))
    launches = cost.launches(launched)
    row.training_cost = "; ".join(line for line in (cost.training(trained), launches and
                                                    f"the steps, from launch to end: {launches}") if line) or None
    row.decision = _text(decision.get("decision"))
    reasons = decision.get("reasons")
    row.reasons = [str(reason) for reason in reasons] if isinstance(reasons, list) else []
    if published.get("published"):
        row.revision = "pull request" if published.get("pr_url") else short_revision(published)
        row.release_url = _link(_text(published.get("pr_url")) or _text(published.get("url")))
    row.has_report = True  # every run has a report page; report.md is shown when the evaluation wrote one
    return row


def _link(url: str | None) -> str | None:
    """A release's address as a link, when a browser can open it: a Hub commit or pull request. A local registry's
    version folder (a path, an s3:// URI) is shown as its revision alone; a link to it led to a not-found page of
    Airflow's own, and a `javascript:` address from a hand-edited record would have run on click."""
    return url if url and re.match(r"https?://", url, re.IGNORECASE) else None


def _date_from_run_id(run_id: str) -> str | None:
    match = re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", run_id)
    return match.group(0) if match else None


def everyone(dag_ids: set[str]) -> set[str]:
    return dag_ids


def _readable_runs(root: str, readable: Callable[[set[str]], set[str]]) -> list[str]:
    """The run directories of the DAGs that `readable` lets through (a run's folder is named by its DAG id)."""
    return _readable(run_dirs(root), readable)


def _readable(found: list[str], readable: Callable[[set[str]], set[str]]) -> list[str]:
    allowed = readable({run_path.split("/")[0] for run_path in found})
    return [run_path for run_path in found if run_path.split("/")[0] in allowed]


def collect(root: str, readable: Callable[[set[str]], set[str]] = everyone) -> dict[str, list[Row]]:
    """Rows per pipeline, oldest run first (the chart's order), of the DAGs whose runs `readable` keeps."""
    found, etags = _listed(root)
    pipelines: dict[str, list[Row]] = {}
    for row in _rows(root, _readable(found, readable), etags):
        if row is not None:
            pipelines.setdefault(row.pipeline, []).append(row)
    listed = set(found)
    for known in [key for key in list(_ROWS) if key[0] == root and key[1] not in listed]:
        _ROWS.pop(known, None)  # a run directory deleted from the store
    for rows in pipelines.values():
        rows.sort(key=lambda r: (r.date or "", r.run_id))
    return dict(sorted(pipelines.items()))


def _rows(root: str, run_paths: list[str], etags: dict[str, str]) -> list[Row | None]:
    """Each run's row. A year of weekly runs of many pipelines is thousands of run directories of several records
    each: an S3 run whose records' ETags are those of its cached row is not read again, and the others are read
    READERS at a time, so a page view costs one listing plus the requests of what changed."""
    def key(run_path: str) -> tuple | None:
        # The manifest's ETag too (from the listing, never read for it): a dateless run id's row is dated by it.
        return tuple(etags.get(f"{run_path}/{name}") for name in (*ROW_RECORDS, layout.PULL_MANIFEST)) \
            if etags else None

    keys = {run_path: key(run_path) for run_path in run_paths}
    cached = {p: _ROWS.get((root, p)) for p in run_paths}  # requests are served in threads: read the cache once
    rows = {p: cached[p][1] for p in run_paths if keys[p] is not None and cached[p] and cached[p][0] == keys[p]}
    stale = [p for p in run_paths if p not in rows]
    with ThreadPoolExecutor(READERS) as pool:
        rows.update(zip(stale, pool.map(lambda run_path: read_row(root, run_path, etags), stale)))
    for run_path in stale:
        if keys[run_path] is not None:
            _ROWS[(root, run_path)] = (keys[run_path], rows[run_path])
    return [rows[p] for p in run_paths]


def report(root: str, run_path: str, readable: Callable[[set[str]], set[str]] = everyone) -> dict:
    """What the report page shows for one run: report.md if the evaluation wrote one, and the raw records.
    FileNotFoundError for a run that is not there, or whose DAG `readable` does not keep."""
    if run_path not in _readable_runs(root, readable):
        raise FileNotFoundError(run_path)
    run_dir = storage.join(root, *run_path.split("/"))
    try:
        written = storage.read_text(storage.join(run_dir, layout.REPORT))
    except FileNotFoundError:
        written = None
    records = {name: storage.read_record(storage.join(run_dir, name)) for name in
               (layout.GATE, layout.SCORES, layout.VALIDATION_REPORT, layout.PUBLISH, layout.PULL_MANIFEST,
                layout.LAUNCHES, layout.HUB_REVISIONS)}
    return {"row": read_row(root, run_path), "report_md": written, "records": records}
