"""Tell a team's chat or incident tool when a retrain fails or its candidate is refused: a JSON POST to a webhook.

The URL lives in an Airflow connection, never in code: `extra` {"url": "https://..."}, or the host (a full
URL, or host + port + schema as the path). Its password, if set, is sent as a bearer token. The connection
id is the notifier's `conn_id`, else the worker's `MT_WEBHOOK_CONN_ID`, else `mt_webhook`; with no such
connection the notifier logs that it has nowhere to send and does nothing, so a deployment without a
webhook runs unchanged.

The DAG uses it as `on_failure_callback` (run by the DAG processor in a deployment, inline by `dag.test()`),
and its `release_gate` task calls `notify_refusal` when a language's gate refuses.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.request
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

DEFAULT_CONN_ID = "mt_webhook"


def webhook_url(conn) -> str:
    extra = conn.extra_dejson or {}
    if extra.get("url"):
        return extra["url"]
    host = conn.host or ""
    if "://" in host:
        return host
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.lstrip('/')}" if conn.schema else ""
    scheme = "https" if conn.conn_type == "https" else "http"
    return f"{scheme}://{host}{port}{path}"


def chat_text(found: dict[str, Any]) -> str:
    """The payload as one line for chat webhooks (Slack, Mattermost, Teams' connectors), which post `text` and refuse
    a payload without it. `&`, `<` and `>` are escaped as Slack asks: a message quotes data (a file's name in a failed
    validation), and in Slack `<!channel>` notifies everyone and `<https://...|text>` is a link."""
    where = f" in {found['task_id']}" if found.get("task_id") else ""
    line = f"{found['dag_id']} run {found['run_id']}: {found['event']}{where}: {found['message']}"
    line += f" ({found['run_url']})" if found.get("run_url") else ""
    line = " ".join(line.split())  # one line: an error's message may span several
    # Mattermost reads neither `<!channel>` nor `<url|text>`, but mentions (`@channel`, `@all`, `@user`) and Markdown
    # links (`[text](url)`): a word joiner, which shows as nothing, keeps data from being either.
    line = line.replace("@", "@\u2060").replace("](", "]\u2060(")
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _run_url(dag_id: str, run_id: str) -> str | None:
    base = os.environ.get("AIRFLOW__API__BASE_URL")
    return f"{base.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id, safe='')}" if base else None


class WebhookNotifier(BaseNotifier):
    """POST {event, dag_id, run_id, task_id, message, run_url, text} as JSON to the connection's webhook URL."""

    template_fields = ("message",)

    def __init__(self, *, event: str = "failure", message: str = "", conn_id: str | None = None,
                 timeout: float = 10.0) -> None:
        super().__init__()
        self.event = event
        self.message = message
        self.conn_id = conn_id
        self.timeout = timeout

    def render_template_fields(self, context, jinja_env=None) -> None:
        # dag.test() runs DAG callbacks with the serialized DAG, which has no template environment.
        if jinja_env is None and not hasattr(context.get("dag"), "get_template_env"):
            jinja_env = self.get_template_env()
        super().render_template_fields(context, jinja_env)

    def payload(self, context) -> dict[str, Any]:
        dag_run = context.get("dag_run")
        ti = context.get("ti") or context.get("task_instance")
        dag = context.get("dag")
        dag_id = getattr(dag_run, "dag_id", None) or getattr(dag, "dag_id", None)
        run_id = getattr(dag_run, "run_id", None) or context.get("run_id")
        message = self.message or str(context.get("exception") or context.get("reason") or "")
        found = {"event": self.event, "dag_id": dag_id, "run_id": run_id,
                 "task_id": getattr(ti, "task_id", None), "message": message,
                 "run_url": _run_url(dag_id, run_id) if dag_id and run_id else None}
        return {**found, "text": chat_text(found)}

    def notify(self, context) -> None:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
        from airflow.sdk.log import mask_secret

        conn_id = self.conn_id or os.environ.get("MT_WEBHOOK_CONN_ID") or DEFAULT_CONN_ID
        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            self.log.warning("no connection %r: the %s notification is not sent", conn_id, self.event)
            return
        headers = {"Content-Type": "application/json", "User-Agent": "mt-retrain-notifier"}
        if conn.password:
            mask_secret(conn.password)
            headers["Authorization"] = f"Bearer {conn.password}"
        url = webhook_url(conn)
        mask_secret(url)  # a chat webhook's URL is its credential (Slack's ends in its token)
        body = json.dumps(self.payload(context), default=str).encode()
        try:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                self.log.info("%s notification sent through %r: HTTP %s", self.event, conn_id, response.status)
        except (OSError, ValueError, http.client.HTTPException) as err:
            # A notification must not turn a refused (successful) run into a failed one, nor hide a failure: a URL
            # without a scheme (ValueError, InvalidURL: they quote the URL, whose path may be its token, so not
            # logged), a receiver that hangs up (RemoteDisconnected).
            why = ("its URL is not a valid http(s) URL: no scheme, or a space or control character in it"
                   if isinstance(err, (ValueError, http.client.InvalidURL)) else f"{type(err).__name__}: {err}")
            self.log.error("%s notification through %r failed: %s", self.event, conn_id, why)


def notify_refusal(context, message: str) -> None:
    WebhookNotifier(event="refusal", message=message).notify(context)
