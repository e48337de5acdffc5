"""Errors of the fleet, each with a message an operator can act on."""

from __future__ import annotations

from engine.errors import EngineError


class AppOnManyHosts(EngineError):
    """An app id found on more than one host, and no host_id to choose (409)."""

    def __init__(self, app_id: str, hosts: list[str]) -> None:
        super().__init__(
            f"app {app_id!r} is on {len(hosts)} hosts ({', '.join(hosts)}); say which with host_id"
        )
        self.hosts = hosts


class HostOffline(EngineError):
    """New work for an app whose host's worker stopped heartbeating (503):
    refused now rather than queued for a worker that may never come."""


class UnknownHost(EngineError):
    """No host row with that id (404)."""


class RefreshNotQueued(EngineError):
    """The broker did not take an inventory refresh message (503)."""
