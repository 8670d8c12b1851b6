"""``gitops-kubepkg history kubepkg NAME``: the revisions the controller applied, newest first.

Reads ``status.history`` (``spec.record``): id, version, deployment commit, result, when it
was first applied and the image digests. The id is what ``rollback --to`` takes.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gitops_kubepkg.cli._cluster import add_cluster_flags, connect
from gitops_kubepkg.cli.output import add_output_flag, dump, table
from gitops_kubepkg.cli.trace import KUBEPKG_NAMES, get_kubepkg
from gitops_kubepkg.errors import InputError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "history",
        help="the revisions a KubePkg applied, newest first (what rollback --to takes)",
    )
    p.add_argument("resource", metavar="kubepkg")
    p.add_argument("name", metavar="NAME")
    add_output_flag(p, "table", "json", "yaml")
    add_cluster_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.reconcile.trace import history_lines

    if args.resource.lower() not in KUBEPKG_NAMES:
        raise InputError(f"history: {args.resource!r}: only kubepkg has a history")
    kube = connect(args)
    try:
        obj = get_kubepkg(kube, args.name, args.namespace)
    finally:
        kube.close()
    entries = (obj.get("status") or {}).get("history") or []
    if args.output != "table":
        dump(entries, args.output)
        return 0
    if not entries:
        print(f"KubePkg {args.namespace}/{args.name} has applied nothing yet.", file=sys.stderr)
        return 0
    table(history_lines(entries), ["ID", "VERSION", "COMMIT", "RESULT", "APPLIED", "DIGESTS"])
    return 0
