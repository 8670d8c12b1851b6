"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does.

The controller process asks ``LeaderElector`` before it runs any part that writes (repository
sync, KubePkg reconcile): with several replicas exactly one holds the Lease and works, the others
wait and take over when it stops renewing.

- Every write is a compare-and-swap: a create, or a PUT carrying the resourceVersion just read, so
  two candidates racing for the same Lease cannot both win (the loser gets 409 and tries later).
- Expiry is judged by this process's own monotonic clock, from the moment it last saw the Lease
  change (client-go's "observed time"), never by comparing ``renewTime`` with the local wall
  clock: replicas with skewed clocks still agree. A candidate therefore waits one full lease
  duration of silence before it takes over, also right after it starts.
- The leader renews every ``retry_period``; when it cannot renew for ``renew_deadline`` (shorter
  than the lease duration) it stops leading before anyone else may start.
- ``release`` clears ``holderIdentity`` (and shortens the lease to one second), so a replica
  stopped with SIGTERM hands over at once instead of after the lease duration.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gitops_kubepkg.clock import SYSTEM, Clock
from gitops_kubepkg.errors import Conflict, KubeError, NotFound
from gitops_kubepkg.kube import Kube

log = logging.getLogger(__name__)

API_VERSION = "coordination.k8s.io/v1"
KIND = "Lease"


def micro_time(at: datetime | None = None) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    """How long a holder's claim lasts without renewal (client-go default)."""
    renew_deadline: float = 10.0
    """How long the leader keeps trying to renew before it gives up leading."""
    retry_period: float = 2.0
    """How often candidates try to acquire and the leader renews."""

    def check(self) -> None:
        from gitops_kubepkg.errors import InputError

        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise InputError(
                "leader election: want --lease-duration > --renew-deadline > --retry-period > 0, "
                f"got {self.lease_duration:g} > {self.renew_deadline:g} > {self.retry_period:g}"
            )


class LeaderElector:
    """Acquires, renews and releases one Lease for one identity. ``is_leader`` is thread-safe."""

    def __init__(
        self,
        kube: Kube,
        config: LeaseConfig,
        *,
        on_change: Callable[[bool], None] | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        config.check()
        self.clock = clock
        self.kube = kube
        self.config = config
        self.on_change = on_change
        self._leader = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.seen_holder = ""
        """The holder the last read of the Lease showed."""
        self._renewed_at = 0.0
        self.last_contact = -1.0
        """Monotonic time of the last answer from the API server about the Lease (-1: never)."""
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._stop_renewing = threading.Event()
        self.lost = threading.Event()
        """Set when this replica stopped being leader without being asked to."""

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._leader

    def _set_leader(self, value: bool) -> None:
        with self._lock:
            changed = self._leader != value
            self._leader = value
        if changed and self.on_change is not None:
            self.on_change(value)

    # -- one attempt ----------------------------------------------------------------------------

    def _path(self) -> str:
        res = self.kube.resource(API_VERSION, KIND)
        return res.path(self.config.namespace, self.config.name)

    def _spec(self, previous: dict[str, Any], now: str) -> dict[str, Any]:
        me = self.config.identity
        holder = previous.get("holderIdentity") or ""
        transitions = int(previous.get("leaseTransitions") or 0)
        return {
            "holderIdentity": me,
            "leaseDurationSeconds": max(1, round(self.config.lease_duration)),
            "acquireTime": previous.get("acquireTime") if holder == me else now,
            "renewTime": now,
            "leaseTransitions": transitions if holder == me or not previous else transitions + 1,
        }

    def try_acquire_or_renew(self) -> bool:
        """One compare-and-swap on the Lease; True when this identity holds it afterwards."""
        me = self.config.identity
        now = micro_time(self.clock.now())
        try:
            lease = self.kube.get(API_VERSION, KIND, self.config.name, self.config.namespace)
            if lease is None:
                self.kube.create(
                    {
                        "apiVersion": API_VERSION,
                        "kind": KIND,
                        "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                        "spec": {**self._spec({}, now), "leaseTransitions": 0},
                    }
                )
                self._contact()
                return True
            self._contact()
            spec = lease.get("spec") or {}
            self._observe(spec)
            holder = spec.get("holderIdentity") or ""
            self.seen_holder = holder
            if holder and holder != me and not self._expired(spec):
                return False
            lease["spec"] = self._spec(spec, now)
            self.kube.request("PUT", self._path(), body=lease, what=f"update Lease {self._key()}")
            self._contact()
            return True
        except Conflict:
            self._contact()  # another candidate wrote first: it is alive, and so is the API
            return False
        except NotFound as e:
            log.warning(
                "Lease %s: %s (does namespace %s exist?)", self._key(), e, self.config.namespace
            )
            return False
        except KubeError as e:
            log.warning("Lease %s: %s", self._key(), e)
            return False

    def _key(self) -> str:
        return f"{self.config.namespace}/{self.config.name}"

    def _contact(self) -> None:
        with self._lock:
            self.last_contact = self.clock.monotonic()

    def _observe(self, spec: dict[str, Any]) -> None:
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseTransitions"),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock.monotonic()

    def _expired(self, spec: dict[str, Any]) -> bool:
        duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
        return self.clock.monotonic() > self._observed_at + duration

    # -- the life cycle -------------------------------------------------------------------------

    def acquire(self, stop: threading.Event) -> bool:
        """Try every ``retry_period`` (with jitter) until leader (True) or ``stop`` (False)."""
        log.info("Lease %s: waiting to lead as %s", self._key(), self.config.identity)
        while not stop.is_set():
            if self.try_acquire_or_renew():
                self._renewed_at = self.clock.monotonic()
                self.lost.clear()
                self._set_leader(True)
                log.info("Lease %s: leading as %s", self._key(), self.config.identity)
                return True
            self.clock.wait(stop, self.config.retry_period * random.uniform(1.0, 1.2))
        return False

    def start_renewing(self) -> None:
        """Renew in the background until ``stop_renewing`` or until renewing fails for too long."""
        self._stop_renewing.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self.clock.wait(self._stop_renewing, self.config.retry_period):
            if self.try_acquire_or_renew():
                self._renewed_at = self.clock.monotonic()
                continue
            taken = self.seen_holder not in ("", self.config.identity)
            if taken or self.clock.monotonic() - self._renewed_at > self.config.renew_deadline:
                log.error(
                    "Lease %s: %s: no longer leading",
                    self._key(),
                    f"now held by {self.seen_holder}"
                    if taken
                    else f"not renewed for {self.config.renew_deadline:g}s",
                )
                self._set_leader(False)
                self.lost.set()
                return

    def stop_renewing(self) -> None:
        self._stop_renewing.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None

    def release(self) -> bool:
        """Give the Lease up (holderIdentity cleared) if this identity still holds it."""
        self.stop_renewing()
        released = False
        try:
            lease = self.kube.get(API_VERSION, KIND, self.config.name, self.config.namespace)
            spec = (lease or {}).get("spec") or {}
            if lease is not None and spec.get("holderIdentity") == self.config.identity:
                now = micro_time(self.clock.now())
                lease["spec"] = {
                    "leaseDurationSeconds": 1,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": int(spec.get("leaseTransitions") or 0),
                }
                self.kube.request(
                    "PUT", self._path(), body=lease, what=f"release Lease {self._key()}"
                )
                released = True
                log.info("Lease %s: released", self._key())
        except KubeError as e:
            log.warning("Lease %s: not released (it expires by itself): %s", self._key(), e)
        self._set_leader(False)
        return released
