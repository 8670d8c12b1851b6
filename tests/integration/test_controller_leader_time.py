"""Leader election in fake time against the real API server: expiry is judged by the candidate's
own (here fake) clock from when it last saw the Lease change, never by the holder's renewTime."""

from __future__ import annotations

import threading

import pytest

from gitops_kubepkg.clock import FakeClock
from gitops_kubepkg.controller.leader import LeaderElector, LeaseConfig
from gitops_kubepkg.kube import Kube

pytestmark = pytest.mark.integration


def elector(kube: Kube, namespace: str, identity: str, clock: FakeClock) -> LeaderElector:
    config = LeaseConfig(namespace, "fake-time", identity, 15.0, 10.0, 2.0)
    return LeaderElector(kube, config, clock=clock)


def test_a_candidate_takes_over_exactly_one_lease_duration_after_the_lease_last_changed(
    kube: Kube, namespace: str
) -> None:
    clock = FakeClock()
    a = elector(kube, namespace, "a", clock)
    b = elector(kube, namespace, "b", FakeClock())
    assert a.try_acquire_or_renew()
    b_clock = b.clock
    assert isinstance(b_clock, FakeClock)
    assert not b.try_acquire_or_renew(), "a holds it"
    b_clock.advance(14.9)
    assert not b.try_acquire_or_renew(), "not expired by b's clock yet"
    clock.advance(2.0)
    assert a.try_acquire_or_renew(), "a renews: renewTime moves"
    assert not b.try_acquire_or_renew(), "b sees the renewal: its 15 s start again"
    b_clock.advance(14.9)
    assert not b.try_acquire_or_renew(), "not expired by b's clock yet"
    b_clock.advance(0.2)
    assert b.try_acquire_or_renew(), "15 s of silence by b's own clock: b takes over"
    assert b.seen_holder == "a"
    assert not a.try_acquire_or_renew(), "a sees b now"
    assert a.seen_holder == "b"


def test_a_leader_that_cannot_renew_for_the_deadline_steps_down_in_fake_time(
    kube: Kube, namespace: str
) -> None:
    clock = FakeClock()
    a = elector(kube, namespace, "a", clock)
    assert a.acquire(threading.Event())
    a.config = LeaseConfig("no-such-namespace-x", "fake-time", "a", 15.0, 10.0, 2.0)
    a.start_renewing()  # every renewal now fails (404); the fake clock moves 2 s per wait
    assert a.lost.wait(30), "stepped down"
    assert not a.is_leader
    assert clock.monotonic() - 1000.0 >= 10.0, "only after the renew deadline, in fake time"
    a.stop_renewing()
