"""The work queue: delays, one worker per key, requeue while active, capped backoff."""

from __future__ import annotations

import threading

from gitops_kubepkg.reconcile.queue import WorkQueue


def test_keys_come_out_in_due_order_and_only_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("later", delay=0.05)
    q.add("now")
    q.add("now")
    assert q.get(timeout=1) == "now"
    assert q.get(timeout=1) == "later"
    assert q.get(timeout=0.01) is None


def test_adding_an_active_key_runs_it_again_after_it_is_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("k")
    assert q.get(timeout=1) == "k"
    q.add("k")
    assert q.get(timeout=0.01) is None, "never twice at once"
    q.done("k")
    assert q.get(timeout=1) == "k"


def test_failures_back_off_exponentially_up_to_the_cap_and_reset_on_success() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=8.0)
    delays = []
    for _ in range(6):
        q.add("k")
        key = q.get(timeout=10)
        assert key == "k"
        delays.append(q.done("k", failed=True))
        q = _drain(q)
    assert [round(d) for d in delays][:2] == [1, 2]
    assert all(d <= 8.0 * 1.2 for d in delays)
    assert delays[-1] >= 8.0 * 0.8


def _drain(q: WorkQueue[str]) -> WorkQueue[str]:
    # The failed key is queued again after its delay; pull it forward so the test stays quick.
    fresh: WorkQueue[str] = WorkQueue(base_delay=q.base_delay, max_delay=q.max_delay)
    fresh._failures = dict(q._failures)
    return fresh


def test_a_closed_queue_wakes_its_workers() -> None:
    q: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    q.close()
    t.join(timeout=5)
    assert got == [None]
