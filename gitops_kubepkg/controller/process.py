"""The controller process: every part in one binary; the parts that write run only on the leader.

``gitops-kubepkg controller`` builds a ``ControllerProcess`` from its flags. The parts:

- on every replica: ``/healthz``, ``/readyz`` and ``/metrics`` (``monitoring.py``), the push
  webhook receiver and the pull-only registry. None of them writes what the leader owns: a
  webhook on a standby is forwarded to the leader as a ``requestedAt`` annotation; the airgap
  upload endpoint listens everywhere but only the leader (with ``--shards``, shard 0's holder)
  takes uploads, the store and mirrors being one replica's (``upload_elsewhere``);
- on the leader only (``leader.py``): one ``runtime.Runtime``: informers, one queue and
  supervised workers for repository sync (polls, file watcher, requestedAt, PackageRevisions
  and KubePkg objects) and KubePkg passes (render, apply, prune, status), woken by the events of
  what they applied.

Life cycle: start the parts every replica runs; wait for the Lease; start the leader's parts; on
SIGTERM stop them (in-flight passes finish while the Lease is still renewed), release the Lease,
stop the rest and exit 0. A leader that cannot renew stops its parts and exits 1, so the kubelet
restarts it as a candidate rather than leaving two writers.

What the probes mean:

- healthy: no part's thread died unexpectedly (a worker that died is replaced within a second;
  one not replaced, a dead informer or a lost renewer fails liveness, and the kubelet restarts
  the container);
- ready: the leader, once Repositories and KubePkgs were listed since it started leading (its
  view is synced); a standby, while the API server answered its last Lease read within one lease
  duration (it is able to take over). A standby is ready on purpose: the webhook and registry
  Services may send it traffic it can serve, and a rolling update can proceed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gitops_kubepkg.airgap.upload import Authorizer, Uploads, UploadServer
from gitops_kubepkg.controller import repository
from gitops_kubepkg.controller.leader import LeaderElector, LeaseConfig, micro_time
from gitops_kubepkg.controller.metrics import Metrics
from gitops_kubepkg.controller.monitoring import MonitoringServer
from gitops_kubepkg.controller.repository import SyncResult
from gitops_kubepkg.controller.runtime import Runtime
from gitops_kubepkg.controller.shards import ShardConfig, ShardManager
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.controller.webhooks import WebhookSecrets
from gitops_kubepkg.conventions import Outcome
from gitops_kubepkg.errors import InputError, KubeError, NotFound
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.apply import CONFIGURED, CREATED, DELETED, ChangeSet
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.reconcile.status import HEALTH_TIMEOUT
from gitops_kubepkg.registry.repositories import Repositories
from gitops_kubepkg.registry.server import RegistryServer
from gitops_kubepkg.runtime.informer import Cache
from gitops_kubepkg.serving import parse_listen
from gitops_kubepkg.signature import read_allowed_signers
from gitops_kubepkg.sources.webhook import WebhookServer
from gitops_kubepkg.spec import KubeObject
from gitops_kubepkg.spec.record import HISTORY_LIMIT
from gitops_kubepkg.tenancy import Tenancy

log = logging.getLogger(__name__)

LEASE_NAME = "gitops-kubepkg-controller"


def default_identity() -> str:
    """``<pod name or host name>_<random>``: unique even when a pod restarts under its name."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def request_sync(kube: Kube, namespace: str, name: str) -> str:
    """Ask the leader for a sync of one Repository now; return the requestedAt value set."""
    token = micro_time()
    kube.patch(
        repository.API_VERSION, repository.KIND, name, namespace, repository.request_patch(token)
    )
    return token


@dataclass(frozen=True)
class Options:
    state_dir: Path
    namespace: str = ""
    """Only this namespace's Repositories and KubePkgs ("" for all)."""
    repositories: bool = True
    kubepkgs: bool = True
    webhook_listen: str = ""
    upload_listen: str = ""
    require_signed_imports: Path | None = None
    """An allowed_signers file: uploads whose airgap.json is not signed by one are refused."""
    """Airgap uploads (``airgap.upload``); needs ``registry_root`` (the store they go into)."""
    upload_namespace: str = ""
    """The namespace whose RBAC grants uploads (the controller's own)."""
    monitoring_listen: str = ""
    registry_root: Path | None = None
    registry_listen: str = "0.0.0.0:5000"
    image_registry: str = ""
    """Rewrite images to this registry (airgap), as ``apply --registry``."""
    lease: LeaseConfig | None = None
    """None: no leader election (one replica only, or ``--once``)."""
    shards: int = 1
    """More than 1 (with ``lease``): every replica works, each on the shards it holds a Lease of
    (``shards.py``), instead of one leader doing everything."""
    max_fetches: int = 4
    kubepkg_workers: int = 2
    resync: float = 300.0
    history_limit: int = HISTORY_LIMIT
    """Applied revisions each KubePkg's status keeps (``history``, ``rollback``)."""
    health_timeout: float = HEALTH_TIMEOUT
    """A KubePkg progressing longer than this is Stalled (HealthCheckTimeout)."""
    watch_files: bool = True
    tenancy: Tenancy = field(default_factory=Tenancy)
    """Multi-tenant mode, the default ServiceAccount and the operator's policy (``tenancy.py``)."""


def store_digests(root: Path | None) -> Callable[[str, str], str | None] | None:
    """The reconciler's tag lookup in the registry store at ``root`` (None: no store): after an
    airgap import, a KubePkg that names only a tag runs the digest the store holds for it. The
    lookup answers None while nothing was ever imported (a connected cluster running deploy/'s
    registry: its tags are not "missing from the store"), "" for a tag the store lacks."""
    if root is None:
        return None
    refs = Repositories(root)

    def lookup(name: str, tag: str) -> str | None:
        if not refs.base.is_dir():
            return None
        digest = refs.resolve(name, tag)
        return str(digest) if digest is not None else ""

    return lookup


class Part(Protocol):
    """A server the caller adds to every replica (``parts``): started with the shared parts,
    stopped first."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class MeasuredReconciler(KubePkgReconciler):
    """The KubePkg reconciler, counting the objects each pass applied and pruned."""

    def __init__(
        self,
        kube: Kube,
        metrics: Metrics,
        *,
        registry: str = "",
        history_limit: int = 10,
        health_timeout: float = HEALTH_TIMEOUT,
        tenancy: Tenancy | None = None,
        store_digest: Callable[[str, str], str | None] | None = None,
    ) -> None:
        super().__init__(
            kube,
            registry=registry,
            history_limit=history_limit,
            health_timeout=health_timeout,
            tenancy=tenancy,
            store_digest=store_digest,
        )
        self.metrics = metrics

    def reconcile_object(self, obj: KubeObject) -> tuple[Outcome, ChangeSet | None]:
        outcome, changes = super().reconcile_object(obj)
        for change in changes.changes if changes is not None else []:
            if change.action in (CREATED, CONFIGURED):
                self.metrics.objects_applied.labels(change.ref.kind, change.action).inc()
            elif change.action == DELETED:
                self.metrics.objects_pruned.labels(change.ref.kind).inc()
        return outcome, changes


class _Term:
    """The leader's parts, for one term of leadership: one ``Runtime`` for Repositories and
    KubePkgs (sharded: for the Repositories and KubePkgs of the shards this replica holds)."""

    def __init__(
        self, process: ControllerProcess, owns: Callable[[str, str], bool] | None = None
    ) -> None:
        o = process.options
        self.reconciler = process.reconciler() if o.kubepkgs else None
        self.runtime = Runtime(
            process.kube,
            syncer=process.syncer if o.repositories else None,
            reconciler=self.reconciler,
            namespace=o.namespace,
            workers=(o.max_fetches if o.repositories else 0)
            + (o.kubepkg_workers if o.kubepkgs else 0),
            resync=o.resync,
            watch_files=o.watch_files,
            observer=process.observe_kubepkg,
            metrics=process.metrics,
            owns=owns,
            cache=process.cache,
        )
        process.metrics.watch_queue(lambda: len(self.runtime.queue))

    def start(self) -> None:
        self.runtime.start()

    def stop(self) -> None:
        """Stop taking work and wait for what is in flight."""
        self.runtime.stop()
        if self.reconciler is not None:
            self.reconciler.applier.close()

    def problems(self, *, ready: bool) -> list[str]:
        return self.runtime.problems(ready=ready)


class ControllerProcess:
    def __init__(self, kube: Kube, options: Options, metrics: Metrics | None = None) -> None:
        self.kube = kube
        self.options = options
        self.metrics = metrics or Metrics()
        self.metrics.watch_api(lambda: (kube.requests, kube.writes))
        self.syncer = Syncer(
            kube,
            options.state_dir,
            max_fetches=options.max_fetches,
            metrics=self.metrics,
            tenancy=options.tenancy,
        )
        self.elector = (
            LeaderElector(kube, options.lease, on_change=self._leadership_changed)
            if options.lease is not None
            else None
        )
        self.shards = (
            ShardManager(
                kube, ShardConfig(options.shards, options.lease), on_change=self._shards_changed
            )
            if options.lease is not None and options.shards > 1
            else None
        )
        if self.shards is not None:
            self.elector = None  # one Lease per shard instead of one for the leader
        self._cache_stop = threading.Event()
        self.cache = Cache(kube, self._cache_stop, namespace=options.namespace)
        """One cache for the process: the leader's runtime and the dashboard share its
        informers (informers start on first use; a standby without a dashboard starts none)."""
        self._term: _Term | None = None
        self._term_lock = threading.Lock()
        self.monitoring: MonitoringServer | None = None
        self.webhooks: WebhookServer | None = None
        self.webhook_secrets: WebhookSecrets | None = None
        self.uploads: UploadServer | None = None
        self.registry: RegistryServer | None = None
        self.parts: list[Part] = []
        """More servers every replica runs (the dashboard: ``cli/controller.py`` adds it)."""

    # -- parts ----------------------------------------------------------------------------------

    def reconciler(self) -> MeasuredReconciler:
        return MeasuredReconciler(
            self.kube,
            self.metrics,
            registry=self.options.image_registry,
            history_limit=self.options.history_limit,
            health_timeout=self.options.health_timeout,
            tenancy=self.options.tenancy,
            store_digest=store_digests(self.options.registry_root),
        )

    def observe_kubepkg(self, key: tuple[str, str], outcome: Outcome, seconds: float) -> None:
        self.metrics.reconcile_duration.labels("KubePkg", outcome.kind).observe(seconds)

    def upload_elsewhere(self) -> str:
        """ "" when this replica takes airgap uploads now, else which replica does. The store and
        mirrors an upload goes into are one replica's (a ReadWriteOnce claim): the leader's, or
        with ``--shards`` the holder of shard 0's; a single replica always takes them."""
        me = self.options.lease.identity if self.options.lease is not None else ""
        if self.shards is not None:
            if 0 in self.shards.owned:
                return ""
            holder = self.shards.electors[0].seen_holder
            return (
                f"replica {me} does not take airgap uploads: they go to the holder of shard 0, "
                f"{holder or 'not elected yet'}"
            )
        if self.elector is None or (self.elector.is_leader and self._term is not None):
            return ""
        holder = self.elector.seen_holder
        if holder == me:
            holder = ""  # still ours on the Lease, but this replica stopped leading
        return (
            f"replica {me} is a standby and does not take airgap uploads: they go to the "
            f"leader, {holder or 'not elected yet'}"
        )

    def _leadership_changed(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            self.metrics.leader_transitions.inc()

    def _webhook_secret(self, namespace: str, name: str) -> bytes | None:
        secrets = self.webhook_secrets
        return secrets.lookup(namespace, name) if secrets is not None else None

    def _trigger(self, namespace: str, name: str) -> bool:
        """A verified push: sync now on the leader; on a standby, ask the leader through the API."""
        with self._term_lock:
            runtime = self._term.runtime if self._term is not None else None
        if runtime is not None and runtime.repositories is not None:
            if runtime.trigger(namespace, name):
                return True
            if self.shards is None or runtime.repositories.get(namespace, name) is None:
                return False
            # sharded: another replica owns it; ask it through the API as a standby does
        if not self.options.repositories:
            return False
        try:
            request_sync(self.kube, namespace, name)
        except NotFound:
            return False
        except KubeError as e:
            log.warning("forwarding the webhook for %s/%s to the leader: %s", namespace, name, e)
            return False
        return True

    # -- probes ---------------------------------------------------------------------------------

    def _shards_changed(self, owned: set[int]) -> None:
        self.metrics.leader.set(len(owned))
        with self._term_lock:
            term = self._term
        if term is not None:
            term.runtime.shards_changed(owned)

    def healthy(self) -> list[str]:
        with self._term_lock:
            term = self._term
        problems = term.problems(ready=False) if term is not None else []
        if self.shards is not None and not self.shards.alive():
            problems.append("the shard Lease loop stopped")
        if self.elector is not None and self.elector.lost.is_set():
            problems.append("lost the leader Lease")
        return problems

    def ready(self) -> list[str]:
        with self._term_lock:
            term = self._term
        if term is not None:
            return term.problems(ready=True)
        if self.elector is None:
            return ["starting"]
        contact = self.elector.last_contact
        if contact < 0:
            return ["the Lease was not read yet"]
        if self.elector.clock.monotonic() - contact > self.elector.config.lease_duration:
            return [
                f"the API server did not answer for more than {self.elector.config.lease_duration:g}s"
            ]
        return []

    # -- life cycle -----------------------------------------------------------------------------

    def _start_shared(self) -> None:
        o = self.options
        if o.monitoring_listen:
            self.monitoring = MonitoringServer(
                parse_listen(o.monitoring_listen, "--monitoring-listen"),
                self.metrics,
                healthy=self.healthy,
                ready=self.ready,
            )
            self.monitoring.start()
            log.info("health and metrics on port %d", self.monitoring.port)
        if o.registry_root is not None:
            o.registry_root.mkdir(parents=True, exist_ok=True)
            host, port = parse_listen(o.registry_listen, "--registry-listen")
            self.registry = RegistryServer(
                o.registry_root, host, port, on_request=self.metrics.record_registry_request
            )
            self.registry.start()
            self.metrics.watch_store(o.registry_root)
            log.info("registry (pull only) of %s on %s", o.registry_root, self.registry.url)
        if o.webhook_listen:
            self.webhook_secrets = WebhookSecrets(self.kube, o.namespace)
            self.webhook_secrets.start()
            self.webhooks = WebhookServer(
                parse_listen(o.webhook_listen, "--webhook-listen"),
                self._webhook_secret,
                self._trigger,
            )
            self.webhooks.start()
            log.info("webhooks on port %d", self.webhooks.port)
        if o.upload_listen:
            if o.registry_root is None:
                raise InputError("--upload-listen needs --serve-registry (the store imports go to)")
            self.uploads = UploadServer(
                parse_listen(o.upload_listen, "--upload-listen"),
                Authorizer(self.kube, o.upload_namespace),
                Uploads(
                    o.state_dir,
                    o.registry_root,
                    multi_tenant=o.tenancy.multi_tenant,
                    allowed_signers=(
                        read_allowed_signers(o.require_signed_imports)
                        if o.require_signed_imports is not None
                        else None
                    ),
                ),
                gate=self.upload_elsewhere,
            )
            self.uploads.start()
            log.info("airgap uploads on port %d", self.uploads.port)
        for part in self.parts:
            part.start()

    def _stop_shared(self) -> None:
        for part in reversed(self.parts):
            part.stop()
        self._cache_stop.set()
        if self.uploads is not None:
            self.uploads.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
        if self.webhook_secrets is not None:
            self.webhook_secrets.stop()
        if self.registry is not None:
            self.registry.close()
        if self.monitoring is not None:
            self.monitoring.stop()

    def _lead(self) -> None:
        term = _Term(self, self.shards.owns if self.shards is not None else None)
        with self._term_lock:
            self._term = term
        term.start()

    def _step_down(self) -> None:
        with self._term_lock:
            term, self._term = self._term, None
        if term is not None:
            term.stop()

    def run(self, stop: threading.Event) -> int:
        """Run until ``stop`` is set (0) or the Lease is lost (1)."""
        self._start_shared()
        try:
            if self.shards is not None:
                self._lead()  # every replica works, on the shards it holds
                self.shards.start()
                stop.wait()
                log.info("stopping: waiting for passes in flight")
                self._step_down()
                self.shards.stop()
                return 0
            if self.elector is None:
                self._leadership_changed(True)  # the only replica: always the leader
                self._lead()
                stop.wait()
                return 0
            if not self.elector.acquire(stop):
                return 0
            self.elector.start_renewing()
            self._lead()
            while not stop.is_set() and not self.elector.lost.is_set():
                stop.wait(0.5)
            lost = self.elector.lost.is_set()
            log.info("stopping: waiting for passes in flight")
            self._step_down()  # still renewing meanwhile, unless the Lease is already lost
            if lost:
                log.error("exiting: the Lease was lost; restarted, this replica is a candidate")
                return 1
            self.elector.release()
            return 0
        finally:
            self._step_down()
            if self.elector is not None:
                self.elector.stop_renewing()
            self._stop_shared()

    def run_once(self) -> tuple[list[SyncResult], list[tuple[tuple[str, str], Outcome]]]:
        """One pass over every Repository, then over every KubePkg (``--once``; no Lease)."""
        outcomes = (
            self.syncer.sync_all(self.options.namespace, force=True)
            if self.options.repositories
            else []
        )
        results: list[tuple[tuple[str, str], Outcome]] = []
        if self.options.kubepkgs:
            reconciler = self.reconciler()
            try:
                runtime = Runtime(
                    self.kube,
                    syncer=None,
                    reconciler=reconciler,
                    namespace=self.options.namespace,
                    workers=self.options.kubepkg_workers,
                    observer=self.observe_kubepkg,
                )
                results = runtime.run_once()
            finally:
                reconciler.applier.close()
        return outcomes, results
