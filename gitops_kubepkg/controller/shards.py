"""Sharding on Kubernetes itself: N replicas split Repositories and KubePkgs, one Lease per shard.

With ``controller --shards S`` (S > 1) every replica runs the runtime; which keys it works on is
decided here:

- a Repository or KubePkg belongs to shard ``shard_of(namespace, name, S)`` (a stable hash: an
  object never changes shard);
- each replica announces itself with a member Lease ``<id>-member-<identity>`` it renews every
  retry period; the live members are those whose member Lease changed within one lease duration
  (judged by this replica's own clock, as leader election does);
- shards are assigned to live members by rendezvous hashing (the member with the highest
  hash(shard, member) owns the shard), so a replica joining or leaving moves only its share;
- a replica works on a shard only while it holds that shard's Lease ``<id>-shard-<i>`` (a
  ``LeaderElector`` each: compare-and-swap writes, expiry by observed time). It gives up a shard
  the assignment moved elsewhere, and takes a shard assigned to it once the Lease is free or
  expired. A SIGKILLed replica stops renewing: its member and shard Leases expire after one lease
  duration, and the others take its shards over then.

``gitops-kubepkg get ... -o wide`` shows the owner: the holder of the object's shard Lease.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from gitops_kubepkg.clock import SYSTEM, Clock
from gitops_kubepkg.controller.leader import API_VERSION, KIND, LeaderElector, LeaseConfig
from gitops_kubepkg.errors import KubeError
from gitops_kubepkg.kube import Kube

log = logging.getLogger(__name__)

LABEL_MEMBER_OF = "gitops.kubepkg.dev/member-of"
"""On member Leases: the shard set (``--leader-election-id``) the replica belongs to."""


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard of a Repository or KubePkg: stable for its whole life, spread evenly."""
    return _hash(f"{namespace}/{name}") % max(1, shards)


def shard_lease_name(base: str, shard: int) -> str:
    return f"{base}-shard-{shard}"


def assign(shards: int, members: list[str]) -> dict[int, str]:
    """Rendezvous hashing: each shard to the member with the highest hash(shard, member)."""
    if not members:
        return {}
    return {i: max(sorted(members), key=lambda m: _hash(f"{i}/{m}")) for i in range(shards)}


@dataclass(frozen=True)
class ShardConfig:
    shards: int
    lease: LeaseConfig
    """Namespace, base name (``--leader-election-id``), identity and timings of every Lease."""


class ShardManager:
    """Keeps this replica's member Lease and exactly its assigned shard Leases."""

    def __init__(
        self,
        kube: Kube,
        config: ShardConfig,
        *,
        on_change: Callable[[set[int]], None],
        clock: Clock = SYSTEM,
    ) -> None:
        self.kube = kube
        self.config = config
        self.on_change = on_change
        self.clock = clock
        base = config.lease
        self.member = LeaderElector(
            kube, replace(base, name=f"{base.name}-member-{_safe(base.identity)}"), clock=clock
        )
        self.electors = {
            i: LeaderElector(kube, replace(base, name=shard_lease_name(base.name, i)), clock=clock)
            for i in range(config.shards)
        }
        self._owned: set[int] = set()
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[Any, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_contact = -1.0
        self._labelled = False

    @property
    def owned(self) -> set[int]:
        with self._lock:
            return set(self._owned)

    def owns(self, namespace: str, name: str) -> bool:
        return shard_of(namespace, name, self.config.shards) in self.owned

    # -- one round ------------------------------------------------------------------------------

    def members(self) -> list[str]:
        """Identities whose member Lease changed within one lease duration (by our clock)."""
        lease = self.config.lease
        items = self.kube.list(
            API_VERSION, KIND, lease.namespace, label_selector=f"{LABEL_MEMBER_OF}={lease.name}"
        )
        now = self.clock.monotonic()
        alive = []
        for item in items:
            spec = item.get("spec") or {}
            holder = str(spec.get("holderIdentity") or "")
            if not holder:
                continue
            record = (spec.get("renewTime"), spec.get("holderIdentity"))
            name = item["metadata"]["name"]
            seen = self._seen.get(name)
            if seen is None or seen[0] != record:
                self._seen[name] = (record, now)
                seen = self._seen[name]
            duration = float(spec.get("leaseDurationSeconds") or lease.lease_duration)
            if holder == lease.identity or now - seen[1] <= duration:
                alive.append(holder)
        return alive

    def _announce(self) -> None:
        if not self.member.try_acquire_or_renew():
            return
        lease = self.config.lease
        self.kube.patch(
            API_VERSION,
            KIND,
            self.member.config.name,
            lease.namespace,
            {"metadata": {"labels": {LABEL_MEMBER_OF: lease.name}}},
        )

    def step(self) -> set[int]:
        """Renew our member Lease, recompute the assignment, take and give up shards."""
        me = self.config.lease.identity
        try:
            if not self._labelled:
                self._announce()
                self._labelled = True
            elif not self.member.try_acquire_or_renew():
                log.warning("shards: could not renew the member Lease of %s", me)
            members = self.members()
            self.last_contact = self.clock.monotonic()
        except KubeError as e:
            log.warning("shards: %s", e)
            return self.owned
        mine = {i for i, m in assign(self.config.shards, members).items() if m == me}
        owned = self.owned
        for i in sorted(owned - mine):
            log.info("shard %d: assigned to another replica; giving it up", i)
            self._set(owned - {i})
            owned = self.owned
            self.electors[i].release()
        for i in sorted(mine | owned):
            if self.electors[i].try_acquire_or_renew():
                if i not in owned:
                    log.info("shard %d: now held by %s", i, me)
                    owned = owned | {i}
            elif i in owned:
                log.warning("shard %d: lost (held by %s)", i, self.electors[i].seen_holder)
                owned = owned - {i}
        self._set(owned)
        return owned

    def _set(self, owned: set[int]) -> None:
        with self._lock:
            changed = owned != self._owned
            self._owned = set(owned)
        if changed:
            self.on_change(set(owned))

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="shards", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self.step()
            except Exception:  # never let the shard loop die of a bug: log, next round
                log.exception("shards: round failed")
            if self.clock.wait(self._stop, self.config.lease.retry_period):
                return

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Give up every shard and the member Lease (a SIGTERMed replica hands over at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        owned = self.owned
        self._set(set())
        for i in sorted(owned):
            self.electors[i].release()
        self.member.release()
        try:
            self.kube.delete(
                API_VERSION, KIND, self.member.config.name, self.config.lease.namespace
            )
        except KubeError as e:
            log.info("shards: member Lease not deleted (it expires): %s", e)


def _safe(identity: str) -> str:
    """A Lease name part from an identity (lower case, [a-z0-9-.], at most 200 characters)."""
    out = "".join(c if c.isalnum() or c in "-." else "-" for c in identity.lower()).strip("-.")
    return out[:200] or "replica"


def shard_owners(kube: Kube, namespace: str, base: str) -> dict[int, str]:
    """Shard -> holder of its Lease now (empty when the controller is not sharded)."""
    out = {}
    prefix = f"{base}-shard-"
    for item in kube.list(API_VERSION, KIND, namespace):
        name = str((item.get("metadata") or {}).get("name") or "")
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            holder = str((item.get("spec") or {}).get("holderIdentity") or "")
            if holder:
                out[int(name[len(prefix) :])] = holder
    return out
