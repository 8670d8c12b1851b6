"""The repository part of the controller: the schedule, the webhook receiver and the file watcher
around one ``Syncer``.

Every few seconds it lists Repository objects and brings the schedule (one job per repository at
its interval), the watched file:// paths and the webhook secrets in line with them. A sync that
fails backs off (see ``sources.schedule``); a verified push webhook, a local commit or a new
``gitops.kubepkg.dev/requestedAt`` annotation (seen by a watch on Repositories) triggers the
repository at once. The controller process (``process.py``) starts and stops it with leadership.
``WebhookSecrets`` keeps the webhook tokens in memory for the webhook receiver (here and in
``process.py``, where it also serves standbys), so that a request costs no API call.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from pathlib import Path

from gitops_kubepkg.controller import repository
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.errors import InputError, KubeError
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.serving import parse_listen
from gitops_kubepkg.sources.schedule import Schedule
from gitops_kubepkg.sources.watcher import Watcher, local_path
from gitops_kubepkg.sources.webhook import WebhookServer
from gitops_kubepkg.spec import KubeObject

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


class Controller:
    def __init__(
        self,
        syncer: Syncer,
        *,
        namespace: str = "",
        webhook_listen: str = "",
        refresh_seconds: float = 10.0,
        watch: bool = True,
    ) -> None:
        self.syncer = syncer
        self.namespace = namespace
        self.refresh_seconds = refresh_seconds
        self.schedule = Schedule(self._sync_key, max_concurrent=4)
        self.watcher = Watcher(self.trigger_key) if watch else None
        self.secrets = WebhookSecrets(syncer.kube, namespace) if webhook_listen else None
        self.webhooks = (
            WebhookServer(
                parse_listen(webhook_listen, "--webhook-listen"), self.webhook_secret, self.trigger
            )
            if webhook_listen and self.secrets is not None
            else None
        )
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self._asked: dict[str, str] = {}
        self.listed = threading.Event()
        """Set once Repository objects were listed: the part is ready to work."""

    # -- wiring -------------------------------------------------------------------------------

    def _sync_key(self, key: str) -> bool:
        namespace, _, name = key.partition("/")
        outcome = self.syncer.sync(namespace, name)
        if outcome is None:
            self.schedule.remove(key)
            return True
        if outcome.changes:
            log.info("Repository %s: %s", key, "; ".join(outcome.changes))
        return not outcome.failed

    def trigger_key(self, key: str) -> object:
        return self.schedule.trigger(key)

    def trigger(self, namespace: str, name: str) -> bool:
        key = f"{namespace}/{name}"
        if key not in self.schedule.scheduled():
            self.refresh()
        return self.schedule.trigger(key)

    def webhook_secret(self, namespace: str, name: str) -> bytes | None:
        return self.secrets.lookup(namespace, name) if self.secrets is not None else None

    def _answer_request(self, obj: KubeObject) -> None:
        """Trigger a Repository whose requestedAt annotation is new (once per value)."""
        token = repository.pending_request(obj)
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        if not token or self._asked.get(key) == token or self._stop.is_set():
            return
        self._asked[key] = token
        log.info("Repository %s: sync requested (%s)", key, token)
        self.trigger(*key.split("/", 1))

    def refresh(self) -> None:
        """Bring the schedule and the watcher in line with the Repository objects."""
        listed_at = time.monotonic()
        try:
            objects = self.syncer.repositories(self.namespace)
        except KubeError as e:
            log.warning("listing Repository objects: %s", e)
            return
        seen: set[str] = set()
        urls = {str((obj.get("spec") or {}).get("url") or "") for obj in objects}
        paths: dict[str, Path] = {}
        self.listed.set()
        for obj in objects:
            try:
                spec = repository.parse(obj)
            except InputError as e:
                log.warning("%s", e)
                self._answer_request(obj)  # the pass writes InvalidSpec: the request is answered
                continue
            urls.add(spec.url)
            seen.add(spec.key)
            self.schedule.set(spec.key, spec.interval)
            path = local_path(spec.url)
            if path is not None and not spec.suspend and not spec.airgap:
                paths[spec.key] = path
            self._answer_request(obj)
        for key in self.schedule.scheduled() - seen:
            self.schedule.remove(key)
        for path in self.syncer.forget(urls, before=listed_at):
            log.info("removed the mirror %s: no Repository names its URL any more", path)
        if self.watcher is not None:
            self.watcher.update(paths)

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.refresh()
        self.schedule.start()
        if self.webhooks is not None and self.secrets is not None:
            self.secrets.start()
            self.webhooks.start()
        self._refresher = threading.Thread(target=self._refresh_loop, daemon=True, name="refresh")
        self._refresher.start()
        # Not joined on stop: a watch read blocks until the server's timeout, and it only
        # triggers the schedule, which stop() shuts down.
        threading.Thread(target=self._watch_requests, daemon=True, name="repository-watch").start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def _watch_requests(self) -> None:
        """Answer requestedAt annotations as they are set, not at the next refresh."""
        kube = self.syncer.kube
        while not self._stop.is_set():
            try:
                _, version = kube.list_with_version(
                    repository.API_VERSION, repository.KIND, self.namespace
                )
                for event, obj in kube.watch(
                    repository.API_VERSION,
                    repository.KIND,
                    self.namespace,
                    resource_version=version,
                    timeout_seconds=30,
                ):
                    if self._stop.is_set():
                        return
                    if event == "ERROR":
                        break
                    if event in ("ADDED", "MODIFIED"):
                        self._answer_request(obj)
            except KubeError as e:
                log.warning("watching Repository objects: %s", e)
                self._stop.wait(self.refresh_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
        if self.webhooks is not None:
            self.webhooks.stop()
        if self.secrets is not None:
            self.secrets.stop()
        if self.watcher is not None:
            self.watcher.stop()
        self.schedule.shutdown()
