"""``gitops-kubepkg render PATH``: print the objects a KubePkg becomes, without a cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gitops_kubepkg.cli.output import dump_all
from gitops_kubepkg.reconcile.render import RenderOptions, render
from gitops_kubepkg.spec import load_path


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("render", help="print the objects KubePkgs become")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file or directory")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.add_argument("-n", "--namespace", default="default", help="namespace for objects without one")
    p.add_argument(
        "--registry",
        default="",
        metavar="HOST[:PORT]",
        help="rewrite images to this registry (airgap)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    objects = []
    for path in args.paths:
        for pkg in load_path(path):
            rendered = render(
                pkg,
                RenderOptions(namespace=pkg.namespace or args.namespace, registry=args.registry),
            )
            if not rendered:
                print(
                    f"note: {pkg.source}: KubePkg {pkg.name!r} renders no objects "
                    f"(it ships {len(pkg.images)} images)",
                    file=sys.stderr,
                )
            objects.extend(rendered)
    dump_all(objects, args.output)
    return 0
