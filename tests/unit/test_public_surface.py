"""The public surface, pinned: the commands users and scripts call and the model's exports.

A change here is a change for users: make it on purpose, and say so in README.md.
"""

from __future__ import annotations

import argparse

import gitops_kubepkg.spec as spec
from gitops_kubepkg.cli import build_parser

COMMANDS = {
    "airgap", "apply", "approve", "controller", "crds", "delete", "diff", "get", "history",
    "install", "promote", "propose", "reconcile", "registry", "render", "repo", "rollback", "trace",
    "upgrades", "validate",
}  # fmt: skip

SPEC_EXPORTS = {
    "API_VERSION", "FILE_NAMES", "KIND", "LIST_KIND", "ImageRef", "KubeObject", "KubePkg",
    "container_images", "load_path", "manifest_key", "parse_image", "parse_kubepkgs",
}  # fmt: skip


def test_the_commands_are_the_ones_the_readme_documents() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == COMMANDS


def test_the_model_exports_are_pinned() -> None:
    assert set(spec.__all__) == SPEC_EXPORTS
    assert all(hasattr(spec, name) for name in spec.__all__)


def test_every_command_is_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [c for c in sorted(COMMANDS) if f"`gitops-kubepkg {c}" not in readme]
    assert not missing, f"README.md does not document: {missing}"
