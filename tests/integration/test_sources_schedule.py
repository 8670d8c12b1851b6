"""The schedule (APScheduler) and the file watcher (watchfiles), real and without a cluster:
a trigger runs a repository at once, a trigger during a run is not lost, failures back off, and
a commit into a file:// repository triggers its key."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.sources.schedule import Schedule
from gitops_kubepkg.sources.watcher import Watcher, local_path

pytestmark = pytest.mark.integration


def test_a_trigger_runs_now_and_one_during_a_run_runs_right_after() -> None:
    runs: list[str] = []
    started = threading.Event()
    release = threading.Event()
    done = threading.Semaphore(0)

    def run(key: str) -> bool:
        runs.append(key)
        if len(runs) == 2:
            started.set()
            release.wait(10)
        done.release()
        return True

    schedule = Schedule(run, max_concurrent=2)
    schedule.set("ns/a", 3600.0)
    schedule.start()
    try:
        assert done.acquire(timeout=10), "the first run happens soon after scheduling"
        assert schedule.trigger("ns/a")
        assert started.wait(10), "a trigger runs the repository now, not in an hour"
        assert schedule.trigger("ns/a"), "a trigger while running is remembered"
        release.set()
        assert done.acquire(timeout=10)
        assert done.acquire(timeout=10), "the remembered trigger ran right after"
        assert runs == ["ns/a"] * 3
        assert not schedule.trigger("ns/unknown")
    finally:
        schedule.shutdown()


def test_failures_count_up_and_a_success_resets_them() -> None:
    results = iter([False, False, True])
    done = threading.Semaphore(0)

    def run(key: str) -> bool:
        ok = next(results, True)
        done.release()
        return ok

    schedule = Schedule(run)
    schedule.set("ns/a", 3600.0)
    schedule.start()
    try:
        assert done.acquire(timeout=10)
        assert schedule.failures("ns/a") == 1
        schedule.trigger("ns/a")
        assert done.acquire(timeout=10)
        assert schedule.failures("ns/a") == 2
        schedule.trigger("ns/a")
        assert done.acquire(timeout=10)
        assert schedule.failures("ns/a") == 0
    finally:
        schedule.shutdown()


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
