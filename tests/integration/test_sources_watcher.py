"""The file watcher (watchfiles), real and without a cluster: a commit into a file:// repository
triggers its key. (What a trigger then does on the work queue: tests/unit/test_runtime.py.)"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.sources.watcher import Watcher, local_path

pytestmark = pytest.mark.integration


def test_a_local_commit_triggers_the_watching_repository(tmp_path: Path) -> None:
    repo = git.init_bare(tmp_path / "local.git")
    repo.commit_files("main", {"a": b"1"}, "first")
    triggered = threading.Event()
    keys: list[str] = []

    def trigger(key: str) -> None:
        keys.append(key)
        triggered.set()

    path = local_path(f"file://{tmp_path / 'local.git'}")
    assert path == tmp_path / "local.git"
    watcher = Watcher(trigger)
    watcher.update({"ns/local": path})
    try:
        # watchfiles needs a moment to arm; commit until it reports (bounded).
        for i in range(50):
            repo.commit_files("main", {"a": str(i).encode()}, f"change {i}")
            if triggered.wait(0.2):
                break
        assert triggered.is_set()
        assert set(keys) == {"ns/local"}
    finally:
        watcher.stop()
    assert local_path("https://example.com/x.git") is None
