"""``gitops-kubepkg validate PATH...``: check KubePkg files and directories, report every problem."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gitops_kubepkg.cli.output import add_output_flag, dump
from gitops_kubepkg.errors import Problem, ValidationError
from gitops_kubepkg.spec import load_path


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate", help="check KubePkg files (exit 0 valid, 1 problems)"
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file or directory")
    add_output_flag(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    problems: list[Problem] = []
    packages = []
    for path in args.paths:
        try:
            packages.extend(load_path(path))
        except ValidationError as e:
            problems.extend(e.problems)
    if args.output != "text":
        dump(
            {
                "valid": not problems,
                "packages": [
                    {"name": p.name, "version": p.version, "file": p.source} for p in packages
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
            for pkg in packages:
                print(f"ok  {pkg.source}: {pkg.name} {pkg.version}")
    return 1 if problems else 0
