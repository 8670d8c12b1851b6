"""Push webhooks: ``POST /hooks/<namespace>/<repository>`` verified, then an immediate sync.

The fast path into the schedule: a forge calls this after a push and the repository is synced at
once instead of at its next poll. Verification is pure (``verify``) and constant-time against the
Repository's webhook secret:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
- Gitea and Forgejo: ``X-Gitea-Signature`` / ``X-Forgejo-Signature``: the same HMAC as bare hex;
- GitLab: ``X-Gitlab-Token``: the secret itself.

No secret for the repository (or no such repository) -> 404; a missing or wrong signature -> 401;
a verified event that is not a push -> 202 and nothing happens. The server is the standard
library's threading HTTP server; the controller gives it a secret lookup and a trigger.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler

from gitops_kubepkg.serving import BackgroundHTTPServer

log = logging.getLogger(__name__)

MAX_BODY = 25 * 1024 * 1024  # GitHub's own cap on payloads
_PATH = re.compile(r"^/hooks/(?P<namespace>[a-z0-9-]{1,63})/(?P<name>[a-z0-9.-]{1,253})/?$")
PUSH_EVENTS = {
    "x-github-event": {"push", "create", "delete"},
    "x-gitea-event": {"push", "create", "delete"},
    "x-forgejo-event": {"push", "create", "delete"},
    "x-gitlab-event": {"push hook", "tag push hook", "system hook"},
}


def _hmac_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
    """True when the request carries a valid signature (or token) for ``secret``."""
    h = {k.lower(): v.strip() for k, v in headers.items()}
    if not secret:
        return False
    if sig := h.get("x-hub-signature-256"):
        algorithm, _, value = sig.partition("=")
        return algorithm == "sha256" and hmac.compare_digest(
            value.lower().encode(), _hmac_hex(secret, body).encode()
        )
    for header in ("x-gitea-signature", "x-forgejo-signature"):
        if sig := h.get(header):
            return hmac.compare_digest(sig.lower().encode(), _hmac_hex(secret, body).encode())
    if token := h.get("x-gitlab-token"):
        return hmac.compare_digest(token.encode(), secret)
    return False


def is_push(headers: Mapping[str, str], body: bytes) -> bool:
    """A push (branch or tag, created or deleted) by any of the supported forges."""
    h = {k.lower(): v.strip().lower() for k, v in headers.items()}
    for header, events in PUSH_EVENTS.items():
        if header in h:
            return h[header] in events
    # No event header: a hand-made call; treat a JSON body with "ref" as a push.
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return False
    return isinstance(doc, dict) and "ref" in doc


SecretLookup = Callable[[str, str], bytes | None]
"""(namespace, name) -> the webhook secret, or None when there is no such webhook."""
Trigger = Callable[[str, str], bool]


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("webhook %s - %s", self.address_string(), format % args)

    def _reply(self, status: int, message: str) -> None:
        data = (json.dumps({"message": message}) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, "ok")
        else:
            self._reply(404, "POST /hooks/<namespace>/<repository>")

    def do_POST(self) -> None:
        m = _PATH.match(self.path.split("?", 1)[0])
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, "payload too large")
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        if not m:
            self._reply(404, "not a webhook path: want /hooks/<namespace>/<repository>")
            return
        namespace, name = m.group("namespace"), m.group("name")
        secret = self.server.lookup(namespace, name)
        if secret is None:
            self._reply(404, f"no webhook for Repository {namespace}/{name}")
            return
        headers = {k: v for k, v in self.headers.items()}
        if not verify(headers, body, secret):
            log.warning("webhook for %s/%s: bad or missing signature", namespace, name)
            self._reply(401, "signature does not verify")
            return
        if not is_push(headers, body):
            self._reply(202, "not a push event; nothing to do")
            return
        if not self.server.trigger(namespace, name):
            self._reply(404, f"Repository {namespace}/{name} is not scheduled")
            return
        self._reply(202, f"sync of {namespace}/{name} triggered")


class WebhookServer(BackgroundHTTPServer):
    def __init__(self, address: tuple[str, int], lookup: SecretLookup, trigger: Trigger) -> None:
        super().__init__(address, _Handler, "webhooks")
        self.lookup = lookup
        self.trigger = trigger
