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
    from gitops_kubepkg.spec import KubeObject

KUBEPKG_NAMES = ("kubepkg", "kubepkgs", "kpkg")


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


def get_kubepkg(kube: Kube, name: str, namespace: str) -> KubeObject:
    from gitops_kubepkg.spec import API_VERSION, KIND

    obj = kube.get(API_VERSION, KIND, name, namespace)
    if obj is None:
        raise InputError(f"KubePkg {namespace}/{name} not found")
    return obj


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.controller.tracing import trace_live
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
    from gitops_kubepkg.controller.tracing import trace_kubepkg
    from gitops_kubepkg.reconcile.trace import describe

    obj = get_kubepkg(kube, name, args.namespace)
    summary, traces = trace_kubepkg(kube, obj)
    if args.output != "text":
        dump(summary, args.output)
        return 0
    missing: list[str] = summary["missing"]
    consistent: dict[str, Any] = summary["consistent"]
    drifted = [t for t in traces if t.in_sync is False]
    print(
        f"KubePkg {args.namespace}/{name} version {summary['version']}: {len(traces)} object(s), "
        f"{len(drifted)} drifted, {len(missing)} missing"
    )
    if consistent.get("status"):
        print(f"  consistent: {consistent.get('status')} ({consistent.get('message', '')})")
    for t in traces:
        print("\n".join(describe(t, "  ")))
    for m in missing:
        print(f"  {m}: MISSING (the next pass creates it again)")
    return 0
