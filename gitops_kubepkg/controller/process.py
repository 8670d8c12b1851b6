"""The controller process: every part in one binary; the parts that write run only on the leader.

``gitops-kubepkg controller`` builds a ``ControllerProcess`` from its flags. The parts:

- on every replica: ``/healthz``, ``/readyz`` and ``/metrics`` (``monitoring.py``), the push
  webhook receiver and the pull-only registry. None of them writes what the leader owns: a
  webhook on a standby is forwarded to the leader as a ``requestedAt`` annotation;
- on the leader only (``leader.py``): repository sync (``service.Controller``: schedule, file
  watcher, requestedAt watch, PackageRevisions and KubePkg objects) and the KubePkg loop
  (``reconcile.loop``: render, apply, prune, status).

Life cycle: start the parts every replica runs; wait for the Lease; start the leader's parts; on
SIGTERM stop them (in-flight passes finish while the Lease is still renewed), release the Lease,
stop the rest and exit 0. A leader that cannot renew stops its parts and exits 1, so the kubelet
restarts it as a candidate rather than leaving two writers.

What the probes mean:

- healthy: no part's thread died unexpectedly (a dead KubePkg loop or renewer fails liveness, and
  the kubelet restarts the container);
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
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gitops_kubepkg.airgap.upload import Authorizer, Uploads, UploadServer
from gitops_kubepkg.controller import repository
from gitops_kubepkg.controller.leader import LeaderElector, LeaseConfig, micro_time
from gitops_kubepkg.controller.metrics import Metrics
from gitops_kubepkg.controller.monitoring import MonitoringServer
from gitops_kubepkg.controller.repository import Outcome as RepositoryOutcome
from gitops_kubepkg.controller.service import Controller, WebhookSecrets
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.errors import InputError, KubeError, NotFound
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.apply import CONFIGURED, CREATED, DELETED, ChangeSet
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.reconcile.loop import KubePkgLoop
from gitops_kubepkg.reconcile.status import Outcome
from gitops_kubepkg.registry.server import RegistryServer
from gitops_kubepkg.serving import parse_listen
from gitops_kubepkg.sources.webhook import WebhookServer
from gitops_kubepkg.spec import API_VERSION, KIND
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
    max_fetches: int = 4
    kubepkg_workers: int = 2
    resync: float = 300.0
    history_limit: int = HISTORY_LIMIT
    """Applied revisions each KubePkg's status keeps (``history``, ``rollback``)."""
    refresh_seconds: float = 10.0
    watch_files: bool = True
    tenancy: Tenancy = field(default_factory=Tenancy)
    """Multi-tenant mode, the default ServiceAccount and the operator's policy (``tenancy.py``)."""


class MeasuredReconciler(KubePkgReconciler):
    """The KubePkg reconciler, counting the objects each pass applied and pruned."""

    def __init__(
        self,
        kube: Kube,
        metrics: Metrics,
        *,
        registry: str = "",
        history_limit: int = 10,
        tenancy: Tenancy | None = None,
    ) -> None:
        super().__init__(kube, registry=registry, history_limit=history_limit, tenancy=tenancy)
        self.metrics = metrics

    def reconcile(self, namespace: str, name: str) -> tuple[Outcome, ChangeSet | None]:
        outcome, changes = super().reconcile(namespace, name)
        for change in changes.changes if changes is not None else []:
            if change.action in (CREATED, CONFIGURED):
                self.metrics.objects_applied.labels(change.ref.kind, change.action).inc()
            elif change.action == DELETED:
                self.metrics.objects_pruned.labels(change.ref.kind).inc()
        return outcome, changes


class _Term:
    """The leader's parts, for one term of leadership."""

    def __init__(self, process: ControllerProcess) -> None:
        o = process.options
        self.stop_event = threading.Event()
        self.controller = (
            Controller(
                process.syncer,
                namespace=o.namespace,
                refresh_seconds=o.refresh_seconds,
                watch=o.watch_files,
            )
            if o.repositories
            else None
        )
        self.reconciler = process.reconciler() if o.kubepkgs else None
        self.loop = (
            KubePkgLoop(
                process.kube,
                self.reconciler,
                namespace=o.namespace,
                workers=o.kubepkg_workers,
                resync=o.resync,
                observer=process.observe_kubepkg,
            )
            if self.reconciler is not None
            else None
        )
        self.kubepkgs_listed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.controller is not None:
            self.controller.start()
        if self.loop is not None:
            self._thread = threading.Thread(target=self._run_loop, name="kubepkg-loop")
            self._thread.start()

    def _run_loop(self) -> None:
        assert self.loop is not None
        delay = 1.0
        while not self.stop_event.is_set():
            try:  # the readiness check: our CRD is served and we may list KubePkgs
                self.loop.kube.list(API_VERSION, KIND, self.loop.namespace)
                self.kubepkgs_listed.set()
                break
            except KubeError as e:
                log.warning("listing KubePkgs: %s (retry in %.0fs)", e, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30.0)
        self.loop.run(self.stop_event)

    def stop(self) -> None:
        """Stop taking work and wait for what is in flight."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join()
        if self.controller is not None:
            self.controller.stop()
        if self.reconciler is not None:
            self.reconciler.applier.close()

    def problems(self, *, ready: bool) -> list[str]:
        out = []
        if (
            self._thread is not None
            and not self._thread.is_alive()
            and not self.stop_event.is_set()
        ):
            out.append("the KubePkg loop stopped")
        if ready:
            if self.controller is not None and not self.controller.listed.is_set():
                out.append("Repository objects not listed yet")
            if self.loop is not None and not self.kubepkgs_listed.is_set():
                out.append("KubePkg objects not listed yet")
        return out


class ControllerProcess:
    def __init__(self, kube: Kube, options: Options, metrics: Metrics | None = None) -> None:
        self.kube = kube
        self.options = options
        self.metrics = metrics or Metrics()
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
        self._term: _Term | None = None
        self._term_lock = threading.Lock()
        self.monitoring: MonitoringServer | None = None
        self.webhooks: WebhookServer | None = None
        self.webhook_secrets: WebhookSecrets | None = None
        self.uploads: UploadServer | None = None
        self.registry: RegistryServer | None = None

    # -- parts ----------------------------------------------------------------------------------

    def reconciler(self) -> MeasuredReconciler:
        return MeasuredReconciler(
            self.kube,
            self.metrics,
            registry=self.options.image_registry,
            history_limit=self.options.history_limit,
            tenancy=self.options.tenancy,
        )

    def observe_kubepkg(self, key: tuple[str, str], outcome: Outcome, seconds: float) -> None:
        self.metrics.reconcile_duration.labels("KubePkg", outcome.kind).observe(seconds)

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
            controller = self._term.controller if self._term is not None else None
        if controller is not None:
            return controller.trigger(namespace, name)
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

    def healthy(self) -> list[str]:
        with self._term_lock:
            term = self._term
        problems = term.problems(ready=False) if term is not None else []
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
        if time.monotonic() - contact > self.elector.config.lease_duration:
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
                Uploads(o.state_dir, o.registry_root, multi_tenant=o.tenancy.multi_tenant),
            )
            self.uploads.start()
            log.info("airgap uploads on port %d", self.uploads.port)

    def _stop_shared(self) -> None:
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
        term = _Term(self)
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

    def run_once(self) -> tuple[list[RepositoryOutcome], list[tuple[tuple[str, str], Outcome]]]:
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
                loop = KubePkgLoop(self.kube, reconciler, namespace=self.options.namespace)
                results = loop.run_once()
            finally:
                reconciler.applier.close()
        return outcomes, results
