"""The webhook tokens of every Repository, in memory, for the webhook receiver.

Place in the flow: ``process.py`` starts one ``WebhookSecrets`` on every replica (leader and
standbys) beside ``sources.webhook.WebhookServer``; the server asks it for a Repository's token to
verify a push, so that a request, authenticated or not, costs no API call. A verified push then
triggers that Repository on the runtime's queue (``runtime.Runtime.trigger``) or, on a standby,
is forwarded to the leader as a ``requestedAt`` annotation.
"""

from __future__ import annotations

import base64
import logging
import threading

from gitops_kubepkg.controller import repository
from gitops_kubepkg.errors import KubeError
from gitops_kubepkg.kube import Kube

log = logging.getLogger(__name__)


class WebhookSecrets:
    """The webhook token of every Repository, in memory, so that no webhook request, verified or
    not, costs an API call.

    ``refresh`` is one LIST of Repositories plus one GET per webhook Secret; it runs every
    ``refresh_seconds`` and, when a request names a repository the cache does not know (a webhook
    added since), once more in the background, at most every ``min_interval`` seconds however many
    requests ask. A rotated token is therefore honoured within ``refresh_seconds``.
    """

    def __init__(
        self,
        kube: Kube,
        namespace: str = "",
        *,
        refresh_seconds: float = 30.0,
        min_interval: float = 5.0,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.refresh_seconds = refresh_seconds
        self.min_interval = min_interval
        self._tokens: dict[tuple[str, str], bytes] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refreshes = 0
        """How many refreshes ran (tests check that requests do not add any)."""

    def lookup(self, namespace: str, name: str) -> bytes | None:
        """The token of the Repository's webhookSecretRef Secret; None: no such webhook (yet)."""
        token = self._tokens.get((namespace, name))
        if token is None:
            self._wake.set()
        return token

    def refresh(self) -> None:
        try:
            objects = self.kube.list(repository.API_VERSION, repository.KIND, self.namespace)
        except KubeError as e:
            log.warning("listing Repository objects for their webhook secrets: %s", e)
            return
        tokens: dict[tuple[str, str], bytes] = {}
        for obj in objects:
            meta = obj.get("metadata") or {}
            namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
            ref = ((obj.get("spec") or {}).get("webhookSecretRef") or {}).get("name")
            if not ref:
                continue
            try:
                secret = self.kube.get("v1", "Secret", str(ref), namespace)
            except KubeError as e:
                log.warning("webhook secret of Repository %s/%s: %s", namespace, name, e)
                if (namespace, name) in self._tokens:  # keep what worked until the API answers
                    tokens[(namespace, name)] = self._tokens[(namespace, name)]
                continue
            token = ((secret or {}).get("data") or {}).get("token")
            if token:
                try:
                    tokens[(namespace, name)] = base64.b64decode(token, validate=True)
                except ValueError:
                    log.warning("webhook secret %s/%s: token is not base64", namespace, ref)
        self._tokens = tokens
        self.refreshes += 1

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="webhook-secrets")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.refresh_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.refresh()
            self._stop.wait(self.min_interval)  # however many requests miss meanwhile

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
