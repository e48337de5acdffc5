"""A real Docker client whose engine becomes unreachable or slow on cue.

It stands in for an engine that goes away (dockerd stopped, restarted, its
socket gone) or answers too late: every HTTP request of a real DockerClient
goes through `send`, and from a chosen request on, the requests fail as
docker-py's do then: requests.exceptions.ConnectionError or ReadTimeout (an
OSError, not a docker.errors.APIError). Stopping the real dockerd instead
(kill -STOP) would break every other test using this engine at the time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker
import requests

Predicate = Callable[[requests.PreparedRequest], bool]


def request_to(method: str, path_end: str) -> Predicate:
    """Matches METHOD requests whose path (without the query) ends with PATH_END."""

    def matches(request: requests.PreparedRequest) -> bool:
        path = (request.path_url or "").split("?", 1)[0]
        return request.method == method and path.endswith(path_end)

    return matches


@dataclass
class FlakyEngine:
    client: docker.DockerClient = field(default_factory=lambda: docker.from_env(timeout=120))
    broken: bool = False
    failures: list[str] = field(default_factory=list)  # "METHOD /path" of each failed request
    _break_at: Predicate | None = None
    _fail_once: Predicate | None = None
    _error: type[Exception] = requests.exceptions.ConnectionError
    _hooks: list[tuple[Predicate, Callable[[], None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        real_send = self.client.api.send

        def send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            for predicate, action in self._hooks:
                if predicate(request):
                    action()
            if not self.broken and self._break_at is not None and self._break_at(request):
                self.broken = True
            once = self._fail_once is not None and self._fail_once(request)
            if self.broken or once:
                if once:
                    self._fail_once = None
                self.failures.append(f"{request.method} {request.path_url}")
                raise self._error(f"test: the engine did not answer {request.method}")
            return real_send(request, **kwargs)

        self.client.api.send = send  # type: ignore[method-assign]

    def break_at(
        self, predicate: Predicate, error: type[Exception] = requests.exceptions.ConnectionError
    ) -> None:
        """From the first request matching PREDICATE on, every request fails."""
        self._break_at, self._error = predicate, error

    def fail_once(
        self, predicate: Predicate, error: type[Exception] = requests.exceptions.ReadTimeout
    ) -> None:
        """The first request matching PREDICATE fails (a slow engine); the rest go through."""
        self._fail_once, self._error = predicate, error

    def before(self, predicate: Predicate, action: Callable[[], None]) -> None:
        """Run ACTION each time a request matching PREDICATE is about to be sent
        (a fault elsewhere, injected at that point)."""
        self._hooks.append((predicate, action))

    def repair(self) -> None:
        self.broken, self._break_at, self._fail_once = False, None, None
