"""``gitops-kubepkg validate PATH...``: check KubePkg files and directories, report every problem.

The verdict is the controller's: a file is valid when the model accepts it and it renders (a
spec upstream would refuse to convert is a problem here as it is a Stalled KubePkg there), and a
package that renders no objects and ships no images is a problem unless it is annotated
``gitops.kubepkg.dev/allow-empty``. Each valid package's line says what it renders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gitops_kubepkg.cli.output import add_output_flag, dump
from gitops_kubepkg.errors import Problem, ValidationError
from gitops_kubepkg.spec import KubePkg, load_path
from gitops_kubepkg.spec.convert import ConvertError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate", help="check KubePkg files (exit 0 valid, 1 problems)"
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file or directory")
    add_output_flag(p)
    p.set_defaults(run=run)


def _rendered(pkg: KubePkg, problems: list[Problem]) -> int:
    """How many objects ``pkg`` renders; a problem is added when that cannot be or is wrong."""
    from gitops_kubepkg.reconcile.objects import ANNOTATION_ALLOW_EMPTY, allows_empty
    from gitops_kubepkg.reconcile.render import RenderOptions, render

    try:
        count = len(render(pkg, RenderOptions(namespace=pkg.namespace or "default")))
    except ConvertError as e:
        problems.append(Problem(pkg.source, "", str(e)))
        return 0
    if not count and not pkg.images and not allows_empty(pkg.to_object()):
        problems.append(
            Problem(
                pkg.source,
                "spec",
                f"KubePkg {pkg.name!r} renders no objects and ships no images (annotate it "
                f'{ANNOTATION_ALLOW_EMPTY}: "true" if an empty package is meant)',
            )
        )
    return count


def _what(pkg: KubePkg, count: int) -> str:
    if count:
        return f"{count} objects"
    return f"images only: renders no objects, ships {len(pkg.images)} images"


def run(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    packages = []
    for path in args.paths:
        try:
            packages.extend(load_path(path))
        except ValidationError as e:
            problems.extend(e.problems)
    counts = [_rendered(pkg, problems) for pkg in packages]
    if args.output != "text":
        dump(
            {
                "valid": not problems,
                "packages": [
                    {"name": p.name, "version": p.version, "file": p.source, "objects": n}
                    for p, n in zip(packages, counts, strict=True)
                ],
                "problems": [
                    {"file": p.file, "path": p.path, "message": p.message} for p in problems
                ],
            },
            args.output,
        )
    else:
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            for pkg, count in zip(packages, counts, strict=True):
                version = pkg.version or "(no version: status.images only)"
                print(f"ok  {pkg.source}: {pkg.name} {version}, {_what(pkg, count)}")
    return 1 if problems else 0
