"""``gitops-kubepkg trace KIND/NAME``: where a live object came from, and whether it still matches.

Reads the object, the KubePkg its labels name (checked against that KubePkg's inventory) and the
deployment Repository, and prints what ``reconcile.trace`` makes of them: the KubePkg and version,
the deployment repository (URL without credentials), branch, commit and file, the catalog tag and
commit it was promoted from, the digest each container runs and what fixed it, when and by which
field manager it was applied, and the drifted fields. ``trace kubepkg NAME`` does the same for
every object the KubePkg applied. An object we did not apply is said to be so, with what manages
it; a Pod or ReplicaSet made by a Deployment we applied is traced through its owners.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from gitops_kubepkg.cli._cluster import add_cluster_flags, connect
from gitops_kubepkg.cli.output import add_output_flag, dump
from gitops_kubepkg.errors import InputError

if TYPE_CHECKING:
    from gitops_kubepkg.kube import Kube
    from gitops_kubepkg.reconcile.trace import Trace
    from gitops_kubepkg.spec import KubeObject

KUBEPKG_NAMES = ("kubepkg", "kubepkgs", "kpkg")
OWNER_DEPTH = 4


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "trace",
        help="where a live object came from: KubePkg, commit, catalog tag, digests, drift",
        description="Trace a live object (KIND/NAME, or KIND NAME) or every object of a KubePkg "
        "(trace kubepkg NAME) back to the repositories and registry it came from.",
    )
    p.add_argument("target", metavar="KIND/NAME", help="e.g. deployment/web, or kubepkg")
    p.add_argument("name", nargs="?", default="", metavar="NAME")
    add_output_flag(p, "text", "json", "yaml")
    add_cluster_flags(p)
    p.set_defaults(run=run)


def split_target(target: str, name: str) -> tuple[str, str]:
    """``deployment/web`` or ``deployment web`` -> (kind, name); a usage error otherwise."""
    kind, sep, rest = target.partition("/")
    if sep and name:
        raise InputError(f"{target} {name}: give KIND/NAME or KIND NAME, not both")
    found = rest if sep else name
    if not kind or not found:
        raise InputError(f"{target!r}: want KIND/NAME (deployment/web) or kubepkg NAME")
    return kind, found


def _namespaced(kube: Kube) -> Any:
    from gitops_kubepkg.errors import NotFound
    from gitops_kubepkg.reconcile.render import builtin_namespaced

    def namespaced(api_version: str, kind: str) -> bool:
        try:
            return kube.resource(api_version, kind).namespaced
        except NotFound:
            return builtin_namespaced(api_version, kind)

    return namespaced


def trace_live(kube: Kube, live: KubeObject, depth: int = 0) -> Trace:
    """The trace of one live object, following its controller owners up to a managed one."""
    from gitops_kubepkg.controller.repository import API_VERSION as REPOSITORY_API
    from gitops_kubepkg.controller.repository import KIND as REPOSITORY_KIND
    from gitops_kubepkg.reconcile.kubepkg import parse_live
    from gitops_kubepkg.reconcile.objects import ObjectRef
    from gitops_kubepkg.reconcile.status import inventory_of
    from gitops_kubepkg.reconcile.trace import controller_owner, package_of, trace_object
    from gitops_kubepkg.spec import API_VERSION, KIND

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
            from gitops_kubepkg.errors import NotFound

            try:
                parent = kube.get(owner["apiVersion"], owner["kind"], owner["name"], ref.namespace)
            except NotFound:
                parent = None
            if parent is not None:
                via = trace_live(kube, parent, depth + 1)
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
    return trace_object(live, kubepkg, pkg, airgap_repository=airgap, namespaced=_namespaced(kube))


def get_kubepkg(kube: Kube, name: str, namespace: str) -> KubeObject:
    from gitops_kubepkg.spec import API_VERSION, KIND

    obj = kube.get(API_VERSION, KIND, name, namespace)
    if obj is None:
        raise InputError(f"KubePkg {namespace}/{name} not found")
    return obj


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.reconcile.trace import describe

    kind, name = split_target(args.target, args.name)
    kube = connect(args)
    try:
        if kind.lower() in KUBEPKG_NAMES:
            return _run_kubepkg(args, kube, name)
        res = kube.find_resource(kind)
        live = kube.get(res.api_version, res.kind, name, args.namespace if res.namespaced else "")
        if live is None:
            where = f"{args.namespace}/{name}" if res.namespaced else name
            raise InputError(f"{res.kind} {where} not found")
        live.setdefault("apiVersion", res.api_version)
        live.setdefault("kind", res.kind)
        trace = trace_live(kube, live)
    finally:
        kube.close()
    if args.output != "text":
        dump(trace.to_dict(), args.output)
    else:
        print("\n".join(describe(trace)))
    return 0


def _run_kubepkg(args: argparse.Namespace, kube: Kube, name: str) -> int:
    from gitops_kubepkg.reconcile.status import inventory_of
    from gitops_kubepkg.reconcile.trace import describe

    obj = get_kubepkg(kube, name, args.namespace)
    status = obj.get("status") or {}
    traces = []
    missing = []
    for ref in inventory_of(status):
        live = kube.get(ref.api_version, ref.kind, ref.name, ref.namespace)
        if live is None:
            missing.append(str(ref))
            continue
        traces.append(trace_live(kube, live))
    consistent: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Consistent"), {}
    )
    summary = {
        "kubepkg": {"namespace": args.namespace, "name": name},
        "version": (obj.get("spec") or {}).get("version", ""),
        "source": status.get("source") or {},
        "lastAppliedRevision": status.get("lastAppliedRevision", ""),
        "images": status.get("images") or {},
        "consistent": {k: consistent.get(k, "") for k in ("status", "reason", "message")},
        "history": len(status.get("history") or []),
        "objects": [t.to_dict() for t in traces],
        "missing": missing,
    }
    if args.output != "text":
        dump(summary, args.output)
        return 0
    drifted = [t for t in traces if t.in_sync is False]
    print(
        f"KubePkg {args.namespace}/{name} version {summary['version']}: {len(traces)} object(s), "
        f"{len(drifted)} drifted, {len(missing)} missing"
    )
    if consistent:
        print(f"  consistent: {consistent.get('status')} ({consistent.get('message', '')})")
    for t in traces:
        print("\n".join(describe(t, "  ")))
    for m in missing:
        print(f"  {m}: MISSING (the next pass creates it again)")
    return 0
