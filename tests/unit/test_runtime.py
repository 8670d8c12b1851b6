"""The controller runtime in fake time: the queue, backoff, timed polls, and supervision."""

from __future__ import annotations

import random
import threading

import pytest

from gitops_kubepkg.clock import FakeClock, timestamp
from gitops_kubepkg.conventions import PROGRESSING, READY, STALLED, Outcome
from gitops_kubepkg.reconcile.objects import ANNOTATION_DEPENDS_ON, dependency_cycle, depends_on
from gitops_kubepkg.reconcile.status import ready_now, with_health_timeout
from gitops_kubepkg.runtime.queue import WorkQueue, backoff, jitter
from gitops_kubepkg.runtime.workers import Result, Workers


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    delays = [backoff(n, base=1.0, cap=8.0, rng=rng) for n in range(1, 7)]
    nominal = [1, 2, 4, 8, 8, 8]
    for delay, want in zip(delays, nominal, strict=True):
        assert want * 0.8 <= delay <= want * 1.2
    assert backoff(0, base=1.0, cap=8.0) == 0.0
    # Jitter really spreads keys that failed together.
    assert len({round(backoff(3, base=1.0, cap=8.0, rng=rng), 6) for _ in range(20)}) > 1


def test_a_poll_drifts_by_at_most_a_tenth_of_its_interval_and_a_minute() -> None:
    assert jitter(10.0) == 1.0
    assert jitter(300.0) == 30.0
    assert jitter(3600.0) == 60.0


def test_a_delayed_key_is_due_only_when_the_fake_clock_says_so() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add("poll", delay=60)
    q.add("now")
    assert q.pop_due() == "now"
    assert q.pop_due() is None
    clock.advance(59.9)
    assert q.pop_due() is None
    clock.advance(0.1)
    assert q.pop_due() == "poll"


def test_keys_are_deduplicated_and_the_sooner_due_time_wins() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add("k", delay=300)  # the resync
    q.add("k", delay=0.2)  # an event of an applied object
    q.add("k", delay=100)
    assert len(q) == 1
    clock.advance(0.2)
    assert q.pop_due() == "k"
    assert q.pop_due() is None


def test_an_active_key_never_runs_twice_at_once_and_a_trigger_during_it_is_kept() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add("k")
    assert q.pop_due() == "k"
    q.add("k")
    assert q.pop_due() is None, "never twice at once"
    q.done("k", requeue_after=60)
    assert q.pop_due() == "k", "the trigger during the pass runs right after it"


def test_failures_back_off_in_fake_time_and_success_resets() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock, base_delay=1.0, max_delay=8.0, rng=random.Random(1))
    q.add("k")
    waits = []
    for _ in range(5):
        assert q.pop_due() == "k"
        delay = q.done("k", failed=True)
        waits.append(delay)
        clock.advance(delay * 0.79)
        assert q.pop_due() is None, "not before its backoff"
        clock.advance(delay * 0.21 + 0.001)
    assert [round(w / n) for w, n in zip(waits, [1, 2, 4, 8, 8], strict=True)] == [1] * 5
    assert q.failures("k") == 5
    assert q.pop_due() == "k"
    assert q.done("k", requeue_after=30) == 30
    assert q.failures("k") == 0


def test_a_trigger_during_a_failed_pass_still_waits_for_the_backoff() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock, base_delay=10.0, rng=random.Random(3))
    q.add("k")
    assert q.pop_due() == "k"
    q.add("k")
    delay = q.done("k", failed=True)
    assert q.pop_due() is None
    clock.advance(delay)
    assert q.pop_due() == "k"


def test_the_rate_limit_spreads_a_burst_of_keys() -> None:
    clock = FakeClock()
    q: WorkQueue[int] = WorkQueue(clock=clock, qps=10, burst=5)
    for i in range(20):
        q.add(i)
    started = []
    while (k := q.pop_due()) is not None:
        started.append(k)
    assert len(started) == 5, "the burst"
    clock.advance(0.5)
    while (k := q.pop_due()) is not None:
        started.append(k)
    assert len(started) == 10, "then qps"


def test_the_queue_reports_how_long_a_key_waited_past_its_due_time() -> None:
    clock = FakeClock()
    waited: list[tuple[str, float]] = []
    q: WorkQueue[str] = WorkQueue(clock=clock, on_start=lambda k, w: waited.append((k, w)))
    q.add("k", delay=1)
    clock.advance(3)
    assert q.pop_due() == "k"
    assert waited == [("k", 2.0)]


def test_forget_drops_a_key_and_its_failures() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add("k")
    assert q.pop_due() == "k"
    q.done("k", failed=True)
    q.forget("k")
    clock.advance(1000)
    assert q.pop_due() is None
    assert q.failures("k") == 0


def test_fake_clock_time_is_what_we_write() -> None:
    clock = FakeClock()
    clock.advance(90)
    assert timestamp(clock.now()) == "2026-01-01T00:01:30Z"


# -- supervision ---------------------------------------------------------------------------------


def test_an_unexpected_exception_is_that_keys_failure_and_the_key_reconciles_afterwards(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ValueError from an API response that does not parse once killed a worker and left its key
    marked active forever. Now it is the key's failure: logged with the traceback, reported,
    backed off, and the next pass of the same key runs."""
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock, base_delay=2.0, rng=random.Random(0))
    calls: list[str] = []
    errors: list[tuple[str, str]] = []

    def handle(key: str) -> Result:
        calls.append(key)
        if len(calls) == 1:
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        return Result(requeue_after=300)

    workers = Workers(q, handle, on_error=lambda k, e: errors.append((k, str(e))))
    q.add("ns/web")
    key = q.pop_due()
    assert key == "ns/web"
    result = workers.run_key(key)
    assert result.failed
    assert errors == [("ns/web", "Expecting value: line 1 column 1 (char 0)")]
    assert "Traceback" in caplog.text and "ValueError" in caplog.text
    assert q.active() == set(), "the key is not left marked active"
    assert q.failures("ns/web") == 1
    clock.advance(2.0 * 1.2)
    key = q.pop_due()
    assert key == "ns/web", "the key runs again after its backoff"
    assert workers.run_key(key) == Result(requeue_after=300)
    assert q.failures("ns/web") == 0
    assert calls == ["ns/web", "ns/web"]


def test_worker_threads_survive_a_raising_pass_and_a_dead_thread_is_replaced() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.01)
    done = threading.Event()
    seen: list[str] = []

    def handle(key: str) -> Result:
        seen.append(key)
        if key == "bad" and seen.count("bad") == 1:
            raise RuntimeError("boom")
        if key == "die" and seen.count("die") == 1:
            raise SystemExit  # not an Exception: this one does end the thread
        if seen.count("bad") == 2:
            done.set()
        return Result()

    workers = Workers(q, handle, count=1, name="w")
    workers.start()
    try:
        q.add("bad")
        assert done.wait(10), "the failed key ran again on the same surviving worker"
        q.add("die")
        for _ in range(100):
            if workers.problems():
                break
            threading.Event().wait(0.05)
        assert workers.problems() == ["w-0 is not running"], "healthz names the dead worker"
        assert workers.check() == ["w-0"]
        assert workers.problems() == []
        done.clear()
        seen.clear()
        q.add("bad")
        q.add("bad2")
        for _ in range(100):
            if "bad2" in seen:
                break
            threading.Event().wait(0.05)
        assert "bad2" in seen, "the replacement worker takes keys"
        assert workers.restarts == 1
    finally:
        workers.stop()


# -- dependsOn -----------------------------------------------------------------------------------


def test_depends_on_names_kubepkgs_in_the_same_or_another_namespace() -> None:
    obj = {
        "metadata": {
            "namespace": "apps",
            "annotations": {ANNOTATION_DEPENDS_ON: "db, infra/cert-manager\nqueue"},
        }
    }
    assert depends_on(obj) == [("apps", "db"), ("infra", "cert-manager"), ("apps", "queue")]
    assert depends_on({"metadata": {"namespace": "apps"}}) == []


def test_a_depends_on_cycle_is_found_from_each_member_and_only_from_members() -> None:
    graph = {
        "self": ["self"],
        "a": ["b"],
        "b": ["a"],
        "x": ["y", "other"],
        "y": ["z"],
        "z": ["x"],
        "waits": ["a"],  # waits for a cycle without being on it
        "other": ["missing"],
    }

    def deps(node: tuple[str, str]) -> list[tuple[str, str]]:
        return [("ns", d) for d in graph.get(node[1], [])]

    def cycle(name: str) -> list[str]:
        return [n for _, n in dependency_cycle(("ns", name), deps)]

    assert cycle("self") == ["self", "self"]
    assert cycle("a") == ["a", "b", "a"]
    assert cycle("b") == ["b", "a", "b"]
    assert cycle("x") == ["x", "y", "z", "x"]
    assert cycle("z") == ["z", "x", "y", "z"]
    assert cycle("waits") == []
    assert cycle("other") == []
    assert cycle("missing") == []


def test_a_dependency_is_ready_only_for_its_current_generation() -> None:
    def pkg(generation: int, observed: int, status: str = "True") -> dict[str, object]:
        cond = {"type": "Ready", "status": status, "observedGeneration": observed}
        return {"metadata": {"generation": generation}, "status": {"conditions": [cond]}}

    assert ready_now(pkg(2, 2))
    assert not ready_now(pkg(3, 2)), "a new spec not applied yet"
    assert not ready_now(pkg(2, 2, "False"))
    assert not ready_now(None)


# -- health timeout ------------------------------------------------------------------------------


def test_a_kubepkg_progressing_past_its_health_timeout_is_stalled_in_fake_time() -> None:
    clock = FakeClock()
    progressing = Outcome(PROGRESSING, "Progressing", "waiting for Deployment ns/web: 0/1", 5.0)
    previous = {
        "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": timestamp(clock.now())},
            {"type": "Reconciling", "status": "True", "lastTransitionTime": timestamp(clock.now())},
        ]
    }
    clock.advance(600)
    assert with_health_timeout(progressing, previous, clock.now(), 600) == progressing
    clock.advance(1)
    stalled = with_health_timeout(progressing, previous, clock.now(), 600)
    assert (stalled.kind, stalled.reason) == (STALLED, "HealthCheckTimeout")
    assert stalled.message == (
        "not healthy after 601s (health timeout 600s): waiting for Deployment ns/web: 0/1"
    )
    assert with_health_timeout(progressing, previous, clock.now(), 0) == progressing, "0: never"
    ready = Outcome(READY, "ReconciliationSucceeded", "ok")
    assert with_health_timeout(ready, previous, clock.now(), 600) == ready
    assert with_health_timeout(progressing, {}, clock.now(), 600) == progressing, "first pass"
