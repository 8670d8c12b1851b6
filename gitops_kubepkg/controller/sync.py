"""One pass over one Repository (and over all of them): credentials, mirror poll, catalog or
deployment pass, status.

The controller's unit of work: the runtime's Repository passes (queued by a poll, a webhook or
the file watcher) and ``controller --once`` all call ``Syncer.sync``. Failures become an
``SyncResult`` (Ready=False with the reason) and never delete anything; an idle pass (refs
unchanged since the last good pass of this process) costs one ref listing, one GET of the
Repository and no writes (a deployment Repository also lists its namespace's PackageRevisions:
``controller.lifecycle`` carries out promotions and approvals asked for through the API). A pass
asked for with the ``requestedAt`` annotation is forced (applied even when the refs did not move) and acknowledged in
``status.lastHandledReconcileAt``. Durations, polls and fetched bytes go to ``Metrics`` when given.

Source policy (``tenancy.Tenancy``): a ``file://`` or local-path URL is refused unless local
sources are allowed; a ``secretRef`` Secret's credentials go only to the hosts its ``hosts`` key
names (a Secret without that key is refused in multi-tenant mode, so a tenant cannot send a
Secret it may not read to a server of its own); in multi-tenant mode every namespace has mirrors
of its own (``<state-dir>/tenants/<namespace>/mirrors``), so a Repository never reads what another
namespace's credentials fetched, and an airgapped one reads only what ``airgap import
--state-dir <state-dir>/tenants/<namespace>`` wrote. Blast radius: whatever goes wrong in one
Repository's pass (even an error we did not foresee) is that Repository's Ready=False, the other
Repositories sync, and a ``requestedAt`` is always answered.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from gitops_kubepkg import git
from gitops_kubepkg.clock import SYSTEM, Clock
from gitops_kubepkg.controller import repository
from gitops_kubepkg.controller.catalog import sync_catalog
from gitops_kubepkg.controller.deployment import sync_deployment
from gitops_kubepkg.controller.lifecycle import sync_lifecycle
from gitops_kubepkg.controller.metrics import Metrics, pack_bytes
from gitops_kubepkg.controller.repository import RepositorySpec, SyncResult
from gitops_kubepkg.controller.resources import sync_resources
from gitops_kubepkg.controller.upgrades import report_upgrades
from gitops_kubepkg.conventions import ERROR, READY, STALLED, Outcome, redact_text, redact_url
from gitops_kubepkg.errors import (
    AuthError,
    GitopsKubepkgError,
    InputError,
    KubeError,
    NotFound,
    Problem,
    SignatureError,
    SourceError,
)
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.sources.mirror import Mirror, PollResult
from gitops_kubepkg.sources.verify import VerifyPolicy, policy_from_secret
from gitops_kubepkg.spec import API_VERSION, KIND, KubeObject
from gitops_kubepkg.tenancy import Tenancy, is_local_url, tenant_state_dir

log = logging.getLogger(__name__)


def secret_values(secret: KubeObject) -> dict[str, str]:
    """Every entry of a Secret, decoded (``stringData`` too, as a test fixture may write it)."""
    out = {str(k): str(v) for k, v in (secret.get("stringData") or {}).items()}
    for key, raw in (secret.get("data") or {}).items():
        out[str(key)] = base64.b64decode(raw).decode()
    return out


def credentials_from_secret(secret: KubeObject) -> git.Credentials:
    """Flux's key names: username/password, bearerToken, identity (+identity.pub), known_hosts."""
    values = secret_values(secret)

    def value(key: str) -> str:
        return values.get(key, "")

    return git.Credentials(
        username=value("username"),
        password=value("password"),
        bearer_token=value("bearerToken"),
        ssh_private_key=value("identity"),
        ssh_public_key=value("identity.pub"),
        known_hosts=value("known_hosts"),
    )


SECRET_HOSTS = "hosts"
"""The key of a Repository Secret naming where its credentials may be sent (comma or newline
separated host names, ``host:port`` to pin a port)."""


def url_host(url: str) -> tuple[str, int | None]:
    """The host name (lower case) and port of a git URL, scp-like ``user@host:path`` too."""
    text = url.strip()
    if "://" not in text and ":" in text:
        head = text.split(":", 1)[0]
        return head.rsplit("@", 1)[-1].lower(), None
    parts = urllib.parse.urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port


def hosts_allow(allowed: str, url: str) -> bool:
    """Whether ``url``'s host is one of ``allowed`` (a Secret's ``hosts`` value)."""
    host, port = url_host(url)
    for entry in allowed.replace(",", "\n").split():
        name, _, pinned = entry.strip().lower().partition(":")
        if name == host and (not pinned or (port is not None and pinned == str(port))):
            return True
    return False


def _fingerprint(spec: RepositorySpec, refs: Mapping[str, str], keys: str = "") -> str:
    """What a good pass depended on: the spec, the refs and the trusted keys (a key removed from
    the verify Secret re-checks refs that did not move)."""
    text = "\n".join(f"{k} {v}" for k, v in sorted(refs.items()))
    return hashlib.sha256(f"{spec.generation}\n{keys}\n{text}".encode()).hexdigest()


def _summary(problems: list[Problem], limit: int = 5) -> str:
    shown = "; ".join(str(p) for p in problems[:limit])
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return shown + more


class Syncer:
    """Syncs Repository objects into the cluster. Thread-safe; one per process."""

    def __init__(
        self,
        kube: Kube,
        state_dir: Path,
        *,
        max_fetches: int = 4,
        metrics: Metrics | None = None,
        tenancy: Tenancy | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.kube = kube
        self.clock = clock
        """Times passes and mirrors; ``forget``'s ``before`` is read from it."""
        self.metrics = metrics
        self.state_dir = state_dir
        self.tenancy = tenancy or Tenancy()
        self._mirrors: dict[tuple[str, str], Mirror] = {}
        self._good: dict[str, str] = {}
        self._catalogs: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        """(scope, redacted catalog url) -> (its Repository's namespace/name, the refs its mirror
        holds); the scope is the Repository's namespace in multi-tenant mode, else "", so a
        KubePkg hears of upgrades only from catalogs its own namespace syncs."""
        self._lock = threading.Lock()
        self._fetch_slots = threading.BoundedSemaphore(max_fetches)

    def mirror(self, spec: RepositorySpec) -> Mirror:
        """The mirror of ``spec.url`` (shared by every Repository naming that URL)."""
        scope = spec.namespace if self.tenancy.multi_tenant else ""
        with self._lock:
            mirror = self._mirrors.get((scope, spec.url))
            if mirror is None:
                where = tenant_state_dir(self.state_dir, scope) if scope else self.state_dir
                mirror = Mirror(where, spec.url, airgap=spec.airgap, created=self.clock.monotonic())
                self._mirrors[(scope, spec.url)] = mirror
            mirror.airgap = spec.airgap
            return mirror

    def stale(self, key: str) -> None:
        """The next sync of Repository ``key`` applies its branch even at the same commit (an
        object it wrote was deleted by someone else)."""
        with self._lock:
            self._good.pop(key, None)

    def forget(self, urls: set[str], *, before: float) -> list[Path]:
        """Delete the mirrors this process keeps for URLs that no Repository names any more;
        return their paths. ``urls`` come from a listing started at ``before`` (monotonic): a
        mirror made since then may serve a Repository the listing missed, and stays. Airgapped
        mirrors stay too: their commits came from an import and cannot be fetched again. Mirrors
        left by an earlier process are not touched (the deployment's state directory is an
        emptyDir, new with every Pod)."""
        with self._lock:
            gone_keys = [
                key
                for key, m in self._mirrors.items()
                if m.url not in urls and not m.airgap and m.created < before
            ]
            gone = [self._mirrors.pop(key) for key in gone_keys]
            kept = {redact_url(url) for url in urls}
            for key in [k for k in self._catalogs if k[1] not in kept]:
                del self._catalogs[key]
        for m in gone:
            m.remove()
        return [m.path for m in gone]

    @property
    def fetches(self) -> int:
        return sum(m.fetches for m in self._mirrors.values())

    def credentials(self, spec: RepositorySpec) -> git.Credentials | None:
        if not spec.secret:
            return None
        where = f"Repository {spec.key}: spec.secretRef: Secret {spec.namespace}/{spec.secret}"
        secret = self.kube.get("v1", "Secret", spec.secret, spec.namespace)
        if secret is None:
            raise AuthError(f"{where} not found")
        hosts = secret_values(secret).get(SECRET_HOSTS)
        if hosts is None and self.tenancy.multi_tenant:
            raise AuthError(
                f"{where} has no {SECRET_HOSTS!r} key naming the hosts its credentials may be "
                "sent to; refused, nothing was sent"
            )
        if hosts is not None and not hosts_allow(hosts, spec.url):
            raise AuthError(
                f"{where} may only be sent to {', '.join(hosts.replace(',', ' ').split())}, not "
                f"to {url_host(spec.url)[0] or redact_url(spec.url)}; refused, nothing was sent"
            )
        return credentials_from_secret(secret)

    def verify_policy(self, spec: RepositorySpec) -> VerifyPolicy | None:
        """``spec.verify`` with its Secret's keys; None when the Repository verifies nothing."""
        if not spec.verify_mode:
            return None
        where = f"Repository {spec.key}: spec.verify.secretRef: Secret {spec.namespace}/{spec.verify_secret}"
        secret = self.kube.get("v1", "Secret", spec.verify_secret, spec.namespace)
        if secret is None:
            raise SignatureError(f"{where} not found; nothing applied")
        return policy_from_secret(spec.verify_mode, secret_values(secret), where)

    def repositories(self, namespace: str = "") -> list[KubeObject]:
        return self.kube.list(repository.API_VERSION, repository.KIND, namespace)

    def sync_all(self, namespace: str = "", *, force: bool = False) -> list[SyncResult]:
        return [self.sync_object(obj, force=force) for obj in self.repositories(namespace)]

    def sync(self, namespace: str, name: str, *, force: bool = False) -> SyncResult | None:
        """Sync one Repository by name; None when it no longer exists."""
        obj = self.kube.get(repository.API_VERSION, repository.KIND, name, namespace)
        if obj is None:
            with self._lock:
                self._good.pop(f"{namespace}/{name}", None)
            return None
        return self.sync_object(obj, force=force)

    def sync_object(self, obj: KubeObject, *, force: bool = False) -> SyncResult:
        started = self.clock.monotonic()
        outcome = self._sync_object(obj, force=force)
        if self.metrics is not None:
            self.metrics.reconcile_duration.labels("Repository", outcome.outcome.kind).observe(
                self.clock.monotonic() - started
            )
        return outcome

    def _sync_object(self, obj: KubeObject, *, force: bool) -> SyncResult:
        meta = obj.get("metadata") or {}
        requested = repository.pending_request(obj)
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        try:
            spec = repository.parse(obj)
        except InputError as e:
            outcome = SyncResult(key, Outcome(ERROR, "InvalidSpec", str(e)), handled=requested)
            bare = RepositorySpec(
                namespace=str(meta.get("namespace", "")),
                name=str(meta.get("name", "")),
                url="",
                type="",
                generation=int(meta.get("generation") or 0),
            )
            self._write_status(bare, obj, outcome)
            return outcome
        if spec.suspend:
            outcome = SyncResult(
                key,
                Outcome(READY, "Suspended", "suspended: not fetched, nothing applied"),
                handled=requested,
            )
            if requested:  # answered, so `reconcile repository` does not wait in vain
                self._write_status(spec, obj, outcome)
            return outcome
        try:
            outcome = self._run(spec, force=force or bool(requested))
        except Exception as e:
            log.exception("Repository %s: unexpected error", key)
            outcome = self._failure(spec, "SyncFailed", e)
            outcome = dataclasses.replace(
                outcome,
                outcome=dataclasses.replace(
                    outcome.outcome,
                    message=f"unexpected error ({type(e).__name__}): {outcome.message}",
                ),
            )
        if requested:
            outcome = dataclasses.replace(outcome, handled=requested)
        self._write_status(spec, obj, outcome)
        return outcome

    def _run(self, spec: RepositorySpec, *, force: bool) -> SyncResult:
        if not self.tenancy.local_sources and not spec.airgap and is_local_url(spec.url):
            return self._failure(
                spec,
                "LocalSourceRefused",
                InputError(
                    f"Repository {spec.key}: spec.url: {redact_url(spec.url)} reads the "
                    "controller's own file system; the controller does not allow local sources "
                    "(--local-sources)"
                ),
            )
        try:
            credentials = self.credentials(spec)
            policy = self.verify_policy(spec)
            mirror = self.mirror(spec)
            with self._fetch_slots:
                poll = self._poll(mirror, credentials)
            lifecycle_changes: list[str] = []
            if spec.type == "deployment" and not spec.airgap:
                polls = [poll]

                def repoll() -> Mapping[str, str]:
                    with self._fetch_slots:
                        polls.append(self._poll(mirror, credentials))
                    return polls[-1].refs

                lifecycle_changes = sync_lifecycle(
                    self.kube, spec, mirror, poll.refs, self.credentials, repoll
                ).changes
                poll = polls[-1]
                force = force or bool(lifecycle_changes)
            fingerprint = _fingerprint(spec, poll.refs, policy.identity if policy else "")
            with self._lock:
                unchanged = self._good.get(spec.key) == fingerprint
                if spec.type == "catalog":
                    self._catalogs[(self._scope(spec.namespace), redact_url(spec.url))] = (
                        spec.key,
                        dict(poll.refs),
                    )
            if unchanged and not force:
                return SyncResult(spec.key, Outcome(READY, "Unchanged", ""), fetched=False)
            outcome = self._dispatch(
                spec, mirror, dict(poll.refs), fetched=poll.fetched, policy=policy
            )
            if lifecycle_changes:
                outcome = dataclasses.replace(
                    outcome, changes=lifecycle_changes + list(outcome.changes)
                )
        except SignatureError as e:
            return self._failure(spec, "VerificationFailed", e)
        except AuthError as e:
            return self._failure(spec, "AuthenticationFailed", e)
        except SourceError as e:
            return self._failure(spec, "FetchFailed", e)
        except KubeError as e:
            return self._failure(spec, "ApplyFailed", e)
        except GitopsKubepkgError as e:
            return self._failure(spec, "SyncFailed", e)
        with self._lock:
            if outcome.ready:
                self._good[spec.key] = fingerprint
            else:
                self._good.pop(spec.key, None)
        return outcome

    def _scope(self, namespace: str) -> str:
        return namespace if self.tenancy.multi_tenant else ""

    def _report_upgrades(self, kubepkgs: list[KubeObject]) -> None:
        """``status.upgrade`` of ``kubepkgs``, each from the catalogs its scope syncs."""
        scopes: dict[str, list[KubeObject]] = {}
        for obj in kubepkgs:
            namespace = str((obj.get("metadata") or {}).get("namespace") or "")
            scopes.setdefault(self._scope(namespace), []).append(obj)
        for scope, objs in scopes.items():

            def refs_of(url: str, scope: str = scope) -> tuple[str, dict[str, str]] | None:
                with self._lock:
                    return self._catalogs.get((scope, url))

            report_upgrades(self.kube, objs, refs_of)

    def _poll(self, mirror: Mirror, credentials: git.Credentials | None) -> PollResult:
        if self.metrics is None:
            return mirror.poll(credentials)
        before = pack_bytes(mirror.path)
        started = self.clock.monotonic()
        poll = mirror.poll(credentials)
        self.metrics.git_polls.labels("true" if poll.fetched else "false").inc()
        if poll.fetched:
            self.metrics.git_fetch_duration.observe(self.clock.monotonic() - started)
            self.metrics.git_fetch_bytes.inc(max(0, pack_bytes(mirror.path) - before))
        return poll

    def _failure(self, spec: RepositorySpec, reason: str, error: Exception) -> SyncResult:
        with self._lock:
            self._good.pop(spec.key, None)
        message = redact_text(str(error))
        log.warning("Repository %s: %s: %s", spec.key, reason, message)
        return SyncResult(
            spec.key,
            Outcome(ERROR, reason, f"{message} (nothing was deleted; retrying with backoff)"),
        )

    def _dispatch(
        self,
        spec: RepositorySpec,
        mirror: Mirror,
        refs: dict[str, str],
        *,
        fetched: bool,
        policy: VerifyPolicy | None = None,
    ) -> SyncResult:
        branch = refs.get(f"refs/heads/{spec.branch}", "")
        if spec.type == "catalog":
            result = sync_catalog(self.kube, spec, mirror, refs, policy)
            # Every KubePkg promoted from this catalog: is there something newer now?
            self._report_upgrades(self.kube.list(API_VERSION, KIND, self._scope(spec.namespace)))
            commit = mirror.repository().peel(branch) if branch else ""
            packages = result.packages
            changes = result.changes + sync_resources(self.kube, spec, mirror)
            problems = list(result.problems)
            if result.unverified:
                ready, reason = False, "VerificationFailed"
                message = (
                    f"{len(result.unverified)} tag(s) not published, their signatures do not "
                    f"verify: {_summary(result.unverified)}"
                )
            elif result.moved:
                ready, reason = False, "TagMoved"
                message = "; ".join(str(m) for m in result.moved) + (
                    f"; {_summary(problems)}" if problems else ""
                )
            elif problems:
                ready, reason = False, "InvalidRevisions"
                message = (
                    f"{len(problems)} problem(s), other revisions synced: {_summary(problems)}"
                )
            else:
                ready, reason = True, "Synced"
                message = f"{result.revisions} revision(s) of {result.packages} package(s)"
        else:
            deployed = sync_deployment(self.kube, spec, mirror, policy, self.tenancy)
            self._report_upgrades(self.kube.list(API_VERSION, KIND, spec.namespace))
            commit, packages = deployed.commit, deployed.packages
            changes = deployed.changes + sync_resources(self.kube, spec, mirror)
            if deployed.problems:
                ready, reason = False, "InvalidKubePkgs"
                message = (
                    f"{len(deployed.problems)} problem(s), the other KubePkgs synced: "
                    f"{_summary(deployed.problems)}"
                )
            else:
                ready, reason = True, "Synced"
                message = f"{deployed.packages} KubePkg(s) at {deployed.commit[:12]}" + (
                    f", {deployed.verified}" if deployed.verified else ""
                )
        return SyncResult(
            spec.key,
            Outcome(READY if ready else STALLED, reason, message),
            commit=commit,
            package_count=packages,
            synced=True,
            fetched=fetched,
            changes=changes,
        )

    def _write_status(self, spec: RepositorySpec, live: KubeObject, outcome: SyncResult) -> None:
        if outcome.reason == "Unchanged" and not outcome.handled:
            return
        patch = repository.status_patch(spec, outcome, live)
        if patch is None:
            return
        try:
            self.kube.patch(
                repository.API_VERSION,
                repository.KIND,
                spec.name,
                spec.namespace,
                patch,
                subresource="status",
            )
        except NotFound:
            pass
        except KubeError as e:
            log.warning("Repository %s: writing status: %s", spec.key, e)
