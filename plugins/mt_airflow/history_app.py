"""The promotion-history page: a FastAPI app that the plugin mounts on the Airflow API server at /mt-history.

    /mt-history/                    every pipeline: a BLEU-over-runs chart and a table of runs
    /mt-history/report/{run path}   one run's report (report.md when the evaluation wrote one) and records
    /mt-history/api/history         the same rows as JSON

Pages are plain HTML with an inline SVG chart, rendered from Jinja2 templates (templates/history_*.html;
Airflow ships Jinja2): no JavaScript, no assets, so it renders the same inside the Airflow UI's frame and on its
own.

Plugin apps are not protected by Airflow automatically, so every route resolves the caller's Airflow login (the
UI's `_token` cookie, or a bearer token) and shows only the runs of the DAGs whose runs the auth manager lets that
user read: the same per-DAG rule as Airflow's own DAG-run lists (`get_authorized_dag_ids`, which knows teams),
then the DAG-run check for each DAG (`is_authorized_dag` with its DagDetails). A report of a DAG the user may not
read answers 404, as an unknown run does, so the page does not tell which pipelines exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable

import jinja2
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from mt_airflow import artifact_root, history

TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                               autoescape=True, trim_blocks=True, undefined=jinja2.StrictUndefined)
TEMPLATES.filters["pretty_json"] = lambda record: json.dumps(record, indent=2, ensure_ascii=False)
SERIES = {"candidate": ("#2b6cb0", ""), "base": ("#718096", "6 4"), "champion": ("#b7791f", "2 3")}


async def current_user(request: Request):
    """The Airflow user behind the request: 401 without a login, 403 for a token that is not valid."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    return await resolve_user_from_token(token)


def readable_dags(user=Depends(current_user)) -> Callable[[set[str]], set[str]]:
    """Which of the given DAG ids' runs this user may read."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    auth = get_auth_manager()

    def readable(dag_ids: set[str]) -> set[str]:
        listed = auth.get_authorized_dag_ids(user=user, method="GET") & dag_ids
        return {dag_id for dag_id in listed if auth.is_authorized_dag(
            method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user)}

    return readable


Readable = Annotated[Callable[[set[str]], set[str]], Depends(readable_dags)]
# FastAPI's own /docs, /redoc and /openapi.json are routes that its app-wide dependencies do not guard: they answered
# anyone, logged in or not. The page needs none of them.
app = FastAPI(title="Promotion history", dependencies=[Depends(current_user)], docs_url=None, redoc_url=None,
              openapi_url=None)


@dataclass
class Chart:
    """BLEU over runs, as the template draws it: candidate (solid), base (dashed), champion (dotted) lines, and
    a dot per scored candidate, green when promoted and red when refused."""

    runs: int
    top: float
    width: int = 640
    height: int = 200
    pad: int = 36
    lines: list[dict] = field(default_factory=list)
    dots: list[dict] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=lambda: [(n, c) for n, (c, _) in SERIES.items()])

    def xy(self, i: int, value: float) -> tuple[str, str]:
        span = self.width - 2 * self.pad
        x = self.pad + (i * span / (self.runs - 1) if self.runs > 1 else span / 2)
        return f"{x:.1f}", f"{self.height - self.pad - value / self.top * (self.height - 2 * self.pad):.1f}"


def chart_of(rows: list[history.Row]) -> Chart | None:
    series = {"candidate": [r.bleu_candidate for r in rows], "base": [r.bleu_base for r in rows],
              "champion": [r.bleu_champion for r in rows]}
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values:
        return None
    found = Chart(runs=len(rows), top=max(values) * 1.1 or 1.0)
    for name, vs in series.items():
        points = [",".join(found.xy(i, v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            colour, dash = SERIES[name]
            found.lines.append({"name": name, "colour": colour, "dash": dash, "points": " ".join(points)})
    for i, row in enumerate(rows):
        if row.bleu_candidate is not None:
            x, y = found.xy(i, row.bleu_candidate)
            fill = "#38a169" if row.decision == "promote" else "#e53e3e" if row.decision else "#a0aec0"
            found.dots.append({"x": x, "y": y, "fill": fill, "title": f"{row.run_id}: candidate "
                               f"{row.bleu_candidate:.2f} ({row.decision or 'no decision'})"})
    return found


def _macro(name: str, *args, **kwargs) -> str:
    return str(getattr(TEMPLATES.get_template("history_macros.html").module, name)(*args, **kwargs))


def chart(rows: list[history.Row]) -> str:
    """The chart alone, as HTML (inline SVG)."""
    return _macro("chart", chart_of(rows))


def table(rows: list[history.Row]) -> str:
    """The table of runs alone, newest first, as HTML."""
    return _macro("table", rows)


def page(template: str, **values) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(template).render(**values))


@app.get("/", response_class=HTMLResponse)
def index(readable: Readable) -> HTMLResponse:
    pipelines = {name: {"rows": rows, "chart": chart_of(rows)}
                 for name, rows in history.collect(artifact_root(), readable).items()}
    return page("history_index.html", title="Promotion history", pipelines=pipelines)


@app.get("/report/{run_path:path}", response_class=HTMLResponse)
def run_report(run_path: str, readable: Readable) -> HTMLResponse:
    try:
        found = history.report(artifact_root(), run_path.strip("/"), readable)
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail=f"no run {run_path!r} in the artifact store") from None
    row = found["row"]
    title = f"Report: {row.pipeline} {row.run_id}" if row else f"Report: {run_path}"
    return page("history_report.html", title=title, up="../" + "../" * run_path.strip("/").count("/"), row=row,
                report_md=found["report_md"], records=found["records"])


@app.get("/api/history")
def history_json(readable: Readable) -> dict:
    return {name: [r.as_dict() for r in rows] for name, rows in history.collect(artifact_root(), readable).items()}
