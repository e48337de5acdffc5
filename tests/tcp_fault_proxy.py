"""A real TCP relay between an HTTP client (boto3) and a server (moto,
s3rver) that can break one connection on cue, and logs every request.

Rules match a request by a substring of its request line (e.g.
"partNumber=3") and fire after some bytes of that request's body (upload)
or of the response (download) went through:
- "reset": both sockets closed with an RST (SO_LINGER 0), as a dropped link;
- "stall": the connection goes silent, both ways, until the client gives up
  (its read timeout) and closes it.
- "503": the request never reaches the server; the client gets
  "503 SlowDown" (S3's throttling answer) and the connection closes.
The request log (method, target, headers) is what the server was asked,
retries included: tests count parts sent with it."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

from tests.s3_servers import free_port

_CHUNK = 64 * 1024
_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
    b"Content-Length: "
    + str(len(_SLOW_DOWN_BODY)).encode()
    + b"\r\nConnection: close\r\n\r\n"
    + _SLOW_DOWN_BODY
)


@dataclass
class Rule:
    match: str
    action: str  # "reset" | "stall"
    direction: str = "upload"  # "upload": request body bytes; "download": response bytes
    after_bytes: int = 0
    times: int = 1  # how many connections it breaks before it is spent
    fired: int = 0


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)


class _Connection:
    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.rule: Rule | None = None
        self.counted = 0
        self.stalled = threading.Event()
        self.closed = threading.Event()

    def run(self) -> None:
        threading.Thread(target=self._downstream, daemon=True).start()
        self._upstream()

    def _upstream(self) -> None:
        """Client -> server, parsing requests (headers, then Content-Length bytes)."""
        pending = b""
        body_left = 0
        try:
            while not self.closed.is_set():
                data = self.client.recv(_CHUNK)
                if not data:
                    break
                if self.stalled.is_set():
                    continue  # a black hole: read (to see the close), forward nothing
                pending += data
                out = b""
                while pending:
                    if self.stalled.is_set():
                        pending, out = b"", b""
                        break
                    if body_left > 0:
                        take = pending[:body_left]
                        pending = pending[len(take) :]
                        body_left -= len(take)
                        if not self._forward_body(out, take):
                            return
                        out = b""
                        continue
                    end = pending.find(b"\r\n\r\n")
                    if end < 0:
                        break  # headers incomplete: wait for more
                    head, pending = pending[: end + 4], pending[end + 4 :]
                    body_left = self._on_request(head)
                    out += head
                if out:
                    self.server.sendall(out)
        except OSError:
            pass
        finally:
            self.close()

    def _forward_body(self, head: bytes, body: bytes) -> bool:
        rule = self.rule
        if rule is not None and rule.direction == "upload":
            room = rule.after_bytes - self.counted
            if len(body) >= room:
                self.server.sendall(head + body[: max(room, 0)])
                self._fire(rule)
                # Reset: stop relaying; stall: keep reading (to see the close), send nothing.
                return self.stalled.is_set()
            self.counted += len(body)
        self.server.sendall(head + body)
        return True

    def _on_request(self, head: bytes) -> int:
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rpartition(" ")[0]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        self.proxy.log(Request(method, target, headers))
        self.rule = self.proxy.rule_for(lines[0])
        self.counted = 0
        if self.rule is not None and self.rule.action == "503":
            self.proxy.fired.append(self.rule.match)
            self.rule = None
            with contextlib.suppress(OSError):
                self.client.sendall(_SLOW_DOWN)
            self.close()
            raise OSError("answered 503")  # ends the upstream loop, nothing forwarded
        if self.rule is not None and self.rule.direction == "upload" and self.rule.after_bytes == 0:
            self._fire(self.rule)
        return int(headers.get("content-length", "0") or 0)

    def _downstream(self) -> None:
        try:
            while not self.closed.is_set():
                data = self.server.recv(_CHUNK)
                if not data:
                    break
                if self.stalled.is_set():
                    continue
                rule = self.rule
                if rule is not None and rule.direction == "download":
                    room = rule.after_bytes - self.counted
                    if len(data) >= room:
                        self.client.sendall(data[: max(room, 0)])
                        self._fire(rule)
                        if self.closed.is_set():
                            return
                        continue
                    self.counted += len(data)
                self.client.sendall(data)
        except OSError:
            pass
        finally:
            if not self.stalled.is_set():
                self.close()

    def _fire(self, rule: Rule) -> None:
        self.rule = None
        self.proxy.fired.append(rule.match)
        if rule.action == "stall":
            self.stalled.set()
        else:
            self.reset()

    def reset(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                # Linger 0: close() sends an RST, as a link that drops does.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.requests: list[Request] = []
        self.fired: list[str] = []
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_rule(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def rule_for(self, request_line: str) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.match in request_line and rule.fired < rule.times:
                    rule.fired += 1
                    return rule
        return None

    def log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def count(self, method: str, contains: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.method == method and contains in r.target)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            connection = _Connection(self, client, server)
            with self._lock:
                self._connections.append(connection)
            threading.Thread(target=connection.run, daemon=True).start()

    def close(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
