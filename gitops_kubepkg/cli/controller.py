"""``gitops-kubepkg controller``: sync every Repository, once (``--once``) or for as long as it runs.

``--once`` is one full pass over all repositories (every mirror polled, every catalog and deployment
applied) and exits 1 when any repository is not Ready. Without it the controller schedules each
repository at its interval, serves push webhooks on ``--webhook-listen`` and watches file://
repositories.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from gitops_kubepkg.cli.output import add_output_flag, dump, table


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "controller", help="sync Repository objects (catalog and deployment repositories)"
    )
    p.add_argument("--once", action="store_true", help="one full pass, then exit (1 if any failed)")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/var/lib/gitops-kubepkg"),
        help="where the git mirrors live (a volume in the cluster)",
    )
    p.add_argument("-n", "--namespace", default="", help="only this namespace (default: all)")
    p.add_argument(
        "--webhook-listen",
        default="",
        metavar="HOST:PORT",
        help="serve POST /hooks/<namespace>/<repository> here",
    )
    p.add_argument("--max-fetches", type=int, default=4, help="git fetches at once")
    add_output_flag(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.controller.sync import Syncer
    from gitops_kubepkg.kube import Kube

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    kube = Kube(args.kubeconfig)
    try:
        syncer = Syncer(kube, args.state_dir, max_fetches=args.max_fetches)
        if not args.once:
            from gitops_kubepkg.controller.service import serve

            serve(syncer, namespace=args.namespace, webhook_listen=args.webhook_listen)
            return 0
        outcomes = syncer.sync_all(args.namespace, force=True)
    finally:
        kube.close()
    if args.output != "text":
        dump(
            [
                {
                    "repository": o.key,
                    "ready": o.ready,
                    "reason": o.reason,
                    "message": o.message,
                    "commit": o.commit,
                    "packages": o.package_count,
                    "changes": o.changes,
                }
                for o in outcomes
            ],
            args.output,
        )
    else:
        rows = [
            [o.key, "True" if o.ready else "False", o.reason, o.commit[:12], o.message]
            for o in outcomes
        ]
        table(rows, ["REPOSITORY", "READY", "REASON", "COMMIT", "MESSAGE"])
        if not outcomes:
            print("no Repository objects", file=sys.stderr)
    return 0 if all(o.ready for o in outcomes) else 1
