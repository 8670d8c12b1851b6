"""``gitops-kubepkg reconcile repository NAME``: ask the running controller for a sync now, and wait.

Like ``flux reconcile source git``: it sets the annotation ``gitops.kubepkg.dev/requestedAt`` to a
new value on the Repository; the leader sees it (it watches Repositories), polls and applies at
once even when nothing moved, and acknowledges with ``status.lastHandledReconcileAt``. This command
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
        "reconcile", help="ask the controller to sync a Repository now and wait for it"
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    repo = kinds.add_parser(
        "repository",
        aliases=["repo"],
        help="poll and apply one Repository now (annotation gitops.kubepkg.dev/requestedAt)",
    )
    repo.add_argument("name", metavar="NAME")
    repo.add_argument(
        "--timeout",
        type=duration,
        default=120.0,
        metavar="DURATION",
        help="how long to wait for the controller (default 2m)",
    )
    add_cluster_flags(repo)
    repo.set_defaults(run=run_repository)


def run_repository(args: argparse.Namespace) -> int:
    from gitops_kubepkg.controller import repository
    from gitops_kubepkg.controller.process import request_sync
    from gitops_kubepkg.errors import NotFound

    kube = connect(args)
    key = f"{args.namespace}/{args.name}"
    try:
        obj = kube.get(repository.API_VERSION, repository.KIND, args.name, args.namespace)
        if obj is None:
            raise InputError(f"Repository {key} not found")
        if (obj.get("spec") or {}).get("suspend"):
            raise InputError(f"Repository {key} is suspended: set spec.suspend to false first")
        try:
            token = request_sync(kube, args.namespace, args.name)
        except NotFound as e:
            raise InputError(f"Repository {key} not found") from e
        print(f"requested a sync of Repository {key}", file=sys.stderr)
        deadline = time.monotonic() + args.timeout
        delay = 0.1
        while True:
            obj = kube.get(repository.API_VERSION, repository.KIND, args.name, args.namespace)
            if obj is None:
                raise InputError(f"Repository {key} was deleted while we waited")
            status = obj.get("status") or {}
            if status.get("lastHandledReconcileAt") == token:
                break
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"Repository {key}: the controller did not handle the request within "
                    f"{args.timeout:g}s; is it running? (kubectl -n gitops-kubepkg-system logs "
                    "deploy/gitops-kubepkg-controller)"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
    finally:
        kube.close()
    ready = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {"status": ""}
    )
    commit = str(status.get("lastFetchedCommit") or "")[:12]
    if ready.get("status") == "True":
        print(f"Repository {key} synced at {commit or '?'}: {ready.get('message', '')}")
        return 0
    print(
        f"Repository {key} not ready: {ready.get('reason', '')}: {ready.get('message', '')}",
        file=sys.stderr,
    )
    return 1
