"""The HTTP servers the controller runs in the background (webhooks, monitoring) share this.

A ``BackgroundHTTPServer`` is a threading server with start/stop that a process owns; ``parse_listen``
reads the ``HOST:PORT`` flags every server takes, naming the flag when it is wrong.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gitops_kubepkg.errors import InputError


def parse_listen(text: str, flag: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT`` (``:8080`` listens on every address; ``[::1]:8080`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InputError(f"{flag} {text!r}: want HOST:PORT, like 0.0.0.0:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


class BackgroundHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server serving from its own thread between ``start`` and ``stop``."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], name: str
    ) -> None:
        super().__init__(address, handler)
        self.name = name
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()
