"""``gitops-kubepkg reconcile repository|kubepkg NAME``: ask the running controller for a pass now,
and wait for it.

Like ``flux reconcile``: it sets the annotation ``gitops.kubepkg.dev/requestedAt`` to a new value
on the object. The leader sees it (it watches Repositories and KubePkgs) and runs a pass at once,
even when nothing moved: a Repository is polled and applied, a KubePkg is applied, which also
reverts hand edits. The pass acknowledges with ``status.lastHandledReconcileAt``. This command
waits for that, then prints the Ready condition: exit 0 when Ready, 1 when not, 2 when nobody
answered within ``--timeout`` (is the controller running?).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from gitops_kubepkg.cli._cluster import add_cluster_flags, connect, duration
from gitops_kubepkg.errors import InputError, Unavailable


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "reconcile", help="ask the controller for a pass over one object now, and wait for it"
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name, aliases, what in [
        ("repository", ["repo"], "poll and apply one Repository now"),
        ("kubepkg", ["kpkg"], "apply one KubePkg now (reverting hand edits)"),
    ]:
        k = kinds.add_parser(
            name, aliases=aliases, help=f"{what} (annotation gitops.kubepkg.dev/requestedAt)"
        )
        k.add_argument("name", metavar="NAME")
        k.add_argument(
            "--timeout",
            type=duration,
            default=120.0,
            metavar="DURATION",
            help="how long to wait for the controller (default 2m)",
        )
        add_cluster_flags(k)
        k.set_defaults(run=run_repository if name == "repository" else run_kubepkg)


def _request_and_wait(
    args: argparse.Namespace, api_version: str, kind: str, check: Any
) -> dict[str, Any]:
    """Set requestedAt on the object and wait until its status says the pass ran; its status."""
    from gitops_kubepkg.controller.leader import micro_time
    from gitops_kubepkg.errors import NotFound
    from gitops_kubepkg.reconcile.objects import ANNOTATION_REQUESTED_AT

    kube = connect(args)
    key = f"{args.namespace}/{args.name}"
    try:
        obj = kube.get(api_version, kind, args.name, args.namespace)
        if obj is None:
            raise InputError(f"{kind} {key} not found")
        check(obj, key)
        token = micro_time()
        try:
            kube.patch(
                api_version,
                kind,
                args.name,
                args.namespace,
                {"metadata": {"annotations": {ANNOTATION_REQUESTED_AT: token}}},
            )
        except NotFound as e:
            raise InputError(f"{kind} {key} not found") from e
        print(f"requested a pass over {kind} {key}", file=sys.stderr)
        deadline = time.monotonic() + args.timeout
        delay = 0.1
        while True:
            obj = kube.get(api_version, kind, args.name, args.namespace)
            if obj is None:
                raise InputError(f"{kind} {key} was deleted while we waited")
            status: dict[str, Any] = obj.get("status") or {}
            if status.get("lastHandledReconcileAt") == token:
                return status
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"{kind} {key}: the controller did not handle the request within "
                    f"{args.timeout:g}s; is it running? (kubectl -n gitops-kubepkg-system logs "
                    "deploy/gitops-kubepkg-controller)"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
    finally:
        kube.close()


def _ready(kind: str, key: str, status: dict[str, Any], done: str) -> int:
    ready = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {"status": ""}
    )
    if ready.get("status") == "True":
        print(f"{kind} {key} {done}: {ready.get('message', '')}")
        return 0
    print(
        f"{kind} {key} not ready: {ready.get('reason', '')}: {ready.get('message', '')}",
        file=sys.stderr,
    )
    return 1


def run_repository(args: argparse.Namespace) -> int:
    from gitops_kubepkg.controller import repository

    def check(obj: dict[str, Any], key: str) -> None:
        if (obj.get("spec") or {}).get("suspend"):
            raise InputError(f"Repository {key} is suspended: set spec.suspend to false first")

    status = _request_and_wait(args, repository.API_VERSION, repository.KIND, check)
    commit = str(status.get("lastFetchedCommit") or "")[:12]
    key = f"{args.namespace}/{args.name}"
    return _ready("Repository", key, status, f"synced at {commit or '?'}")


def run_kubepkg(args: argparse.Namespace) -> int:
    from gitops_kubepkg.spec import API_VERSION, KIND

    status = _request_and_wait(args, API_VERSION, KIND, lambda obj, key: None)
    key = f"{args.namespace}/{args.name}"
    return _ready(KIND, key, status, f"applied {status.get('lastAppliedVersion') or '?'}")
