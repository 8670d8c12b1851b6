"""Trace, read from the cluster: the reads around the pure ``reconcile.trace``.

Used by ``gitops-kubepkg trace`` (``cli/trace.py``) and the dashboard's ``/api/trace``, so both
print the same thing. ``trace_live`` reads the KubePkg an object's labels name (checked against
that KubePkg's inventory) and its deployment Repository, and follows controller owners up to a
managed object (a Pod of a Deployment we applied); ``trace_kubepkg`` traces every object of one
KubePkg and summarises it as ``trace kubepkg NAME -o json`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gitops_kubepkg.controller.repository import API_VERSION as REPOSITORY_API
from gitops_kubepkg.controller.repository import KIND as REPOSITORY_KIND
from gitops_kubepkg.errors import NotFound
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import parse_live
from gitops_kubepkg.reconcile.objects import ObjectRef, package_of
from gitops_kubepkg.reconcile.render import builtin_namespaced
from gitops_kubepkg.reconcile.status import inventory_of
from gitops_kubepkg.reconcile.trace import Trace, controller_owner, trace_object
from gitops_kubepkg.spec import API_VERSION, KIND, KubeObject

OWNER_DEPTH = 4


def namespaced(kube: Kube) -> Callable[[str, str], bool]:
    def check(api_version: str, kind: str) -> bool:
        try:
            return kube.resource(api_version, kind).namespaced
        except NotFound:
            return builtin_namespaced(api_version, kind)

    return check


def trace_live(
    kube: Kube, live: KubeObject, depth: int = 0, *, objects: Kube | None = None
) -> Trace:
    """The trace of one live object, following its controller owners up to a managed one.

    ``objects`` reads the live objects (its owners), ``kube`` the KubePkg and Repository: the
    dashboard of a multi-tenant controller reads a namespace's objects as that namespace's
    ServiceAccount, as it applies them; the CLI reads everything as its user."""
    objects = objects or kube
    ref = ObjectRef.of(live)
    owner_of = package_of(live)
    kubepkg = None
    notes: list[str] = []
    if owner_of is not None:
        kubepkg = kube.get(API_VERSION, KIND, owner_of[1], owner_of[0])
        if kubepkg is None:
            notes.append(f"its labels name KubePkg {owner_of[0]}/{owner_of[1]}, which is gone")
        elif ref not in inventory_of(kubepkg.get("status") or {}):
            notes.append(
                f"its labels name KubePkg {owner_of[0]}/{owner_of[1]}, whose inventory does not "
                f"list it (copied labels, or not applied yet)"
            )
            kubepkg = None
    if kubepkg is None:
        trace = trace_object(live, None, None)
        trace.managed_by = notes + trace.managed_by
        owner = controller_owner(live)
        if owner is not None and depth < OWNER_DEPTH and owner["apiVersion"]:
            try:
                parent = objects.get(
                    owner["apiVersion"], owner["kind"], owner["name"], ref.namespace
                )
            except NotFound:
                parent = None
            if parent is not None:
                via = trace_live(kube, parent, depth + 1, objects=objects)
                trace.via = via if via.managed or via.via is not None else None
        return trace
    pkg, _ = parse_live(kubepkg)
    airgap = ""
    repository = str((kubepkg.get("status") or {}).get("source", {}).get("repository", ""))
    if "/" in repository:
        ns, name = repository.split("/", 1)
        repo = kube.get(REPOSITORY_API, REPOSITORY_KIND, name, ns)
        if repo is not None and (repo.get("spec") or {}).get("airgap"):
            airgap = repository
    return trace_object(live, kubepkg, pkg, airgap_repository=airgap, namespaced=namespaced(kube))


def trace_kubepkg(
    kube: Kube, obj: KubeObject, *, objects: Callable[[str], Kube] | None = None
) -> tuple[dict[str, Any], list[Trace]]:
    """Every object of the KubePkg ``obj`` traced: the summary ``trace kubepkg -o json`` prints,
    and the traces themselves (for the text form). ``objects``: the reader of a namespace's live
    objects (``trace_live``), default ``kube``."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    traces = []
    missing = []
    for ref in inventory_of(status):
        reader = objects(ref.namespace) if objects is not None else kube
        live = reader.get(ref.api_version, ref.kind, ref.name, ref.namespace)
        if live is None:
            missing.append(str(ref))
            continue
        traces.append(trace_live(kube, live, objects=reader))
    consistent: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Consistent"), {}
    )
    summary = {
        "kubepkg": {"namespace": meta.get("namespace", ""), "name": meta.get("name", "")},
        "version": (obj.get("spec") or {}).get("version", ""),
        "source": status.get("source") or {},
        "lastAppliedRevision": status.get("lastAppliedRevision", ""),
        "images": status.get("images") or {},
        "consistent": {k: consistent.get(k, "") for k in ("status", "reason", "message")},
        "history": len(status.get("history") or []),
        "objects": [t.to_dict() for t in traces],
        "missing": missing,
    }
    return summary, traces
