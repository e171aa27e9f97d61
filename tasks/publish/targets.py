"""Where a run publishes, and where its champion comes from: the registry of its `publish_target`."""

from __future__ import annotations

from tasks.config import RunConfig
from tasks.publish.hub_registry import HubRegistry
from tasks.publish.local_registry import LocalRegistry
from tasks.publish.registry import Registry

__all__ = ["Registry", "open_registry"]


def open_registry(config: RunConfig, token: str | None = None, endpoint: str | None = None) -> Registry:
    """The registry a run config publishes to (and reads its champion from)."""
    if config.publish_target == "local":
        return LocalRegistry(config.registry_uri, config.hub_repo_id)
    return HubRegistry(config.hub_repo_id, token=token, endpoint=endpoint, private=config.hub_private)
