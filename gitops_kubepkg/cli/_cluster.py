"""Flags, argument types and the connection shared by the commands that talk to a cluster."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gitops_kubepkg.kube import Kube


def add_cluster_flags(
    parser: argparse.ArgumentParser, *, namespace_default: str = "default"
) -> None:
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default $KUBECONFIG, ~/.kube/config or in-cluster)",
    )
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument(
        "-n",
        "--namespace",
        default=namespace_default,
        help=f"namespace for objects without one (default {namespace_default})",
    )


def duration(text: str) -> float:
    """An argparse type for ``30s``, ``5m``, ``1h30m``: seconds, or a usage error naming the value."""
    from gitops_kubepkg.controller.repository import parse_interval
    from gitops_kubepkg.errors import InputError

    try:
        return parse_interval(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def connect(args: argparse.Namespace) -> Kube:
    # Imported here: the kubernetes package costs ~0.3 s, which commands without a cluster skip.
    from gitops_kubepkg.kube import Kube

    kubeconfig = args.kubeconfig
    if kubeconfig and os.pathsep in kubeconfig:
        kubeconfig = kubeconfig.split(os.pathsep)[0]
    return Kube(kubeconfig, args.context)
