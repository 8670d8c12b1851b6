"""The ``gitops-kubepkg`` command: one module per command group in this package.

Each module defines ``register(subcommands)`` that adds its parser and sets ``run`` to a function
``(args) -> int``. Modules import heavy dependencies (the kubernetes client, pygit2) inside ``run`` so
``validate`` stays fast. Every ``GitopsKubepkgError`` becomes a message on stderr and its exit code:
bad input never shows a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from gitops_kubepkg import __version__
from gitops_kubepkg.errors import GitopsKubepkgError

_NOT_COMMANDS = {"output", "progress"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitops-kubepkg",
        description="GitOps reconciler for KubePkg packages on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in _NOT_COMMANDS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except GitopsKubepkgError as e:
        print(f"error: {e}" if "\n" not in str(e) else str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
