"""``gitops-kubepkg apply PATH``, ``diff PATH`` and ``delete PATH``: one pass without the controller.

``apply`` stores each KubePkg in the cluster and reconciles it right away (render, dry run, staged
server-side apply, prune, status), exactly as the controller would. ``diff`` asks the server what
a pass would do: created / configured / unchanged / to be pruned; exit 0 when nothing would
change, 1 when something would, 2 on error. ``delete`` removes a KubePkg and what it applied
(the controller's finalizer, run here).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitops_kubepkg.cli._cluster import add_cluster_flags, connect
from gitops_kubepkg.cli.output import dump
from gitops_kubepkg.errors import GitopsKubepkgError
from gitops_kubepkg.spec import API_VERSION, KIND, KubePkg, load_path

if TYPE_CHECKING:
    from gitops_kubepkg.reconcile.apply import ChangeSet
    from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler

# Outcome kinds that fail the command (reconcile.status, which imports the kubernetes client).
_FAILED = ("stalled", "error")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "apply", help="apply KubePkgs now, without the controller"
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument(
        "--registry",
        default="",
        metavar="HOST[:PORT]",
        help="rewrite images to this registry (airgap)",
    )
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    add_cluster_flags(p)
    p.set_defaults(run=run_apply)

    rm: argparse.ArgumentParser = sub.add_parser(
        "delete", help="delete KubePkgs and every object they applied, without the controller"
    )
    rm.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    rm.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    add_cluster_flags(rm)
    rm.set_defaults(run=run_delete)

    d: argparse.ArgumentParser = sub.add_parser(
        "diff", help="what apply would change (exit 0 none, 1 changes, 2 error)"
    )
    d.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    d.add_argument("--registry", default="", metavar="HOST[:PORT]")
    d.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    add_cluster_flags(d)
    d.set_defaults(run=run_diff)


def _load(paths: list[Path]) -> list[KubePkg]:
    pkgs: list[KubePkg] = []
    for path in paths:
        pkgs.extend(load_path(path))
    return pkgs


def _report(results: list[dict[str, Any]], fmt: str, verb: str) -> None:
    if fmt != "text":
        dump({"packages": results}, fmt)
        return
    for r in results:
        for c in r["changes"]:
            if c["action"] != "unchanged":
                note = f" ({c['message']})" if c.get("message") else ""
                print(f"{c['action']:<11} {c['object']}{note}")
        line = f"KubePkg {r['namespace']}/{r['name']} {r['version']}: {r['summary']}"
        if r.get("status"):
            line += f" [{r['status']}: {r['message']}]"
        print(line, file=sys.stderr if r.get("status") in _FAILED else sys.stdout)


def _result(pkg: KubePkg, namespace: str, changes: ChangeSet | None) -> dict[str, Any]:
    return {
        "name": pkg.name,
        "namespace": namespace,
        "version": pkg.version,
        "summary": changes.summary() if changes else "",
        "changes": [
            {
                "action": c.action,
                "object": str(c.ref),
                **c.ref.to_dict(),
                **({"message": c.message} if c.message else {}),
            }
            for c in (changes.changes if changes else [])
        ],
    }


def _stored(obj: dict[str, Any], live: dict[str, Any]) -> bool:
    """Whether the cluster already holds this KubePkg as given (then applying it is a no-op that
    still costs the API server a decode and encode of the whole package)."""
    meta, live_meta = obj["metadata"], live.get("metadata") or {}
    return (
        live.get("spec") == obj.get("spec")
        and set(meta.get("finalizers") or []) <= set(live_meta.get("finalizers") or [])
        and all(
            (live_meta.get("labels") or {}).get(k) == v
            for k, v in (meta.get("labels") or {}).items()
        )
        and all(
            (live_meta.get("annotations") or {}).get(k) == v
            for k, v in (meta.get("annotations") or {}).items()
        )
    )


def _each_package(
    args: argparse.Namespace,
    step: Callable[[KubePkgReconciler, KubePkg, str], dict[str, Any]],
    verb: str,
    *,
    registry: str = "",
) -> int:
    """Run ``step`` for every KubePkg in ``args.paths``; one failing never stops the others."""
    from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler

    pkgs = _load(args.paths)
    reconciler = KubePkgReconciler(connect(args), registry=registry)
    results, failed = [], False
    try:
        for pkg in pkgs:
            namespace = pkg.namespace or args.namespace
            try:
                result = step(reconciler, pkg, namespace)
            except GitopsKubepkgError as e:
                result = {**_result(pkg, namespace, None), "status": "error", "message": str(e)}
            failed |= result.get("status") in _FAILED
            results.append(result)
    finally:
        reconciler.applier.close()
    _report(results, args.output, verb)
    return 1 if failed else 0


def run_apply(args: argparse.Namespace) -> int:
    from gitops_kubepkg.reconcile.objects import FINALIZER

    def step(reconciler: KubePkgReconciler, pkg: KubePkg, namespace: str) -> dict[str, Any]:
        kube = reconciler.kube
        obj = pkg.to_object()
        obj["metadata"]["namespace"] = namespace
        # Stored with the reconciler's finalizer: the pass would add it with one more write of
        # the whole package.
        obj["metadata"]["finalizers"] = [FINALIZER]
        live = kube.get(API_VERSION, KIND, pkg.name, namespace)
        if live is None or not _stored(obj, live):
            live = kube.apply(obj)
        outcome, changes = reconciler.reconcile_object(live)
        return {
            **_result(pkg, namespace, changes),
            "status": outcome.kind,
            "message": outcome.message,
        }

    return _each_package(args, step, "applied", registry=args.registry)


def run_delete(args: argparse.Namespace) -> int:
    """Delete each KubePkg, then finalize it here: its objects go, then the KubePkg itself."""

    def step(reconciler: KubePkgReconciler, pkg: KubePkg, namespace: str) -> dict[str, Any]:
        if not reconciler.kube.delete(API_VERSION, KIND, pkg.name, namespace):
            return {**_result(pkg, namespace, None), "summary": "not found"}
        _, changes = reconciler.reconcile(namespace, pkg.name)
        return _result(pkg, namespace, changes)

    return _each_package(args, step, "deleted")


def run_diff(args: argparse.Namespace) -> int:
    from gitops_kubepkg.reconcile.apply import (
        CONFIGURED,
        DELETED,
        UNCHANGED,
        Applier,
        ApplyRefused,
    )
    from gitops_kubepkg.reconcile.objects import SHRINK_WARNING, allows_empty
    from gitops_kubepkg.reconcile.render import RenderOptions, render
    from gitops_kubepkg.reconcile.status import inventory_of

    pkgs = _load(args.paths)
    kube = connect(args)
    applier = Applier(kube)
    results, changed, failed = [], False, False
    try:
        for pkg in pkgs:
            namespace = pkg.namespace or args.namespace
            live = kube.get(API_VERSION, KIND, pkg.name, namespace) or {}
            uid = (live.get("metadata") or {}).get("uid", "")
            desired = render(
                pkg, RenderOptions(namespace=namespace, owner_uid=uid, registry=args.registry)
            )
            inventory = inventory_of(live.get("status") or {})
            try:
                changes = applier.apply(
                    desired,
                    inventory,
                    package=pkg.name,
                    namespace=namespace,
                    dry_run=True,
                    allow_empty=allows_empty(pkg.to_object()),
                )
            except ApplyRefused as e:
                failed = True
                results.append(
                    {**_result(pkg, namespace, None), "status": "stalled", "message": str(e)}
                )
                continue
            changed |= changes.changed
            result = _result(pkg, namespace, changes)
            pruned = changes.count(DELETED)
            before = pruned + changes.count(UNCHANGED) + changes.count(CONFIGURED)
            if pruned and len(desired) < SHRINK_WARNING * before:
                result["warning"] = (
                    f"renders {len(desired)} objects where {before} are applied: "
                    f"{pruned} would be pruned"
                )
            results.append(result)
    finally:
        applier.close()
    for r in results:
        for c in r["changes"]:
            if c["action"] == DELETED:
                c["action"] = "to be pruned"
        if r.get("warning") and args.output == "text":
            print(f"warning: KubePkg {r['namespace']}/{r['name']} {r['warning']}", file=sys.stderr)
    _report(results, args.output, "would apply")
    return 2 if failed else 1 if changed else 0
