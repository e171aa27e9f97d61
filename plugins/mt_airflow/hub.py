"""A hook that finds the Hugging Face Hub token (and optionally a private Hub endpoint) for publishing.

The token comes from an Airflow connection (password field; `extra` may hold {"endpoint": "https://..."}),
falling back to the worker's `HF_TOKEN`. Either way it is registered with Airflow's secret masker before
anything can log it.

Which connection a run reads is a trigger Param (`hub_conn_id`), and trigger users are not token holders: a run
naming any connection (a warehouse database's) would send its password to the Hub endpoint as a bearer token.
So only the connections the deployment lists in `MT_HUB_CONN_IDS` (comma-separated; unset: `huggingface_default`
only) may be a token source, checked before the connection is read. A deployment that keeps its Hub token in a
connection of another name lists it there (e.g. `MT_HUB_CONN_IDS=huggingface_default,hub_prod`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException
from airflow.sdk.log import mask_secret

ALLOWED_CONNECTIONS_ENV = "MT_HUB_CONN_IDS"
DEFAULT_CONNECTION = "huggingface_default"


class HubConnectionNotAllowed(AirflowFailException):
    """The run names a connection the deployment does not allow as a Hub token source (fails without retries)."""


def allowed_connections() -> list[str]:
    """The connections this deployment lets runs use as a Hub token source: `MT_HUB_CONN_IDS`, comma-separated;
    unset or empty: the default connection only."""
    listed = [name.strip() for name in os.environ.get(ALLOWED_CONNECTIONS_ENV, "").split(",")]
    return [name for name in listed if name] or [DEFAULT_CONNECTION]


def refuse_disallowed(conn_id: str) -> None:
    """Raise HubConnectionNotAllowed unless the deployment allows `conn_id` as a Hub token source. Checked by
    prepare, before the run pulls and screens its data, and again where the token is read."""
    if conn_id not in (allowed := allowed_connections()):
        raise HubConnectionNotAllowed(
            f"hub_conn_id {conn_id!r} is not a Hub token source this deployment allows "
            f"({ALLOWED_CONNECTIONS_ENV}: {', '.join(allowed)}); its password is not read or sent. Name an "
            f"allowed connection, or ask the deployment to add this one to {ALLOWED_CONNECTIONS_ENV}")


@dataclass(frozen=True)
class HubCredentials:
    token: str | None
    endpoint: str | None
    source: str  # where the token came from, for the log: never the token itself

    def __repr__(self) -> str:
        return f"HubCredentials(token={'***' if self.token else None}, endpoint={self.endpoint!r}, " \
               f"source={self.source!r})"


class HuggingFaceHubHook(BaseHook):
    conn_name_attr = "hf_conn_id"
    default_conn_name = DEFAULT_CONNECTION
    conn_type = "generic"
    hook_name = "Hugging Face Hub"

    def __init__(self, hf_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.hf_conn_id = hf_conn_id

    def get_credentials(self) -> HubCredentials:
        refuse_disallowed(self.hf_conn_id)
        try:
            conn = self.get_connection(self.hf_conn_id)
        except AirflowNotFoundException:
            conn = None
        if conn is not None and conn.password:
            token, source = conn.password, f"connection {self.hf_conn_id!r}"
            endpoint = conn.extra_dejson.get("endpoint") or os.environ.get("HF_ENDPOINT")
        else:
            token, source = os.environ.get("HF_TOKEN"), "HF_TOKEN environment variable"
            endpoint = os.environ.get("HF_ENDPOINT")
        if token:
            mask_secret(token)
        else:
            source = f"none (no connection {self.hf_conn_id!r} with a password, no HF_TOKEN)"
        self.log.info("Hub token from %s; endpoint %s", source, endpoint or "huggingface.co")
        return HubCredentials(token=token, endpoint=endpoint, source=source)


def registry_credentials(config) -> HubCredentials:
    """What the run's registry needs: the Hub token of `config.hub_conn_id`, or nothing for a local registry."""
    if config.publish_target != "hub":
        return HubCredentials(token=None, endpoint=None, source="none (local registry)")
    return HuggingFaceHubHook(config.hub_conn_id).get_credentials()
