"""The promotion-history page: a FastAPI app that the plugin mounts on the Airflow API server at /mt-history.

    /mt-history/                    every pipeline: a BLEU-over-runs chart and a table of runs
    /mt-history/report/{run path}   one run's report (report.md when the evaluation wrote one) and records
    /mt-history/api/history         the same rows as JSON

Pages are plain HTML with an inline SVG chart: no JavaScript, no assets, so it renders the same inside the
Airflow UI's frame and on its own. Plugin apps are not protected by Airflow automatically, so every route
checks the caller's Airflow login (the UI's `_token` cookie, or a bearer token) and DAG-run read access.
"""

from __future__ import annotations

import html
import json

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from mt_airflow import artifact_root
from mt_airflow import history

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.2rem;color:#1a202c}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem}
th,td{border:1px solid #cbd5e0;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#edf2f7} .promote{color:#276749;font-weight:600} .refuse{color:#9b2c2c;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums} pre{background:#f7fafc;padding:.75rem;overflow:auto}
"""


async def require_login(request: Request) -> None:
    """The Airflow user behind the request must be allowed to read DAG runs."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    user = await resolve_user_from_token(token)
    if not get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN, user=user):
        raise HTTPException(status_code=403, detail="not allowed to read DAG runs")


app = FastAPI(title="Promotion history", dependencies=[Depends(require_login)])


def _num(value, fmt="{:.2f}") -> str:
    return "" if value is None else html.escape(fmt.format(value))


def chart(rows: list[history.Row], width: int = 640, height: int = 200) -> str:
    """BLEU over runs as an inline SVG: candidate (solid), base (dashed), champion (dotted)."""
    series = {"candidate": [r.bleu_candidate for r in rows], "base": [r.bleu_base for r in rows],
              "champion": [r.bleu_champion for r in rows]}
    values = [v for vs in series.values() for v in vs if v is not None]
    if not values:
        return "<p>No scores yet.</p>"
    top = max(values) * 1.1 or 1.0
    pad, n = 36, len(rows)

    def xy(i, v):
        x = pad + (i * (width - 2 * pad) / max(n - 1, 1) if n > 1 else (width - 2 * pad) / 2)
        return f"{x:.1f},{height - pad - v / top * (height - 2 * pad):.1f}"

    dash = {"candidate": "", "base": ' stroke-dasharray="6 4"', "champion": ' stroke-dasharray="2 3"'}
    colour = {"candidate": "#2b6cb0", "base": "#718096", "champion": "#b7791f"}
    parts = [f'<svg class="bleu-chart" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>BLEU over {n} run(s)</title>",
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#a0aec0"/>',
             f'<text x="4" y="{pad}" font-size="10">{top:.0f}</text>',
             f'<text x="4" y="{height - pad}" font-size="10">0</text>']
    for name, vs in series.items():
        points = [xy(i, v) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            parts.append(f'<polyline fill="none" stroke="{colour[name]}" stroke-width="2"{dash[name]} '
                         f'points="{" ".join(points)}"><title>{name}</title></polyline>')
    for i, row in enumerate(rows):
        if row.bleu_candidate is None:
            continue
        fill = "#38a169" if row.decision == "promote" else "#e53e3e" if row.decision else "#a0aec0"
        x, y = xy(i, row.bleu_candidate).split(",")
        parts.append(f'<circle cx="{x}" cy="{y}" r="4" fill="{fill}"><title>{html.escape(row.run_id)}: '
                     f'candidate {row.bleu_candidate:.2f} ({row.decision or "no decision"})</title></circle>')
    legend = " ".join(f'<tspan fill="{colour[k]}">— {k}</tspan>' for k in series)
    parts.append(f'<text x="{pad}" y="{height - 8}" font-size="11">{legend} (runs, oldest left)</text></svg>')
    return "".join(parts)


def table(rows: list[history.Row]) -> str:
    head = ("run", "date", "data rows", "BLEU base", "candidate", "champion", "Δ", "p-value", "decision",
            "reasons", "Hub revision / PR", "report")
    lines = ["<table class=\"runs\"><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in reversed(rows):  # newest first
        release = (f'<a href="{html.escape(r.release_url)}" target="_blank" rel="noopener">'
                   f"{html.escape(r.revision or 'release')}</a>" if r.release_url else "")
        rows_text = "" if r.rows_kept is None else f"{r.rows_kept} of {r.rows_in}"
        cells = [
            f'<a href="../dags/{html.escape(r.dag_id)}/runs/{html.escape(r.run_id)}" target="_top">'
            f"{html.escape(r.run_id)}</a>",
            html.escape(r.date or ""), rows_text, _num(r.bleu_base), _num(r.bleu_candidate), _num(r.bleu_champion),
            _num(r.gain, "{:+.2f}"), _num(r.p_value, "{:.3g}"),
            f'<span class="{html.escape(r.decision or "")}">{html.escape(r.decision or "—")}</span>',
            "<br>".join(html.escape(x) for x in r.reasons), release,
            f'<a class="report" href="report/{html.escape(r.run_path)}">report</a>',
        ]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(lines) + "</table>"


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                        f"<style>{STYLE}</style></head><body>{body}</body></html>")


@app.get("/", response_class=HTMLResponse)
def index() -> HTMLResponse:
    pipelines = history.collect(artifact_root())
    if not pipelines:
        return page("Promotion history", "<h1>Promotion history</h1><p>No runs yet in the artifact store.</p>")
    sections = [f'<section class="pipeline"><h2>{html.escape(name)}</h2>{chart(rows)}{table(rows)}</section>'
                for name, rows in pipelines.items()]
    return page("Promotion history", "<h1>Promotion history</h1>" + "".join(sections))


@app.get("/report/{run_path:path}", response_class=HTMLResponse)
def run_report(run_path: str) -> HTMLResponse:
    try:
        found = history.report(artifact_root(), run_path.strip("/"))
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail=f"no run {run_path!r} in the artifact store") from None
    row = found["row"]
    title = f"Report: {row.pipeline} {row.run_id}" if row else f"Report: {run_path}"
    body = [f"<h1>{html.escape(title)}</h1>", '<p><a href="../' + "../" * run_path.count("/") +
            '">← promotion history</a></p>']
    if row:
        body.append(table([row]))
    if found["report_md"]:
        body.append(f'<h2>Evaluation report</h2><pre class="report-md">{html.escape(found["report_md"])}</pre>')
    for name, record in found["records"].items():
        if record:
            body.append(f"<h2>{html.escape(name)}</h2><pre>{html.escape(json.dumps(record, indent=2))}</pre>")
    return page(title, "".join(body))


@app.get("/api/history")
def history_json() -> dict:
    return {name: [r.as_dict() for r in rows] for name, rows in history.collect(artifact_root()).items()}
