"""Push webhooks: ``POST /hooks/<namespace>/<repository>`` verified, then an immediate sync.

The fast path onto the controller's work queue: a forge calls this after a push and the repository is synced at
once instead of at its next poll. Verification is pure (``verify``) and constant-time against the
Repository's webhook secret:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``;
- Gitea and Forgejo: ``X-Gitea-Signature`` / ``X-Forgejo-Signature``: the same HMAC as bare hex;
- GitLab: ``X-Gitlab-Token``: the secret itself.

No secret for the repository, no such repository, or a missing or wrong signature: one answer,
404, so the port does not tell which Repositories have webhooks. A verified event that is not a
push -> 202 and nothing happens. The lookup the controller hands in answers from memory (see
``controller.webhooks.WebhookSecrets``): a request, authenticated or not, costs no API call. The
framing (deadlines, body limit, connection cap) is ``serving``'s; the body is read only for a
repository that has a webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping

from gitops_kubepkg.serving import BodyError, HardenedHandler, HardenedServer, Limits

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


class _Handler(HardenedHandler):
    server: WebhookServer
    max_body = MAX_BODY

    def log_message(self, format: str, *args: object) -> None:
        log.debug("webhook %s - %s", self.address_string(), format % args)

    def _reply(self, status: int, message: str) -> None:
        data = (json.dumps({"message": message}) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, "ok")
        else:
            self._reply(404, "POST /hooks/<namespace>/<repository>")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        m = _PATH.match(self.path.split("?", 1)[0])
        if not m:
            self.refuse_body()
            self._reply(404, "not a webhook path: want /hooks/<namespace>/<repository>")
            return
        namespace, name = m.group("namespace"), m.group("name")
        unknown = f"no webhook for Repository {namespace}/{name} that this request verifies"
        secret = self.server.lookup(namespace, name)
        if secret is None:
            self.refuse_body()
            self._reply(404, unknown)
            return
        try:
            body = self.read_body()
        except BodyError as e:
            self._reply(e.status, str(e))
            return
        headers = {k: v for k, v in self.headers.items()}
        if not verify(headers, body, secret):
            log.warning("webhook for %s/%s: bad or missing signature", namespace, name)
            self.close_connection = True  # as for an unknown one, whose body is not read
            self._reply(404, unknown)
            return
        if not is_push(headers, body):
            self._reply(202, "not a push event; nothing to do")
            return
        if not self.server.trigger(namespace, name):
            self._reply(404, f"Repository {namespace}/{name} is not scheduled")
            return
        self._reply(202, f"sync of {namespace}/{name} triggered")


class WebhookServer(HardenedServer):
    def __init__(
        self,
        address: tuple[str, int],
        lookup: SecretLookup,
        trigger: Trigger,
        *,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(address, _Handler, "webhooks", limits=limits)
        self.lookup = lookup
        self.trigger = trigger
