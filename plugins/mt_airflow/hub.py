"""A hook that finds the Hugging Face Hub token (and optionally a private Hub endpoint) for publishing.

The token comes from an Airflow connection (password field; `extra` may hold {"endpoint": "https://..."}),
falling back to the worker's `HF_TOKEN`. Either way it is registered with Airflow's secret masker before
anything can log it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret


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
    default_conn_name = "huggingface_default"
    conn_type = "generic"
    hook_name = "Hugging Face Hub"

    def __init__(self, hf_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.hf_conn_id = hf_conn_id

    def get_credentials(self) -> HubCredentials:
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
