"""Apply: server-side apply of a plan in stages, after a dry run of the whole set, then prune.

Third and fourth steps of a pass (render > plan > apply > prune > status); the only part of
reconcile that writes to the cluster. The order of work:

1. list live objects of every kind involved, by our labels (one request per kind and namespace);
2. plan (pure): create / check / unchanged / prune;
3. dry-run every object to write; objects whose namespace or CRD is created by this same set are
   dry-run after the first stage. Any refusal stops the pass before anything is written, and the
   refused object is named. A "check" object whose dry-run result equals the live object was only
   normalised by the server: it is unchanged, and is not written;
4. apply the first stage (CRDs, Namespaces), wait until CRDs are Established, apply the rest in
   kind order; requests within one kind run in parallel;
5. delete what the plan prunes, each with its uid as a precondition (an object deleted and made
   again by someone else in between is not ours to delete).

Never a takeover: an object to create that already exists without this package's labels belongs
to another KubePkg or another manager. The pass stalls naming the owner (``OwnedElsewhere``)
before anything is written; only objects this package already holds are applied with ``force``
(so a hand edit of them is reverted), every other apply is a plain server-side apply.

A render with no objects never prunes what the package applied before unless the caller says it
is meant (``allow_empty``, from the KubePkg's ``gitops.kubepkg.dev/allow-empty`` annotation): an
empty render is far more often a spec we failed to understand than a wish to delete everything.

The result is a ``ChangeSet`` (created, configured, unchanged, deleted, kept) that status, events
and the CLI print.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from typing import TypeVar

from gitops_kubepkg.errors import Conflict, Forbidden, KubeError, NotFound
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.objects import (
    ANNOTATION_ALLOW_EMPTY,
    FIELD_MANAGER,
    LABEL_PACKAGE,
    LABEL_PACKAGE_NAMESPACE,
    ObjectRef,
    selector,
)
from gitops_kubepkg.reconcile.plan import (
    Plan,
    apply_order,
    comparable,
    kind_rank,
    plan,
    stage_of,
)
from gitops_kubepkg.spec import KubeObject

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
        self, refs: Iterable[ObjectRef], package: str, namespace: str
    ) -> dict[ObjectRef, KubeObject]:
        """Our objects of every (kind, namespace) in ``refs``, found by label. Raises
        ``ApplyRefused`` naming the objects of a kind we may not even list (403)."""
        refs = list(refs)
        scopes = sorted({(r.api_version, r.kind, r.namespace) for r in refs})
        sel = selector(package, namespace)

        def list_scope(scope: tuple[str, str, str]) -> list[KubeObject] | str:
            api_version, kind, ns = scope
            try:
                return self.kube.list(api_version, kind, ns, label_selector=sel)
            except NotFound:
                return []  # the kind (its CRD) or the namespace does not exist yet
            except Forbidden as e:  # who we apply as may not manage this kind: a human's call
                return _reason(e)

        live: dict[ObjectRef, KubeObject] = {}
        refused: list[tuple[ObjectRef, str]] = []
        for scope, items in zip(scopes, self._map(list_scope, scopes), strict=True):
            if isinstance(items, str):
                refused += [
                    (r, items) for r in refs if (r.api_version, r.kind, r.namespace) == scope
                ]
                continue
            for obj in items:
                live[ObjectRef.of(obj)] = obj
        if refused:
            raise ApplyRefused(sorted(set(refused)))
        return live

    # -- the pass -------------------------------------------------------------------------------

    def _dry_run(
        self, objects: list[KubeObject]
    ) -> tuple[dict[ObjectRef, KubeObject], list[tuple[ObjectRef, str]]]:
        def one(obj: KubeObject) -> tuple[ObjectRef, KubeObject | None, str]:
            ref = ObjectRef.of(obj)
            try:
                return ref, self.kube.apply(obj, field_manager=FIELD_MANAGER, dry_run=True), ""
            except KubeError as e:
                return ref, None, _reason(e)

        results: dict[ObjectRef, KubeObject] = {}
        refused: list[tuple[ObjectRef, str]] = []
        for ref, out, why in self._map(one, objects):
            if out is None:
                refused.append((ref, why))
            else:
                results[ref] = out
        return results, sorted(refused)

    def _foreign(self, create: list[KubeObject]) -> list[tuple[ObjectRef, str]]:
        """Objects to create that exist already (not ours: ours were listed by label). One
        metadata-only list per kind and namespace, not a GET per object: a first apply of
        1,000 objects costs a few requests more, not 1,000."""
        wanted: dict[tuple[str, str, str], set[str]] = {}
        for obj in create:
            ref = ObjectRef.of(obj)
            wanted.setdefault((ref.api_version, ref.kind, ref.namespace), set()).add(ref.name)
        scopes = sorted(wanted)

        def one(scope: tuple[str, str, str]) -> list[tuple[ObjectRef, str]] | str:
            api_version, kind, ns = scope
            try:
                items = self.kube.list_metadata(api_version, kind, ns)
            except NotFound:
                return []  # the kind (a CRD of this set) or the namespace is not there yet
            except Forbidden as e:
                return _reason(e)
            return [
                (ObjectRef(api_version, kind, ns, item["metadata"]["name"]), owner_of(item))
                for item in items
                if item["metadata"].get("name") in wanted[scope]
            ]

        taken: list[tuple[ObjectRef, str]] = []
        forbidden: list[tuple[ObjectRef, str]] = []
        for scope, found in zip(scopes, self._map(one, scopes), strict=True):
            if isinstance(found, str):
                api_version, kind, ns = scope
                forbidden += [(ObjectRef(api_version, kind, ns, n), found) for n in wanted[scope]]
            else:
                taken += found
        if forbidden:
            raise ApplyRefused(sorted(forbidden))
        return sorted(taken)

    def _apply_all(
        self, objects: list[KubeObject], changes: ChangeSet, existed: set[ObjectRef]
    ) -> None:
        for _, group in groupby(
            sorted(objects, key=apply_order), key=lambda o: kind_rank(o["kind"])
        ):
            batch = list(group)

            def one(obj: KubeObject) -> tuple[ObjectRef, KubeObject]:
                ref = ObjectRef.of(obj)
                # Force only over our own objects (a hand edit is reverted); anything else
                # that appeared since the check conflicts instead of being taken over.
                out = self.kube.apply(obj, field_manager=FIELD_MANAGER, force=ref in existed)
                return ref, out

            for ref, out in self._map(one, batch):
                changes.live[ref] = out
                changes.add(ref, CONFIGURED if ref in existed else CREATED)

    def apply(
        self,
        desired: list[KubeObject],
        inventory: Iterable[ObjectRef],
        *,
        package: str,
        namespace: str,
        dry_run: bool = False,
        allow_empty: bool = False,
    ) -> ChangeSet:
        """Make the cluster hold ``desired`` and nothing else of this package's past inventory.

        Raises ``EmptyRender`` (before any write) when ``desired`` is empty and something would
        be pruned, unless ``allow_empty``."""
        inventory = list(inventory)
        refs = [ObjectRef.of(o) for o in desired] + inventory
        live = self.live_objects(refs, package, namespace)
        the_plan = plan(desired, live, inventory, package=package, namespace=namespace)
        if not desired and the_plan.prune and not allow_empty:
            raise EmptyRender(the_plan.prune)
        taken = self._foreign(the_plan.create)
        if taken:
            raise OwnedElsewhere(taken)
        changes = ChangeSet()
        for ref in the_plan.unchanged:
            changes.add(ref, UNCHANGED)
            changes.live[ref] = live[ref]

        to_write = the_plan.to_write
        first = [o for o in to_write if stage_of(o["kind"]) == 0]
        rest = [o for o in to_write if stage_of(o["kind"]) == 1]
        now, later = _split_dependent(rest, first, live)

        checked, refused = self._dry_run(first + now)
        if refused:
            raise ApplyRefused(refused)
        writes = self._drop_normalised(first + now, checked, live, changes)
        if dry_run:
            self._record_planned(writes + later, live, the_plan, changes)
            return changes

        existed = set(live)
        first_writes = [o for o in writes if stage_of(o["kind"]) == 0]
        self._apply_all(first_writes, changes, existed)
        changes.live.update(self._settle(first_writes))
        if later:
            checked_later, refused = self._dry_run(later)
            if refused:
                raise ApplyRefused(refused)
            writes += self._drop_normalised(later, checked_later, live, changes)
        self._apply_all([o for o in writes if stage_of(o["kind"]) == 1], changes, existed)
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
