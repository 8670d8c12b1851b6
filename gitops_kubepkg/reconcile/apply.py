"""Apply: server-side apply of a plan in stages and tiers, then prune.

Third and fourth steps of a pass (render > plan > apply > prune > status); the only part of
reconcile that writes to the cluster. The order of work:

1. the live objects of every kind involved, by our labels, from a ``LiveSource``: the CLI lists
   them (one request per kind and namespace); the controller reads its informers' cache and
   lists only a kind it does not watch yet. The cache holds ``INERT_KINDS`` by metadata only:
   an object to check against them is read whole first;
2. plan (pure): create / check / unchanged / prune;
3. dry-run every write except creates of ``INERT_KINDS`` (ConfigMaps, Secrets, ServiceAccounts,
   ClusterIP Services, RBAC): updates, workloads, custom resources, CRDs and Namespaces; but when
   the only other write of the pass is one create (a Deployment beside its ConfigMap), that one is
   not dry-run either: it is written last, so its refusal is known before anything else stays. Objects
   whose namespace or CRD is created by this same set are dry-run after the first stage. Any
   refusal stops the pass before anything is written, and the refused object is named. A
   "check" object whose dry-run result equals the live object was only normalised by the
   server: it is unchanged, and is not written;
4. apply the first stage (CRDs, Namespaces), wait until CRDs are Established; then the inert
   creates, all at once; then the rest tier by tier (``plan.tier_of``: what others refer to,
   workloads, webhooks and custom resources), every object of a tier at once;
5. delete what the plan prunes, each with its uid as a precondition (an object deleted and made
   again by someone else in between is not ours to delete).

The guarantee on refusal: a pass the server refuses leaves the cluster as it found it. Every
write that could not be undone (an update, or a create of a kind something acts on) was dry-run
before the first write, except a lone such create, which is written after everything else.
Inert creates are not dry-run: if one (or that lone create) is refused, the pass deletes the
inert objects it created (each with its uid as a precondition) before it reports the refusal,
so they exist for a moment (a watcher may see them) and nothing acted on them. A
refusal in the second step of a set that creates a Namespace or CRD leaves that first stage
applied (the rest could not be dry-run before it existed).

Never a takeover: every create carries a create-only precondition (``metadata.resourceVersion``
"1", which no stored object has: the server refuses it with 409 if the object exists), so an
object that already exists without this package's labels, which belongs to another KubePkg or
another manager, is never written: the pass stalls naming the owner (``OwnedElsewhere``), with
the guarantee above. Only objects this package already holds are applied with ``force`` (so a
hand edit of them is reverted). A create refused because the object exists and is ours (the
controller's cache had not seen it yet) makes the pass plan again from a fresh list.

A render with no objects never prunes what the package applied before unless the caller says it
is meant (``allow_empty``, from the KubePkg's ``gitops.kubepkg.dev/allow-empty`` annotation): an
empty render is far more often a spec we failed to understand than a wish to delete everything.

The result is a ``ChangeSet`` (created, configured, unchanged, deleted, kept) that status, events
and the CLI print.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from typing import Protocol, TypeVar

from gitops_kubepkg.errors import Conflict, Forbidden, KubeError, NotFound, Unavailable
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.objects import (
    ANNOTATION_ALLOW_EMPTY,
    FIELD_MANAGER,
    LABEL_PACKAGE,
    LABEL_PACKAGE_NAMESPACE,
    ObjectRef,
    is_ours,
    selector,
)
from gitops_kubepkg.reconcile.plan import (
    Plan,
    comparable,
    is_inert,
    plan,
    stage_of,
    tier_of,
    write_order,
)
from gitops_kubepkg.spec import KubeObject

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

CREATED, CONFIGURED, UNCHANGED, DELETED, KEPT = (
    "created",
    "configured",
    "unchanged",
    "deleted",
    "kept",
)


@dataclass(frozen=True)
class Change:
    ref: ObjectRef
    action: str
    message: str = ""


@dataclass
class ChangeSet:
    """What a pass did (or, in a dry run, would do) to each object."""

    changes: list[Change] = field(default_factory=list)
    live: dict[ObjectRef, KubeObject] = field(default_factory=dict)
    """The objects as the server returned them after the pass (for health and status)."""

    def add(self, ref: ObjectRef, action: str, message: str = "") -> None:
        self.changes.append(Change(ref, action, message))

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def changed(self) -> bool:
        return any(c.action in (CREATED, CONFIGURED, DELETED) for c in self.changes)

    def summary(self) -> str:
        parts = [
            f"{self.count(a)} {a}"
            for a in (CREATED, CONFIGURED, UNCHANGED, DELETED, KEPT)
            if self.count(a)
        ]
        return ", ".join(parts) or "nothing to do"


class ApplyRefused(KubeError):
    """The server refused objects in the dry run; nothing of the set was written."""

    def __init__(self, refusals: list[tuple[ObjectRef, str]]) -> None:
        self.refusals = refusals
        first = "; ".join(f"{ref}: {why}" for ref, why in refusals[:3])
        more = f" (and {len(refusals) - 3} more)" if len(refusals) > 3 else ""
        super().__init__(f"the server refused {first}{more}", status=422, reason="ApplyRefused")


class EmptyRender(ApplyRefused):
    """The package renders no objects while objects it applied before would be pruned."""

    def __init__(self, prune: list[ObjectRef]) -> None:
        self.refusals = []
        named = ", ".join(str(r) for r in prune[:3]) + (
            f" and {len(prune) - 3} more" if len(prune) > 3 else ""
        )
        KubeError.__init__(
            self,
            f"renders no objects, so {len(prune)} applied before would be pruned ({named}); "
            f'nothing was deleted. Annotate the KubePkg {ANNOTATION_ALLOW_EMPTY}: "true" '
            "if removing them is meant",
            status=422,
            reason="EmptyRender",
        )


class OwnedElsewhere(ApplyRefused):
    """Objects to create exist already and belong to another KubePkg or another manager."""

    def __init__(self, refusals: list[tuple[ObjectRef, str]]) -> None:
        self.refusals = refusals
        first = "; ".join(f"{ref} {why}" for ref, why in refusals[:3])
        more = f" (and {len(refusals) - 3} more)" if len(refusals) > 3 else ""
        KubeError.__init__(
            self,
            f"{first}{more}; not taken over, nothing was written",
            status=409,
            reason="OwnedElsewhere",
        )


def owner_of(obj: KubeObject) -> str:
    """Who holds a live object that is not ours: ``belongs to KubePkg ns/name`` or its managers."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(LABEL_PACKAGE):
        return (
            f"belongs to KubePkg {labels.get(LABEL_PACKAGE_NAMESPACE, '?')}/{labels[LABEL_PACKAGE]}"
        )
    owners = [f"{o.get('kind')} {o.get('name')}" for o in meta.get("ownerReferences") or []]
    managers = sorted({str(e.get("manager")) for e in meta.get("managedFields") or []})
    parts = []
    if owners:
        parts.append(f"owned by {', '.join(owners)}")
    if managers:
        parts.append(f"field managers {', '.join(managers)}")
    return "exists and is not this package's (" + ("; ".join(parts) or "no manager") + ")"


CREATE_ONLY = "1"
"""``metadata.resourceVersion`` of a create: a precondition no stored object meets (etcd's first
write is revision 2), so the server creates the object or refuses with 409 if it exists."""

LiveScope = tuple[str, str, str]
"""(apiVersion, kind, namespace) of live objects to find."""


class LiveSource(Protocol):
    """Where apply finds a package's live objects (those carrying its labels)."""

    def objects(
        self, scope: LiveScope, package: str, namespace: str
    ) -> tuple[list[KubeObject], bool] | None:
        """Our objects of ``scope`` and whether they are whole (False: metadata only), or None
        when this source does not hold that kind (apply then lists it)."""


class Lagged(KubeError):
    """A create found its object already there and ours: the live source had not seen it."""


@dataclass
class _Tried:
    """What the server said to a batch of writes or dry runs."""

    written: dict[ObjectRef, KubeObject] = field(default_factory=dict)
    refused: list[tuple[ObjectRef, str]] = field(default_factory=list)
    taken: list[tuple[ObjectRef, str]] = field(default_factory=list)
    """Creates of objects that exist and are not ours."""
    failed: list[KubeError] = field(default_factory=list)
    """Not a refusal: the server was unavailable, overloaded, or failed (retry later)."""
    lagged: bool = False

    def raise_any(self) -> None:
        if self.failed:
            raise self.failed[0]
        if self.taken:
            raise OwnedElsewhere(self.taken)
        if self.refused:
            raise ApplyRefused(self.refused)
        if self.lagged:
            raise Lagged("an object to create exists already", status=409, reason="Lagged")


def _transient(e: KubeError) -> bool:
    """A failure to retry, not the server's verdict on the object."""
    return isinstance(e, Unavailable) or e.status in (0, 408, 429) or e.status >= 500


class Applier:
    """Applies rendered sets for one cluster; ``workers`` requests run at once."""

    def __init__(self, kube: Kube, *, workers: int = 8) -> None:
        self.kube = kube
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply")

    def using(self, kube: Kube) -> Applier:
        """This applier sending its requests through ``kube`` (a ServiceAccount's view); the
        worker pool is shared, so only the original is closed."""
        view = copy.copy(self)
        view.kube = kube
        return view

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        items = list(items)
        if len(items) <= 1:
            return iter([fn(i) for i in items])
        return self._pool.map(fn, items)

    # -- reading --------------------------------------------------------------------------------

    def live_objects(
        self,
        refs: Iterable[ObjectRef],
        package: str,
        namespace: str,
        source: LiveSource | None = None,
    ) -> tuple[dict[ObjectRef, KubeObject], set[ObjectRef]]:
        """Our objects of every (kind, namespace) in ``refs``, found by label, from ``source``
        (or listed), and which of them are metadata only. Raises ``ApplyRefused`` naming the
        objects of a kind we may not even list (403)."""
        refs = list(refs)
        scopes = sorted({(r.api_version, r.kind, r.namespace) for r in refs})
        sel = selector(package, namespace)

        cached: dict[LiveScope, tuple[list[KubeObject], bool] | str] = {}
        for scope in scopes:  # read here: a cache read needs no thread of the pool
            hit = source.objects(scope, package, namespace) if source is not None else None
            if hit is not None:
                cached[scope] = hit

        def list_scope(scope: LiveScope) -> tuple[list[KubeObject], bool] | str:
            api_version, kind, ns = scope
            try:
                return self.kube.list(api_version, kind, ns, label_selector=sel), True
            except NotFound:
                return [], True  # the kind (its CRD) or the namespace does not exist yet
            except Forbidden as e:  # who we apply as may not manage this kind: a human's call
                return _reason(e)

        live: dict[ObjectRef, KubeObject] = {}
        partial: set[ObjectRef] = set()
        refused: list[tuple[ObjectRef, str]] = []
        listed = [scope for scope in scopes if scope not in cached]
        answers = {**cached, **dict(zip(listed, self._map(list_scope, listed), strict=True))}
        for scope in scopes:
            found = answers[scope]
            if isinstance(found, str):
                refused += [
                    (r, found) for r in refs if (r.api_version, r.kind, r.namespace) == scope
                ]
                continue
            items, whole = found
            for obj in items:
                ref = ObjectRef.of(obj)
                live[ref] = obj
                if not whole:
                    partial.add(ref)
        if refused:
            raise ApplyRefused(sorted(set(refused)))
        return live, partial

    def planned(
        self,
        desired: list[KubeObject],
        inventory: list[ObjectRef],
        package: str,
        namespace: str,
        source: LiveSource | None = None,
    ) -> tuple[dict[ObjectRef, KubeObject], Plan]:
        """The live objects (from ``source``, or listed) and the plan against them. An object
        the plan must check that ``source`` holds by metadata only is read whole first."""
        refs = [ObjectRef.of(o) for o in desired] + inventory
        live, partial = self.live_objects(refs, package, namespace, source)
        the_plan = plan(desired, live, inventory, package=package, namespace=namespace)
        known_by_name = [r for r in (ObjectRef.of(o) for o in the_plan.check) if r in partial]
        if known_by_name:  # compare with whole objects, not their metadata
            whole = self._read(known_by_name)
            for ref in known_by_name:
                live.pop(ref, None)
            live.update(whole)
            the_plan = plan(desired, live, inventory, package=package, namespace=namespace)
        return live, the_plan

    def _read(self, refs: list[ObjectRef]) -> dict[ObjectRef, KubeObject]:
        """The whole objects of ``refs`` (those still there)."""

        def one(ref: ObjectRef) -> tuple[ObjectRef, KubeObject | None]:
            return ref, self.kube.get(ref.api_version, ref.kind, ref.name, ref.namespace)

        return {ref: obj for ref, obj in self._map(one, refs) if obj is not None}

    # -- the pass -------------------------------------------------------------------------------

    def _write(self, obj: KubeObject, *, existed: bool, dry_run: bool = False) -> KubeObject:
        """Apply one object: ours with ``force`` (a hand edit is reverted), a create only if it
        does not exist yet (``CREATE_ONLY``)."""
        if not existed:
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": CREATE_ONLY}}
        return self.kube.apply(obj, field_manager=FIELD_MANAGER, force=existed, dry_run=dry_run)

    def _exists(
        self, ref: ObjectRef, package: str, namespace: str
    ) -> tuple[str, KubeObject | None]:
        """After a create met an existing object: ("ours", obj) when it carries our labels (the
        live source lagged) or is gone again, else ("taken", obj) with obj to name its owner."""
        found = self.kube.get(ref.api_version, ref.kind, ref.name, ref.namespace)
        if found is None or is_ours(found, package, namespace):
            return "ours", found  # (gone again already: plan again as well)
        return "taken", found

    def _try(
        self,
        objects: list[KubeObject],
        existed: set[ObjectRef],
        *,
        package: str,
        namespace: str,
        dry_run: bool,
    ) -> _Tried:
        """Write (or dry-run) ``objects`` at once and sort what the server said."""

        def one(obj: KubeObject) -> tuple[ObjectRef, KubeObject | KubeError | None, str, str]:
            ref = ObjectRef.of(obj)
            try:
                return ref, self._write(obj, existed=ref in existed, dry_run=dry_run), "", ""
            except Conflict as e:
                if ref in existed:
                    return ref, None, "refused", _reason(e)
                whose, found = self._exists(ref, package, namespace)
                if whose == "ours":
                    return ref, None, "lagged", ""
                return ref, None, "taken", owner_of(found) if found else _reason(e)
            except KubeError as e:
                if _transient(e):
                    return ref, e, "failed", ""
                return ref, None, "refused", _reason(e)

        tried = _Tried()
        for ref, out, what, why in self._map(one, objects):
            if isinstance(out, KubeError):
                tried.failed.append(out)
            elif out is not None:
                tried.written[ref] = out
            elif what == "taken":
                tried.taken.append((ref, why))
            elif what == "lagged":
                tried.lagged = True
            else:
                tried.refused.append((ref, why))
        tried.refused.sort()
        tried.taken.sort()
        return tried

    def _checked(
        self,
        objects: list[KubeObject],
        existed: set[ObjectRef],
        *,
        package: str,
        namespace: str,
    ) -> dict[ObjectRef, KubeObject]:
        """Dry-run ``objects``; raise on any refusal (nothing is written by this)."""
        tried = self._try(objects, existed, package=package, namespace=namespace, dry_run=True)
        tried.raise_any()
        return tried.written

    def _apply_tier(
        self,
        objects: list[KubeObject],
        changes: ChangeSet,
        existed: set[ObjectRef],
        *,
        package: str,
        namespace: str,
    ) -> None:
        """Write one tier at once; a refusal now (after its dry run) is a failed pass."""
        tried = self._try(objects, existed, package=package, namespace=namespace, dry_run=False)
        for ref, out in tried.written.items():
            changes.live[ref] = out
            changes.add(ref, CONFIGURED if ref in existed else CREATED)
        tried.raise_any()

    def _create_unchecked(
        self,
        objects: list[KubeObject],
        changes: ChangeSet,
        created_before: dict[ObjectRef, KubeObject],
        *,
        package: str,
        namespace: str,
    ) -> dict[ObjectRef, KubeObject]:
        """Create ``objects`` at once without a dry run. On a refusal or failure, delete again
        what they and ``created_before`` created and raise; raise ``Lagged`` when one was ours
        already (the live source lagged). Returns what it created."""
        tried = self._try(objects, set(), package=package, namespace=namespace, dry_run=False)
        if tried.refused or tried.taken or tried.failed:
            self._undo({**created_before, **tried.written})
            tried.raise_any()
        for ref, out in tried.written.items():
            changes.live[ref] = out
            changes.add(ref, CREATED)
        tried.raise_any()
        return tried.written

    def _undo(self, created: dict[ObjectRef, KubeObject]) -> None:
        def one(item: tuple[ObjectRef, KubeObject]) -> None:
            ref, obj = item
            uid = str((obj.get("metadata") or {}).get("uid") or "")
            try:
                self.kube.delete(ref.api_version, ref.kind, ref.name, ref.namespace, uid=uid)
            except Conflict:
                pass  # replaced meanwhile: not ours to delete
            except KubeError as e:
                log.warning("could not delete %s again after the refusal: %s", ref, e)

        list(self._map(one, list(created.items())))

    def apply(
        self,
        desired: list[KubeObject],
        inventory: Iterable[ObjectRef],
        *,
        package: str,
        namespace: str,
        dry_run: bool = False,
        allow_empty: bool = False,
        live_source: LiveSource | None = None,
    ) -> ChangeSet:
        """Make the cluster hold ``desired`` and nothing else of this package's past inventory.

        ``live_source``: where our live objects are (default: list them). Raises
        ``EmptyRender`` (before any write) when ``desired`` is empty and something would be
        pruned, unless ``allow_empty``."""
        inventory = list(inventory)
        first = ChangeSet()
        try:
            return self._apply(
                desired, inventory, package, namespace, dry_run, allow_empty, live_source, first
            )
        except Lagged:
            if live_source is None:
                raise  # listed just now: someone else is applying this package too
        # The cache had not seen an object of ours yet: plan again from a fresh list. What the
        # first attempt created is reported as created, not as found unchanged.
        again = self._apply(
            desired, inventory, package, namespace, dry_run, allow_empty, None, ChangeSet()
        )
        created = {c.ref for c in first.changes if c.action == CREATED}
        again.changes = [
            Change(c.ref, CREATED) if c.ref in created and c.action == UNCHANGED else c
            for c in again.changes
        ]
        return again

    def _apply(
        self,
        desired: list[KubeObject],
        inventory: list[ObjectRef],
        package: str,
        namespace: str,
        dry_run: bool,
        allow_empty: bool,
        live_source: LiveSource | None,
        changes: ChangeSet,
    ) -> ChangeSet:
        live, the_plan = self.planned(desired, inventory, package, namespace, live_source)
        if not desired and the_plan.prune and not allow_empty:
            raise EmptyRender(the_plan.prune)
        for ref in the_plan.unchanged:
            changes.add(ref, UNCHANGED)
            changes.live[ref] = live[ref]

        existed = set(live)
        to_write = the_plan.to_write
        first = [o for o in to_write if stage_of(o["kind"]) == 0]
        rest = [o for o in to_write if stage_of(o["kind"]) == 1]
        now, later = _split_dependent(rest, first, live)
        inert = [] if dry_run else [o for o in now if ObjectRef.of(o) not in live and is_inert(o)]
        inert_refs = {ObjectRef.of(o) for o in inert}
        now = [o for o in now if ObjectRef.of(o) not in inert_refs]
        # One create that cannot be undone, and nothing else to write but inert creates: it goes
        # last, without a dry run (if it is refused, the inert creates are undone).
        last = []
        if (
            not dry_run
            and not first
            and not later
            and len(now) == 1
            and not existed & {ObjectRef.of(now[0])}
        ):
            last, now = now, []

        ctx = {"package": package, "namespace": namespace}
        checked = self._checked(first + now, existed, **ctx)
        writes = self._drop_normalised(first + now, checked, live, changes)
        if dry_run:
            self._record_planned(writes + later, live, the_plan, changes)
            return changes

        first_writes = [o for o in writes if stage_of(o["kind"]) == 0]
        self._apply_tier(first_writes, changes, existed, **ctx)
        changes.live.update(self._settle(first_writes))
        if later:
            checked_later = self._checked(later, existed, **ctx)
            writes += self._drop_normalised(later, checked_later, live, changes)
        created = self._create_unchecked(inert, changes, {}, **ctx) if inert else {}
        if last:
            self._create_unchecked(last, changes, created, **ctx)
        second = [o for o in writes if stage_of(o["kind"]) == 1]
        for _, tier in groupby(sorted(second, key=write_order), key=lambda o: tier_of(o["kind"])):
            self._apply_tier(list(tier), changes, existed, **ctx)
        self._prune(the_plan, live, changes)
        return changes

    def _drop_normalised(
        self,
        objects: list[KubeObject],
        checked: dict[ObjectRef, KubeObject],
        live: dict[ObjectRef, KubeObject],
        changes: ChangeSet,
    ) -> list[KubeObject]:
        """Objects that really change; the rest the server only normalised (unchanged)."""
        out = []
        for obj in objects:
            ref = ObjectRef.of(obj)
            before = live.get(ref)
            if (
                before is not None
                and ref in checked
                and comparable(checked[ref]) == comparable(before)
            ):
                changes.add(ref, UNCHANGED)
                changes.live[ref] = before
            else:
                out.append(obj)
        return out

    def _record_planned(
        self,
        writes: list[KubeObject],
        live: dict[ObjectRef, KubeObject],
        the_plan: Plan,
        changes: ChangeSet,
    ) -> None:
        for obj in writes:
            ref = ObjectRef.of(obj)
            changes.add(ref, CONFIGURED if ref in live else CREATED)
        for ref in the_plan.prune:
            changes.add(ref, DELETED)
        for ref, why in the_plan.keep:
            changes.add(ref, KEPT, why)

    def _settle(self, first_stage: list[KubeObject]) -> dict[ObjectRef, KubeObject]:
        """Wait until new CRDs serve their kinds, so the next stage can use them."""
        crds = [o for o in first_stage if o["kind"] == "CustomResourceDefinition"]
        settled = {}
        for crd in crds:
            established = self.kube.wait_for(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                crd["metadata"]["name"],
                condition="Established",
            )
            if established is not None:
                settled[ObjectRef.of(crd)] = established
        if crds:
            self.kube.forget_discovery()
        for crd in crds:
            self._wait_served(crd)
        return settled

    def _wait_served(self, crd: KubeObject, timeout: float = 30.0) -> None:
        """Established is not yet served: discovery lists a new kind a moment later, and the next
        stage's dry run would otherwise find no such kind. Bounded; the dry run names what is
        still missing after it."""
        spec = crd.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind", "")
        versions = [f"{spec.get('group')}/{v.get('name')}" for v in spec.get("versions") or []]
        deadline = time.monotonic() + timeout
        for api_version in versions:
            while True:
                try:
                    self.kube.resource(api_version, kind)  # asks the server again while missing
                    break
                except NotFound:
                    if time.monotonic() > deadline:
                        return
                    time.sleep(0.2)

    def _prune(self, the_plan: Plan, live: dict[ObjectRef, KubeObject], changes: ChangeSet) -> None:
        def one(ref: ObjectRef) -> tuple[ObjectRef, bool]:
            uid = str((live[ref].get("metadata") or {}).get("uid") or "")
            try:
                self.kube.delete(ref.api_version, ref.kind, ref.name, ref.namespace, uid=uid)
            except Conflict:
                return ref, False  # replaced since it was listed: not ours to delete
            return ref, True

        for _, group in groupby(the_plan.prune, key=lambda r: stage_of(r.kind)):
            for ref, deleted in self._map(one, list(group)):
                if deleted:
                    changes.add(ref, DELETED)
                else:
                    changes.add(ref, KEPT, "it was replaced by another object of that name")
        for ref, why in the_plan.keep:
            changes.add(ref, KEPT, why)

    def delete_all(
        self, inventory: Iterable[ObjectRef], *, package: str, namespace: str
    ) -> ChangeSet:
        """Delete every object of ``inventory`` that is still ours (a KubePkg being deleted)."""
        return self.apply([], inventory, package=package, namespace=namespace, allow_empty=True)


def _split_dependent(
    objects: list[KubeObject], first: list[KubeObject], live: dict[ObjectRef, KubeObject]
) -> tuple[list[KubeObject], list[KubeObject]]:
    """Objects that can be dry-run now, and those waiting on a first-stage object of this set."""
    new_namespaces = {
        o["metadata"]["name"]
        for o in first
        if o["kind"] == "Namespace" and ObjectRef.of(o) not in live
    }
    new_kinds = set()
    for crd in first:
        if crd["kind"] == "CustomResourceDefinition" and ObjectRef.of(crd) not in live:
            spec = crd.get("spec") or {}
            group = spec.get("group", "")
            kind = (spec.get("names") or {}).get("kind", "")
            for v in spec.get("versions") or []:
                new_kinds.add((f"{group}/{v.get('name')}", kind))
    now, later = [], []
    for obj in objects:
        ns = (obj.get("metadata") or {}).get("namespace", "")
        if ns in new_namespaces or (obj["apiVersion"], obj["kind"]) in new_kinds:
            later.append(obj)
        else:
            now.append(obj)
    return now, later


def _reason(e: KubeError) -> str:
    text = str(e)
    # "apply Deployment default/web (dry run): <server message>": keep the server's words.
    return text.split(": ", 1)[1] if ": " in text else text
