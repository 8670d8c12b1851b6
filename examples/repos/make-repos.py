#!/usr/bin/env python3
"""Turn examples/repos into real bare git repositories: ``make-repos.py DIR``.

- ``DIR/catalog.git``: ``catalog/<package>/<version>/kubepkg.*`` becomes one commit per revision on
  ``main`` (in semver order, each replacing ``<package>/kubepkg.*``), tagged ``<package>/v<version>``;
- ``DIR/deployment.git``: ``deployment/`` as one commit on ``main``.

Commit times are fixed, so the same inputs give the same commit ids. Prints one file:// URL per
repository, ready for ``gitops-kubepkg repo add``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import semver

from gitops_kubepkg import git

HERE = Path(__file__).resolve().parent
EPOCH = 1_700_000_000


def catalog_revisions(root: Path) -> list[tuple[semver.Version, str, Path]]:
    """(version, package, directory) for every ``<package>/<version>/`` under ``root``."""
    out = []
    for version_dir in sorted(p for p in root.glob("*/*") if p.is_dir()):
        out.append((semver.Version.parse(version_dir.name), version_dir.parent.name, version_dir))
    return sorted(out, key=lambda r: (r[0], r[1]))


def make_catalog(source: Path, target: Path) -> git.Repository:
    repo = git.init_bare(target)
    for step, (version, package, directory) in enumerate(catalog_revisions(source)):
        files: dict[str, bytes | None] = {
            f"{package}/{name}": None for name in ("kubepkg.json", "kubepkg.yaml", "kubepkg.yml")
        }
        for file in directory.iterdir():
            files[f"{package}/{file.name}"] = file.read_bytes()
        commit = repo.commit_files(
            "main", files, f"{package} {version}", timestamp=EPOCH + step * 60
        )
        repo.tag(f"{package}/v{version}", commit, message=f"{package} {version}")
    return repo


def make_deployment(source: Path, target: Path) -> git.Repository:
    repo = git.init_bare(target)
    files: dict[str, bytes | None] = {
        str(p.relative_to(source)): p.read_bytes() for p in sorted(source.rglob("*")) if p.is_file()
    }
    repo.commit_files("main", files, "deploy web and redis", timestamp=EPOCH)
    return repo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "directory", type=Path, help="where to create catalog.git and deployment.git"
    )
    args = parser.parse_args(argv)
    out = args.directory.resolve()
    for name in ("catalog.git", "deployment.git"):
        if (out / name).exists():
            print(f"{out / name} exists; choose an empty directory", file=sys.stderr)
            return 1
    make_catalog(HERE / "catalog", out / "catalog.git")
    make_deployment(HERE / "deployment", out / "deployment.git")
    print(f"file://{out / 'catalog.git'}")
    print(f"file://{out / 'deployment.git'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
