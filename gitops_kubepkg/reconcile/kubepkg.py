"""One reconcile pass for one KubePkg object: render > plan > apply > prune > status.

The controller runtime (``controller/runtime.py``) and ``gitops-kubepkg apply`` both call
``KubePkgReconciler``.
A pass reads the live KubePkg, validates its spec (an invalid one stalls: it needs a human, and
nothing is applied or pruned), renders it with an ownerReference to itself, applies and prunes
through ``Applier`` (finding what it applied before in ``live_source``: the controller's cache),
reads the health of what it applied, and writes the status once, only when it changed, so a pass with nothing to do makes no writes at all. The status carries the record
(``spec.record``): where the KubePkg came from, the revision applied, a bounded history of what
was applied before, and whether the record is consistent. Deleting a KubePkg deletes its
objects first (finalizer). Events record applies, prunes and failures.

Multi-tenant (``Tenancy.multi_tenant``): the apply, its dry run, the ownership checks and the prune
go through a view of the connection that impersonates the KubePkg's ServiceAccount, so the API
server holds a KubePkg to its own namespace's RBAC; a KubePkg with no ServiceAccount to act as, or
with a cluster-scoped kind the operator's policy does not grant its namespace, stalls before
anything is written. Status, events and the finalizer stay the controller's own writes.

A controller with a registry store (``store_digest``: ``controller --serve-registry``) pins every
tag-only image the store holds to the digest the store has for that tag (render's ``resolve``),
so after an airgap import Pods run by digest; ``status.images`` records those digests, and a
tag the store does not hold is left as tagged and said in the Consistent condition (NotInStore).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from gitops_kubepkg.clock import SYSTEM, timestamp
from gitops_kubepkg.conventions import ERROR, GONE, PROGRESSING, STALLED, Outcome, event
from gitops_kubepkg.errors import Conflict, KubeError, NotFound, Unavailable
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.apply import (
    CONFIGURED,
    CREATED,
    UNCHANGED,
    Applier,
    ApplyRefused,
    ChangeSet,
    LiveSource,
)
from gitops_kubepkg.reconcile.objects import (
    ANNOTATION_ALLOW_EMPTY,
    ANNOTATION_REQUESTED_AT,
    FINALIZER,
    ObjectRef,
    allows_empty,
    detects_drift,
)
from gitops_kubepkg.reconcile.plan import apply_order, differences, normalised
from gitops_kubepkg.reconcile.pods import selector_query
from gitops_kubepkg.reconcile.render import RenderOptions, builtin_namespaced, render
from gitops_kubepkg.reconcile.status import (
    HEALTH_TIMEOUT,
    Health,
    KubePkgStatus,
    drift_message,
    inventory_of,
    live_health,
    needs_pods,
    outcome_for,
    previous_condition,
    quiet_for,
    same_status,
    with_health_timeout,
)
from gitops_kubepkg.sources.deployment import (
    ANNOTATION_SOURCE_PROBLEM,
    catalog_images_of,
    source_of,
)
from gitops_kubepkg.spec import API_VERSION, KIND, ImageRef, KubeObject, KubePkg
from gitops_kubepkg.spec.convert import ConvertError
from gitops_kubepkg.spec.model import check_documents
from gitops_kubepkg.spec.record import (
    HISTORY_BYTES,
    HISTORY_LIMIT,
    RESULTS,
    Finding,
    Revision,
    applied_revision,
    check_record,
    history_of,
    next_history,
    spec_digest,
)
from gitops_kubepkg.tenancy import ANNOTATION_SERVICE_ACCOUNT, Tenancy

log = logging.getLogger(__name__)
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
"""A ServiceAccount name (DNS subdomain): no namespace, no colon, nothing else to impersonate."""


class StorePins:
    """Render's ``resolve`` for one pass: tag-only images looked up in the controller's registry
    store; remembers what it pinned (for ``status.images``) and what the store lacks."""

    def __init__(self, lookup: Callable[[str, str], str | None]) -> None:
        self.lookup = lookup
        """(repository as the store names it, tag) -> digest; "" not held; None: the store
        holds nothing at all (nothing imported yet: nothing is said missing)."""
        self.pinned: dict[str, str] = {}
        self._missing: set[str] = set()

    def __call__(self, ref: ImageRef) -> str:
        digest = self.lookup(ref.mirror_repository, ref.tag)
        if digest:
            self.pinned[str(ref)] = digest
        elif digest is not None:
            self._missing.add(str(ref))
        return digest or ""

    def missing(self) -> list[str]:
        return sorted(self._missing)


def parse_live(obj: Mapping[str, Any]) -> tuple[KubePkg | None, list[str]]:
    """The KubePkg model of a live object, or the problems that make it invalid."""
    meta = obj.get("metadata") or {}
    doc = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta
        },
        "spec": obj.get("spec"),
    }
    pkgs, problems = check_documents([doc], f"KubePkg {meta.get('namespace')}/{meta.get('name')}")
    return (pkgs[0] if pkgs and not problems else None), [str(p) for p in problems]


class KubePkgReconciler:
    """Reconciles KubePkg objects of one cluster. Thread-safe for different KubePkgs."""

    def __init__(
        self,
        kube: Kube,
        applier: Applier | None = None,
        *,
        registry: str = "",
        events: bool = True,
        history_limit: int = HISTORY_LIMIT,
        history_bytes: int = HISTORY_BYTES,
        clock: Callable[[], datetime] = SYSTEM.now,
        health_timeout: float = HEALTH_TIMEOUT,
        tenancy: Tenancy | None = None,
        store_digest: Callable[[str, str], str | None] | None = None,
        live_source: LiveSource | None = None,
    ) -> None:
        self.kube = kube
        self.store_digest = store_digest
        """(repository as the store names it, tag) -> the digest the controller's registry
        store holds for it ("" none, None nothing imported yet; ``StorePins``); None: no store."""
        self.live_source = live_source
        """Where passes find the live objects they applied (the controller: its informers'
        cache); None lists them."""
        self.applier = applier or Applier(kube)
        self.tenancy = tenancy or Tenancy()
        self.registry = registry
        self.events = events
        self.history_limit = history_limit
        self.history_bytes = history_bytes
        self.clock = clock
        self.health_timeout = health_timeout
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()

    # -- the pass -------------------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str) -> tuple[Outcome, ChangeSet | None]:
        obj = self.kube.get(API_VERSION, KIND, name, namespace)
        if obj is None:
            return Outcome(GONE, "NotFound", f"KubePkg {namespace}/{name} is gone"), None
        return self.reconcile_object(obj)

    def reconcile_object(self, obj: KubeObject) -> tuple[Outcome, ChangeSet | None]:
        """A pass for a KubePkg just read from the API (saves reading it again)."""
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            return self._finalize(obj)
        return self._reconcile(obj)

    def _reconcile(self, obj: KubeObject) -> tuple[Outcome, ChangeSet | None]:
        meta = obj["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        generation = int(meta.get("generation") or 0)
        previous = obj.get("status") or {}
        unreadable = str((meta.get("annotations") or {}).get(ANNOTATION_SOURCE_PROBLEM) or "")
        if unreadable:  # its file broke: this KubePkg fails, alone; what it applied stays
            outcome = Outcome(
                STALLED,
                "SourceUnreadable",
                f"{unreadable}; nothing applied or pruned until the file reads again",
            )
            self._write_status(
                obj,
                KubePkgStatus(
                    outcome, generation, inventory=inventory_of(previous), source=source_of(obj)
                ),
            )
            self._event(obj, "Warning", outcome.reason, outcome.message)
            return outcome, None
        pkg, problems = parse_live(obj)
        desired: list[KubeObject] = []
        store = StorePins(self.store_digest) if self.store_digest is not None else None
        if pkg is not None:
            try:
                desired = render(
                    pkg,
                    RenderOptions(
                        namespace=namespace,
                        owner_uid=meta["uid"],
                        registry=self.registry,
                        namespaced=self._namespaced_for(pkg),
                        resolve=store,
                    ),
                )
            except ConvertError as e:  # a spec upstream would refuse to convert
                pkg, problems = None, [str(e)]
        detect = False
        try:
            detect = detects_drift(obj)
        except ValueError as e:
            pkg, problems = None, [f"KubePkg {namespace}/{name}: {e}"]
        if pkg is None:
            outcome = Outcome(STALLED, "InvalidKubePkg", "; ".join(problems))
            self._write_status(
                obj,
                KubePkgStatus(
                    outcome, generation, inventory=inventory_of(previous), source=source_of(obj)
                ),
            )
            self._event(obj, "Warning", "InvalidKubePkg", outcome.message)
            return outcome, None

        source = source_of(obj)
        applier, refused = self._tenant_applier(obj, desired)
        if applier is None:
            outcome = Outcome(STALLED, refused[0], refused[1])
            self._write_status(
                obj,
                KubePkgStatus(outcome, generation, inventory=inventory_of(previous), source=source),
            )
            self._event(obj, "Warning", outcome.reason, outcome.message)
            return outcome, None

        if FINALIZER not in (meta.get("finalizers") or []):
            self.kube.patch(
                API_VERSION,
                KIND,
                name,
                namespace,
                {"metadata": {"finalizers": [*(meta.get("finalizers") or []), FINALIZER]}},
            )

        findings = check_record(
            pkg.version, pkg.images, source.get("catalogTag", ""), catalog_images_of(obj)
        )
        if store is not None and (missing := store.missing()):
            findings.append(
                Finding(
                    "NotInStore",
                    f"{len(missing)} image(s) the controller's registry store holds no such tag "
                    f"of, left as tagged (an airgapped node cannot pull them): {', '.join(missing)}",
                )
            )
        inventory = inventory_of(previous)
        drift: list[str] = []
        try:
            found = (
                self._detect_drift(applier, desired, inventory, name, namespace)
                if detect and self._applied_as_is(obj)
                else None
            )
            if found is not None:
                drift, changes = found
            else:
                changes = applier.apply(
                    desired,
                    inventory,
                    package=name,
                    namespace=namespace,
                    allow_empty=allows_empty(obj),
                    live_source=self.live_source,
                )
        except ApplyRefused as e:  # EmptyRender too: stalled, nothing written or pruned
            outcome = Outcome(STALLED, e.reason, str(e))
            self._write_status(
                obj,
                KubePkgStatus(
                    outcome, generation, inventory=inventory, source=source, findings=findings
                ),
            )
            self._event(obj, "Warning", e.reason, str(e))
            return outcome, None
        except KubeError as e:
            outcome = Outcome(ERROR, "ApplyFailed", str(e))
            history = self._history(obj, pkg, source, outcome)
            self._write_status(
                obj,
                KubePkgStatus(
                    outcome,
                    generation,
                    inventory=inventory,
                    source=source,
                    findings=findings,
                    history=history,
                ),
            )
            self._event(obj, "Warning", "ApplyFailed", str(e))
            raise

        # Nothing was pruned (the applier refuses that above), but nothing is applied either.
        if not desired and not pkg.images and not allows_empty(obj):
            outcome = Outcome(
                STALLED,
                "EmptyRender",
                f"version {pkg.version} renders no objects and ships no images; annotate the "
                f'KubePkg {ANNOTATION_ALLOW_EMPTY}: "true" if an empty package is meant',
            )
            self._write_status(
                obj,
                KubePkgStatus(
                    outcome, generation, inventory=inventory, source=source, findings=findings
                ),
            )
            self._event(obj, "Warning", outcome.reason, outcome.message)
            return outcome, None
        applied = [ObjectRef.of(o) for o in desired]
        kept = [c.ref for c in changes.changes if c.action == "kept"]
        resources = self._health({r: changes.live[r] for r in applied if r in changes.live})
        outcome = with_health_timeout(
            outcome_for(resources, pkg.version), previous, self.clock(), self.health_timeout
        )
        if outcome.kind == PROGRESSING:
            quiet = quiet_for(changes.live, resources, previous, self.clock(), self.health_timeout)
            outcome = replace(outcome, requeue_after=quiet)
        status = KubePkgStatus(
            outcome,
            generation,
            inventory=applied + [r for r in kept if r not in applied and r in inventory],
            resources=resources,
            images={
                **(store.pinned if store is not None else {}),
                **{ref: digest for ref, digest in pkg.images.items() if digest},
            },
            version=pkg.version,
            revision=applied_revision(source, pkg.version),
            history=self._history(obj, pkg, source, outcome),
            source=source,
            findings=findings,
            drift=drift,
        )
        self._write_status(obj, status)
        reported = previous_condition(previous, "Drifted")
        if drift and (reported or {}).get("message") != drift_message(drift):
            self._event(obj, "Warning", "Drifted", drift_message(drift))
        if changes.changed:
            self._event(obj, "Normal", "Applied", f"version {pkg.version}: {changes.summary()}")
        return outcome, changes

    def _applied_as_is(self, obj: KubeObject) -> bool:
        """Whether the newest history entry applied this very spec and the apply went through:
        then a difference on the cluster is drift, not a change of the package."""
        history = history_of(obj.get("status") or {})
        return bool(
            history
            and history[0].spec == spec_digest(obj.get("spec") or {})
            and history[0].result != RESULTS[ERROR]
        )

    def _detect_drift(
        self,
        applier: Applier,
        desired: list[KubeObject],
        inventory: list[ObjectRef],
        package: str,
        namespace: str,
    ) -> tuple[list[str], ChangeSet] | None:
        """``drift: detect`` with the spec already applied: what another writer changed (objects
        and fields, or deleted), and the live objects for health, writing nothing. None when the
        pass has more to do than revert drift (something to prune): then it applies as usual.

        No drift costs no request from the controller's cache, else one LIST per kind and
        namespace (what apply reads too); a difference is
        confirmed by a server-side dry run, so a value the server only normalised is no drift."""
        live, the_plan = applier.planned(desired, inventory, package, namespace, self.live_source)
        if the_plan.prune or the_plan.keep:
            return None
        changes = ChangeSet()
        for ref in the_plan.unchanged:
            changes.add(ref, UNCHANGED)
            changes.live[ref] = live[ref]
        candidates = sorted(the_plan.create + the_plan.check, key=apply_order)
        if not candidates:
            return [], changes
        would = applier.apply(
            desired,
            inventory,
            package=package,
            namespace=namespace,
            dry_run=True,
            live_source=self.live_source,
        )
        writes = {c.ref for c in would.changes if c.action in (CREATED, CONFIGURED)}
        drift = []
        for obj in candidates:
            ref = ObjectRef.of(obj)
            current = live.get(ref)
            if current is not None:
                changes.live[ref] = current
            if ref not in writes:  # the server only normalised what we apply
                changes.add(ref, UNCHANGED)
            elif current is None:
                drift.append(f"{ref}: deleted")
            else:
                fields = list(differences(normalised(obj), current))
                more = f" and {len(fields) - 5} more" if len(fields) > 5 else ""
                drift.append(f"{ref}: {', '.join(fields[:5])}{more}")
        return drift, changes

    def _health(self, live: Mapping[ObjectRef, KubeObject]) -> dict[ObjectRef, Health]:
        """Health of what a pass applied, with the Pods of every workload that is not ready.

        Pods are read only then, and only once the workload's controller has seen its spec
        (``status.needs_pods``: the pass that creates a Deployment asks nothing, so a cold start
        costs no extra request per KubePkg): one list per namespace per pass, by the workload's own selector
        when it is the only one waiting there (else the namespace's Pods, matched here), with the
        controller's identity (a tenant's ServiceAccount may not read Pods). Render leaves pod
        templates as the package wrote them, so Pods carry no label of ours to watch by, and a
        watch of every Pod would hold the whole cluster's Pods in memory; a ready workload, the
        steady state, costs no request. A Pod changing state is no event here: the progressing
        KubePkg's fallback pass (``runtime.PROGRESSING_FALLBACK``) or its workload's next
        status change reads them again. A list that fails is said in the workload's message."""
        resources = live_health(live)
        waiting: dict[str, list[KubeObject]] = {}
        for ref, obj in sorted(live.items()):
            if needs_pods(obj, resources[ref]):
                waiting.setdefault(ref.namespace, []).append(obj)
        if not waiting:
            return resources
        pods: dict[str, list[KubeObject]] = {}
        unreadable: dict[str, str] = {}
        for namespace, workloads in waiting.items():
            selector = selector_query(workloads[0]) if len(workloads) == 1 else ""
            try:
                pods[namespace] = self.kube.list("v1", "Pod", namespace, label_selector=selector)
            except KubeError as e:
                log.warning("Pods of namespace %s not read: %s", namespace, e)
                unreadable[namespace] = str(e).splitlines()[0] if str(e) else type(e).__name__
        resources.update(live_health({r: o for r, o in live.items() if r.namespace in pods}, pods))
        for ref, h in resources.items():
            if ref.namespace in unreadable and needs_pods(live[ref], h):
                note = f"its Pods could not be read: {unreadable[ref.namespace]}"
                resources[ref] = replace(h, message=f"{h.message}; {note}")
        return resources

    def wait_for_dependencies(self, obj: KubeObject, waiting: list[str]) -> Outcome:
        """A KubePkg whose dependencies (``depends-on``) are not Ready: nothing is applied; its
        status says what it waits for (the runtime wakes it when they change)."""
        outcome = Outcome(
            PROGRESSING,
            "DependencyNotReady",
            f"waiting for {', '.join(waiting)} to be Ready before applying",
        )
        self._hold(obj, outcome)
        return outcome

    def dependency_cycle(self, obj: KubeObject, cycle: list[str]) -> Outcome:
        """A KubePkg on a depends-on cycle (``cycle`` names it first and last): it can never be
        applied, so it stalls saying so (a Warning event when the cycle is new), nothing applied."""
        outcome = Outcome(
            STALLED,
            "DependencyCycle",
            f"depends-on cycle {' -> '.join(cycle)}: none of them can become Ready first; "
            "nothing applied until one stops depending on the next",
        )
        reported = previous_condition(obj.get("status") or {}, "Stalled")
        self._hold(obj, outcome)
        if (reported or {}).get("message") != outcome.message:
            self._event(obj, "Warning", outcome.reason, outcome.message)
        return outcome

    def _hold(self, obj: KubeObject, outcome: Outcome) -> None:
        """Write ``outcome`` for a KubePkg that is not applied this pass; what it applied before
        stays in its inventory."""
        previous = obj.get("status") or {}
        self._write_status(
            obj,
            KubePkgStatus(
                outcome,
                int(obj["metadata"].get("generation") or 0),
                inventory=inventory_of(previous),
                source=source_of(obj),
            ),
        )

    def _finalize(self, obj: KubeObject) -> tuple[Outcome, ChangeSet | None]:
        meta = obj["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        applier, refused = self._tenant_applier(obj, [])
        if applier is None:
            # Nobody to delete as: the garbage collector takes the namespaced objects (their
            # ownerReference); the controller does not delete with its own rights for a tenant.
            changes = ChangeSet()
            log.warning("KubePkg %s/%s: %s; its objects are left", namespace, name, refused[1])
        else:
            changes = applier.delete_all(
                inventory_of(obj.get("status") or {}), package=name, namespace=namespace
            )
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        if FINALIZER in (meta.get("finalizers") or []):
            with contextlib.suppress(NotFound):
                self.kube.patch(
                    API_VERSION,
                    KIND,
                    name,
                    namespace,
                    [
                        {
                            "op": "test",
                            "path": "/metadata/resourceVersion",
                            "value": meta["resourceVersion"],
                        },
                        {"op": "replace", "path": "/metadata/finalizers", "value": finalizers},
                    ],
                    patch_type="json",
                )
        return Outcome(GONE, "Deleted", f"deleted: {changes.summary()}"), changes

    # -- pieces ---------------------------------------------------------------------------------

    def _tenant_applier(
        self, obj: KubeObject, desired: list[KubeObject]
    ) -> tuple[Applier | None, tuple[str, str]]:
        """The applier acting for this KubePkg, or None and (reason, message) why it may not."""
        if not self.tenancy.multi_tenant:
            return self.applier, ("", "")
        meta = obj["metadata"]
        namespace = meta["namespace"]
        account = self.tenancy.service_account(meta.get("annotations"))
        if not account:
            return None, (
                "NoServiceAccount",
                f"no ServiceAccount to apply as: annotate the KubePkg "
                f"{ANNOTATION_SERVICE_ACCOUNT}: NAME (a ServiceAccount of {namespace}) or start "
                "the controller with --default-service-account; nothing was applied",
            )
        if not _NAME.fullmatch(account):
            return None, (
                "InvalidServiceAccount",
                f"{ANNOTATION_SERVICE_ACCOUNT}: {account[:80]!r} is not the name of a "
                f"ServiceAccount (of {namespace}: a KubePkg is applied as one of its own "
                "namespace); nothing was applied",
            )
        refused = [
            ObjectRef.of(o)
            for o in desired
            if not (o.get("metadata") or {}).get("namespace")
            and not self.tenancy.allows_kind(namespace, o["apiVersion"], o["kind"])
        ]
        if refused:
            named = ", ".join(str(r) for r in refused[:3]) + (
                f" and {len(refused) - 3} more" if len(refused) > 3 else ""
            )
            return None, (
                "ClusterScopedRefused",
                f"cluster-scoped {named}: a KubePkg of namespace {namespace} may not apply "
                f"them ({self.tenancy.describe_grants(namespace)}); nothing was applied",
            )
        return self.applier.using(self.kube.as_service_account(namespace, account)), ("", "")

    def _namespaced_for(self, pkg: KubePkg) -> Any:
        scopes: dict[tuple[str, str], bool] = {}
        for manifest in pkg.manifests.values():
            if manifest.get("kind") == "CustomResourceDefinition":
                spec = manifest.get("spec") or {}
                kind = (spec.get("names") or {}).get("kind", "")
                for v in spec.get("versions") or []:
                    scopes[(f"{spec.get('group')}/{v.get('name')}", kind)] = (
                        spec.get("scope") == "Namespaced"
                    )

        def namespaced(api_version: str, kind: str) -> bool:
            if (api_version, kind) in scopes:
                return scopes[(api_version, kind)]
            try:
                return self.kube.resource(api_version, kind).namespaced
            except NotFound:
                return builtin_namespaced(api_version, kind)

        return namespaced

    def _history(
        self, obj: KubeObject, pkg: KubePkg, source: dict[str, str], outcome: Outcome
    ) -> list[Revision]:
        """The history after applying ``pkg``: the newest entry, or a new one for new content."""
        applied = Revision(
            0,
            pkg.version,
            spec_digest(obj.get("spec") or {}),
            timestamp(self.clock()),
            RESULTS.get(outcome.kind, outcome.kind),
            source.get("commit", ""),
            source.get("path", ""),
            {ref: digest for ref, digest in pkg.images.items() if digest},
        )
        return next_history(
            history_of(obj.get("status") or {}),
            applied,
            limit=self.history_limit,
            max_bytes=self.history_bytes,
        )

    def _write_status(self, obj: KubeObject, status: KubePkgStatus) -> None:
        previous = obj.get("status") or {}
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        handled = str(annotations.get(ANNOTATION_REQUESTED_AT) or "")
        new = replace(status, handled=handled, now=self.clock()).to_status(previous)
        if same_status(new, previous):
            return
        meta = obj["metadata"]
        try:
            self.kube.patch(
                API_VERSION,
                KIND,
                meta["name"],
                meta["namespace"],
                {"status": new},
                subresource="status",
            )
        except (NotFound, Conflict) as e:
            log.info("status of KubePkg %s/%s not written: %s", meta["namespace"], meta["name"], e)

    def _event(self, obj: KubeObject, type_: str, reason: str, message: str) -> None:
        if not self.events:
            return
        meta = obj["metadata"]
        body = event(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            type_,
            reason,
            message,
            now=timestamp(self.clock()),
            instance=self.instance,
        )
        try:
            self.kube.request(
                "POST",
                f"/api/v1/namespaces/{meta['namespace']}/events",
                body=body,
                what=f"event {reason} for KubePkg {meta['namespace']}/{meta['name']}",
            )
        except (KubeError, Unavailable) as e:
            log.warning("%s", e)
