"""``gitops-kubepkg upgrades DEPLOYMENT_URL``: deployed packages with a newer catalog revision.

Exit 0 whether or not upgrades exist (scripts read ``-o json``); problems reading a file or a
catalog are printed and make the exit 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gitops_kubepkg.cli.output import add_output_flag, dump, table
from gitops_kubepkg.cli.promote import add_credential_flags, credentials


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "upgrades", help="list deployed packages that have a newer catalog revision"
    )
    p.add_argument("deployment", metavar="DEPLOYMENT_URL")
    p.add_argument(
        "--catalog",
        default="",
        metavar="CATALOG_URL",
        help="ask this catalog (default: the one each KubePkg records); catalog credentials "
        "are sent only to this one",
    )
    p.add_argument(
        "--branch",
        default="",
        help="the deployment branch (default: the repository's HEAD branch, main when it has none)",
    )
    p.add_argument("--pre", action="store_true", help="count prereleases as upgrades")
    add_credential_flags(p)
    add_output_flag(p, "text", "json", "yaml")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.promotion.upgrades import find_upgrades

    catalog_credentials = credentials(args, args.catalog_username, args.catalog_password_env)
    if catalog_credentials is not None and not args.catalog:
        print(
            "upgrades: catalog credentials go only to the catalog named with --catalog; the "
            "catalogs recorded in deployed files are asked without them",
            file=sys.stderr,
        )
    report = find_upgrades(
        args.deployment,
        target=args.branch,
        catalog_url=args.catalog,
        prereleases=args.pre,
        deployment_credentials=credentials(args, args.username, args.password_env),
        catalog_credentials=catalog_credentials,
    )
    if args.output != "text":
        dump(
            {
                "upgrades": [
                    {
                        "path": u.path,
                        "name": u.name,
                        "package": u.package,
                        "current": u.current,
                        "latest": u.latest,
                        "newer": u.newer,
                        "catalog": u.catalog,
                    }
                    for u in report.upgrades
                ],
                "current": report.current,
                "untracked": report.untracked,
                "problems": [str(p) for p in report.problems],
            },
            args.output,
        )
    else:
        if report.upgrades:
            table(
                [
                    [u.package, u.current, u.latest, ", ".join(u.newer), u.path]
                    for u in report.upgrades
                ],
                ["PACKAGE", "CURRENT", "LATEST", "NEWER", "PATH"],
            )
        else:
            print("every deployed package is at its newest catalog revision")
        for path in report.untracked:
            print(f"note: {path} records no catalog revision", file=sys.stderr)
        for problem in report.problems:
            print(problem, file=sys.stderr)
    return 1 if report.problems else 0
