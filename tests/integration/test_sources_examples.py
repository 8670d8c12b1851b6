"""examples/repos/make-repos.py builds real repositories whose revisions all discover cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.sources import catalog, deployment
from gitops_kubepkg.sources.catalog import RepositoryRef
from gitops_kubepkg.spec import FILE_NAMES

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "repos" / "make-repos.py"


def test_example_repositories_discover_every_revision(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [
        f"file://{tmp_path / 'catalog.git'}",
        f"file://{tmp_path / 'deployment.git'}",
    ]
    repo = git.open_bare(tmp_path / "catalog.git")
    refs = repo.refs()
    found = [(c, repo.peel(refs[catalog.TAG_PREFIX + c.tag])) for c in catalog.candidates(refs)]
    contents = {
        c.tag: {
            name: data
            for name in FILE_NAMES
            if (data := repo.read(commit, f"{c.path}/{name}")) is not None
        }
        for c, commit in found
    }
    got = catalog.discover(found, {}, contents)
    assert got.problems == []
    assert sorted(r.tag for r in got.revisions) == [
        "redis/v6.2.0",
        "redis/v7.0.0",
        "web/v1.0.0",
        "web/v1.1.0",
        "web/v1.2.0-rc.1",
    ]
    assert catalog.latest(got.revisions) == {"web": "1.1.0", "redis": "7.0.0"}

    prod = git.open_bare(tmp_path / "deployment.git")
    head = prod.resolve("refs/heads/main")
    assert head is not None
    paths = deployment.kubepkg_paths(e.path for e in prod.walk(head))
    files = {p: prod.read(head, p) or b"" for p in paths}
    want = deployment.desired(RepositoryRef("default", "prod"), head, files)
    assert want.problems == []
    assert sorted(o["metadata"]["name"] for o in want.objects) == ["redis", "web"]
