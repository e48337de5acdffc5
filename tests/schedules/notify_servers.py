"""Real local servers that notifications are sent to in tests: an SMTP
server (aiosmtpd, with a password it checks), an HTTP receiver for json://,
a server that accepts connections and never answers, and a closed port."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SMTP_USER = "notifier"
# Distinctive strings, so a test can look for them anywhere.
SMTP_PASSWORD = "smtp-Pa55-q7Zx9vLk"
HTTP_TOKEN = "hook-Tok3n-R8mW2sXy4"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SmtpServer:
    port: int
    messages: list[Message] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)

    def url(self, to: str = "ops@example.com") -> str:
        # mode=insecure: plain SMTP, no STARTTLS (the test server has no certificate).
        return (
            f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{self.port}"
            f"?mode=insecure&from=backup@example.com&to={to}"
        )

    def wait_for(self, count: int, timeout: float = 20) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


class _SmtpHandler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        self.server.messages.append(message_from_bytes(envelope.original_content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(port=free_port())

    def authenticate(smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(), SMTP_PASSWORD.encode()
        )  # fmt: skip
        server.logins.append((mechanism, ok))
        return AuthResult(success=ok, handled=False)  # unhandled: the server answers 535

    controller = Controller(
        _SmtpHandler(server), hostname="127.0.0.1", port=server.port,
        authenticator=authenticate, auth_require_tls=False,
    )  # fmt: skip
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class HttpReceiver:
    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def url(self, path: str = f"notify/{HTTP_TOKEN}") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def wait_for(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            receiver.received.append({"path": self.path, "body": body})
            self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # quiet: stderr is not our log
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never
    says a word: a notifier that times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: a notifier that refuses."""
    return free_port()


def silent_url(port: int) -> str:
    return f"json://127.0.0.1:{port}/wait/{HTTP_TOKEN}"


def refused_url(port: int) -> str:
    return (
        f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{port}"
        "?mode=insecure&from=b@example.com&to=o@example.com"
    )


SECRETS = (SMTP_PASSWORD, HTTP_TOKEN)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}"
