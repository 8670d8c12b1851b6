"""``/healthz``, ``/readyz`` and ``/metrics``: how the kubelet and Prometheus see the controller.

Served by the controller process on ``--monitoring-listen`` (every replica, leader or not). The
process hands in two checks, each returning what is wrong (an empty list: fine), so this module
knows nothing about leadership; ``process.py`` says what healthy and ready mean. A failing check
answers 503 with one line per problem, which ``kubectl describe pod`` shows under the probe.
The framing (deadlines, connection cap, no request bodies) is ``serving``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gitops_kubepkg.controller.metrics import CONTENT_TYPE, Metrics
from gitops_kubepkg.serving import HardenedHandler, HardenedServer, Limits

log = logging.getLogger(__name__)

Check = Callable[[], list[str]]


class _Handler(HardenedHandler):
    server: MonitoringServer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("monitoring %s - %s", self.address_string(), format % args)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _check(self, check: Check) -> None:
        try:
            problems = check()
        except Exception as e:  # a broken check is a failing one, never a crashed server
            problems = [f"check failed: {e}"]
        if problems:
            self._reply(503, ("\n".join(problems) + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._reply(200, b"ok\n", "text/plain; charset=utf-8")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._check(self.server.healthy)
        elif path == "/readyz":
            self._check(self.server.ready)
        elif path == "/metrics":
            self._reply(200, self.server.metrics.exposition(), CONTENT_TYPE)
        else:
            self._reply(404, b"try /healthz, /readyz or /metrics\n", "text/plain; charset=utf-8")

    do_HEAD = do_GET


class MonitoringServer(HardenedServer):
    def __init__(
        self,
        address: tuple[str, int],
        metrics: Metrics,
        *,
        healthy: Check,
        ready: Check,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(address, _Handler, "monitoring", limits=limits)
        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready
