"""The HTTP framing every server of ours shares: webhooks, monitoring and the registry.

Each server is the standard library's threading HTTP server (a thread per connection, so the
registry can hand a blob to ``socket.sendfile`` without a copy) with the framing a hostile client
must not get around, in one place:

- **deadlines**: a connection may sit idle between requests for ``idle_timeout``; once the first
  byte of a request (or of a TLS handshake) arrives, the request line and headers must be complete
  within ``header_timeout`` and a body within ``body_timeout``, however slowly it trickles in. A
  reaper thread shuts down the socket of a connection that misses its deadline, so a half-sent
  request (slowloris) holds its thread only that long;
- **a cap on connections**: at most ``max_connections`` are served at once. A new connection at
  the cap cuts the one that has waited longest for a request (idle keep-alive, or still sending
  headers), so half-sent requests cannot keep a normal client out; when every connection is busy
  answering, new ones wait in the listen backlog;
- **bodies**: ``Content-Length`` must be one decimal number (negative, non-numeric or repeated with
  different values -> 400), no bigger than the handler's ``max_body`` (-> 413); ``Transfer-Encoding:
  chunked`` is decoded with the same limit; any other transfer coding -> 501; both -> 400. A body the
  handler did not read is drained when small, otherwise the connection is closed, so a body is
  never read as the next request (no request smuggling behind a proxy). ``Expect: 100-continue`` is
  answered only when the handler actually reads the body;
- optional **TLS**, the handshake done in the connection's thread under the header deadline;
- ``TCP_NODELAY``: an answer's headers and body are separate writes, and must not wait for the
  client's delayed ACK in between.

``parse_listen`` reads the ``HOST:PORT`` flags every server takes, naming the flag when it is wrong.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from gitops_kubepkg.errors import InputError

log = logging.getLogger(__name__)
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:;[^\r\n]*)?\r?\n")
LINGER_SECONDS = 1.0
LINGER_BYTES = 1024 * 1024
"""When closing, what is read and dropped at most before the socket is closed anyway."""
DRAIN_LIMIT = 64 * 1024
"""An unread body up to this size is read and dropped to keep the connection; a bigger one closes it."""


def parse_listen(text: str, flag: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT`` (``:8080`` listens on every address; ``[::1]:8080`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InputError(f"{flag} {text!r}: want HOST:PORT, like 0.0.0.0:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class Limits:
    """How long and how much one connection may take (seconds, connections)."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    idle_timeout: float = 120.0
    io_timeout: float = 300.0
    """Longest wait for one socket read or write while an answer is being sent (a slow puller)."""
    max_connections: int = 256


class _Reaper:
    """Shuts down the socket of every connection whose deadline passed, and, when the server is
    at its cap, of the longest-waiting connection that has not sent a whole request yet."""

    def __init__(self) -> None:
        # socket -> (deadline, since when it waits, whether it may be evicted)
        self._deadlines: dict[socket.socket, tuple[float, float, bool]] = {}
        self._reaped: set[socket.socket] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
        self._thread.start()

    def arm(self, sock: socket.socket, seconds: float, *, evictable: bool = False) -> None:
        """Cut ``sock`` in ``seconds``; ``evictable``: it is waiting for a request (idle or
        headers), so it may be cut earlier to make room for a new connection."""
        now = time.monotonic()
        with self._cond:
            self._deadlines[sock] = (now + seconds, now, evictable)
            self._cond.notify()

    def disarm(self, sock: socket.socket) -> bool:
        """Stop watching ``sock``; True when it was already cut (deadline or eviction)."""
        with self._cond:
            self._deadlines.pop(sock, None)
            if sock in self._reaped:
                self._reaped.discard(sock)
                return True
            return False

    def forget(self, sock: socket.socket) -> None:
        with self._cond:
            self._deadlines.pop(sock, None)
            self._reaped.discard(sock)

    def _cut(self, sock: socket.socket) -> None:
        del self._deadlines[sock]
        self._reaped.add(sock)
        # The plain socket's shutdown, also for a TLS socket: only the file descriptor is shut,
        # the TLS state is left to the connection's thread.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def evict_one(self) -> bool:
        """Cut the evictable connection that has waited longest; False when there is none."""
        with self._cond:
            waiting = [(since, id(s), s) for s, (_, since, ev) in self._deadlines.items() if ev]
            if not waiting:
                return False
            self._cut(min(waiting)[2])
            return True

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for sock in [s for s, (t, _, _) in self._deadlines.items() if t <= now]:
                    self._cut(sock)
                wait = min((t for t, _, _ in self._deadlines.values()), default=now + 1.0) - now
                self._cond.wait(min(max(wait, 0.01), 1.0))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()


class HardenedServer(ThreadingHTTPServer):
    """A threading HTTP server with deadlines, a connection cap and optional TLS, serving from its
    own thread between ``start`` and ``stop`` (or from the caller's with ``serve_forever``)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[HardenedHandler],
        name: str,
        *,
        limits: Limits | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self.name = name
        self.limits = limits or Limits()
        self.tls = tls
        self.reaper = _Reaper()
        self._slots = threading.BoundedSemaphore(self.limits.max_connections)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        # At the cap, make room by cutting the connection that has waited longest for a request
        # (idle, or sending headers); when every connection is busy answering, stop accepting:
        # further clients wait in the listen backlog.
        while not self._slots.acquire(blocking=False):
            self.reaper.evict_one()
            if self._slots.acquire(timeout=1.0):  # the cut connection's thread ends soon
                break
            if self._closing.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.reaper.forget(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Framing errors and clients that went away are handled in the handler; what reaches
        # here is our bug: one line, and the connection closes.
        error = sys.exc_info()[1]
        log.warning("%s: answering %s failed: %r", self.name, client_address, error)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name=self.name, daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._closing.set()
        super().shutdown()

    def server_close(self) -> None:
        super().server_close()
        self.reaper.close()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class BodyError(Exception):
    """The request's body breaks the framing or its limit; the connection must close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HardenedHandler(BaseHTTPRequestHandler):
    """Request framing for a ``HardenedServer``. Subclasses set ``max_body`` (0: no body wanted),
    read a body only with ``read_body`` and answer with the usual ``send_response`` family."""

    server: HardenedServer
    protocol_version = "HTTP/1.1"
    max_body = 0

    # -- connection -------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        limits = self.server.limits
        self.connection.settimeout(limits.io_timeout)
        # Headers and body go out as separate writes; with Nagle's algorithm a small body waits
        # for the client's delayed ACK of the headers (40 ms an answer on Linux).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.server.reaper.arm(self.connection, limits.header_timeout, evictable=True)
            try:
                self.connection.do_handshake()
            except (OSError, ValueError):
                self.close_connection = True
                self._handshake_failed = True
            finally:
                self.server.reaper.disarm(self.connection)

    def handle(self) -> None:
        if getattr(self, "_handshake_failed", False):
            return
        super().handle()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._linger()

    def _linger(self) -> None:
        """Close gently: say we are done writing, then read and drop what the client still
        sends (an unread body) for a moment. Closing with unread bytes would reset the
        connection, and a reset can destroy the answer (a 400, a 413) before the client reads it.
        """
        sock = self.connection
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_WR)
            sock.settimeout(LINGER_SECONDS)
            deadline = time.monotonic() + LINGER_SECONDS
            dropped = 0
            while dropped < LINGER_BYTES and time.monotonic() < deadline:
                data = socket.socket.recv(sock, 65536)
                if not data:
                    break
                dropped += len(data)

    def handle_one_request(self) -> None:
        limits = self.server.limits
        self._body_left: int | None = 0  # None: chunked, not read yet
        self._said_close = False
        try:
            # Idle between requests: wait for the first byte of the next one.
            self.server.reaper.arm(self.connection, limits.idle_timeout, evictable=True)
            if not cast(io.BufferedReader, self.rfile).peek(1):
                self.close_connection = True
                return
            self.server.reaper.arm(self.connection, limits.header_timeout, evictable=True)
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                self.send_error(501, f"unsupported method {self.command!r}")
                return
            method()
            self.wfile.flush()
            self._finish_body()
        except OSError:  # timeouts, resets, a socket cut at its deadline, TLS errors
            self.close_connection = True
        finally:
            self.server.reaper.forget(self.connection)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.server.reaper.disarm(self.connection):
            self.close_connection = True  # cut at the deadline: what was read is not a request
            return False
        problem = self._framing()
        if problem is not None:
            status, message = problem
            self.send_error(status, message)
            return False
        return True

    def _framing(self) -> tuple[int, str] | None:
        """Check the body's framing before any handler runs; sets what ``read_body`` reads."""
        lengths = self.headers.get_all("Content-Length") or []
        codings = self.headers.get_all("Transfer-Encoding") or []
        if codings:
            if lengths:
                return 400, "both Transfer-Encoding and Content-Length"
            coding = ",".join(codings).strip().lower()
            if coding != "chunked":
                return 501, f"Transfer-Encoding {coding!r} is not supported, only chunked"
            if self.max_body == 0:
                self.close_connection = True  # a body we will not read
            self._body_left = None
            return None
        if not lengths:
            return None
        values = {v.strip() for v in lengths}
        value = values.pop()
        if values or not _CONTENT_LENGTH.fullmatch(value):
            return 400, "Content-Length must be one non-negative decimal number"
        length = int(value)
        if length > max(self.max_body, DRAIN_LIMIT):
            return 413, f"body of {length} bytes is over the limit of {self.max_body}"
        self._body_left = length
        return None

    def handle_expect_100(self) -> bool:
        return True  # "100 Continue" goes out only when read_body reads the body

    def _continue(self) -> None:
        if (
            self.headers.get("Expect", "").lower() == "100-continue"
            and self.request_version != "HTTP/1.0"
        ):
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    # -- bodies -----------------------------------------------------------------------------

    def read_body(self) -> bytes:
        """The whole body (at most ``max_body`` bytes) within the body deadline; BodyError when it
        is too big or malformed (answer it and the connection closes)."""
        left = self._body_left
        if left == 0:
            return b""
        if left is not None and left > self.max_body:
            self.close_connection = True
            raise BodyError(413, f"body of {left} bytes is over the limit of {self.max_body}")
        self._continue()
        self.server.reaper.arm(self.connection, self.server.limits.body_timeout)
        try:
            if left is None:
                return self._read_chunked(self.max_body)
            data = self.rfile.read(left)
            if len(data) != left:
                self.close_connection = True
                raise BodyError(400, "body ended before Content-Length bytes")
            return data
        finally:
            self._body_left = 0
            self.server.reaper.disarm(self.connection)

    def stream_body(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The body in chunks, for bodies too big to hold (airgap uploads): Content-Length only
        (411 otherwise), at most ``max_body``; each chunk must arrive within the body deadline, so
        a slow client that keeps sending is fine and a stalled one is cut. BodyError as for
        ``read_body``."""
        left = self._body_left
        if left is None:
            self.close_connection = True
            raise BodyError(411, "send Content-Length (chunked bodies are not streamed)")
        if left > self.max_body:
            self.close_connection = True
            raise BodyError(413, f"body of {left} bytes is over the limit of {self.max_body}")
        if left:
            self._continue()
        try:
            while left > 0:
                self.server.reaper.arm(self.connection, self.server.limits.body_timeout)
                data = self.rfile.read(min(chunk, left))
                if self.server.reaper.disarm(self.connection) or not data:
                    self.close_connection = True
                    raise BodyError(400, "body ended before Content-Length bytes")
                left -= len(data)
                self._body_left = left
                yield data
        finally:
            self.server.reaper.disarm(self.connection)

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            m = _CHUNK_SIZE.fullmatch(line)
            if not m:
                self.close_connection = True
                raise BodyError(400, "malformed chunk size line")
            size = int(m.group(1), 16)
            if size == 0:
                break
            total += size
            if total > limit:
                self.close_connection = True
                raise BodyError(413, f"chunked body is over the limit of {limit} bytes")
            data = self.rfile.read(size)
            if len(data) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                self.close_connection = True
                raise BodyError(400, "malformed chunk")
            parts.append(data)
        for _ in range(100):  # trailer fields, then the empty line
            line = self.rfile.readline(8192)
            if line in (b"\r\n", b"\n"):
                return b"".join(parts)
            if not line.endswith(b"\n"):
                break
        self.close_connection = True
        raise BodyError(400, "malformed chunked trailer")

    def _finish_body(self) -> None:
        """After the answer: drop a small unread body to keep the connection, else close it."""
        left = self._body_left
        if left == 0 or self.close_connection:
            return
        if left is None or left > DRAIN_LIMIT:
            self.close_connection = True
            return
        self.server.reaper.arm(self.connection, self.server.limits.body_timeout)
        try:
            if len(self.rfile.read(left)) != left:
                self.close_connection = True
        finally:
            self._body_left = 0
            self.server.reaper.disarm(self.connection)

    # -- answers ----------------------------------------------------------------------------

    def refuse_body(self) -> None:
        """Close after this answer when a body was sent that will not be read."""
        if self._body_left != 0:
            self.close_connection = True

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection":
            self._said_close = value.lower() == "close"
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        if self.close_connection and not getattr(self, "_said_close", False):
            self.send_header("Connection", "close")
        super().end_headers()
