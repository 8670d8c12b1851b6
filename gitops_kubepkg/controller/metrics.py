"""The controller's Prometheus metrics: every series named once, recorded by the parts that know.

Served on ``/metrics`` by ``monitoring.py``; the repository sync (``sync.py``), the KubePkg loop
(through ``MeasuredReconciler`` and the loop's observer), the registry and the leader elector
record into one ``Metrics`` per process. Each process has its own registry (not the library's
global one), so tests can run several side by side.

Series (all prefixed ``gitops_kubepkg_``):

- ``reconcile_duration_seconds{kind,result}``: histogram of one pass over one Repository or
  KubePkg; ``result`` is ready, progressing, stalled or error.
- ``git_polls_total{fetched}``: remote ref listings, and whether a fetch followed.
- ``git_fetch_duration_seconds``: histogram of polls that fetched (the ref listing included).
- ``git_fetch_bytes_total``: pack bytes those fetches added to the mirrors.
- ``objects_applied_total{kind,action}``: objects a KubePkg pass created or configured.
- ``objects_pruned_total{kind}``: objects a KubePkg pass deleted.
- ``registry_requests_total{method,code}``: requests the pull-only registry answered.
- ``registry_store_bytes`` / ``registry_store_blobs``: what ``airgap import`` put into the
  registry store (imports run as their own process, so the store is measured, at scrape time).
- ``dashboard_requests_total{endpoint,code}``: requests the dashboard answered (``endpoint``: the
  API path, ``/api/kubepkgs`` for every KubePkg page, ``static`` or ``other``);
  ``dashboard_streams``: its live streams open now.
- ``leader``: 1 while this replica holds the Lease (sharded: the number of shard Leases it
  holds); ``leader_transitions_total``: times it won the leader Lease.
- ``ready{kind,namespace,name}`` / ``suspended{kind,namespace,name}``: 1 or 0 per Repository and
  KubePkg this replica reconciles, as of its last pass (gone with the object).
- ``queue_depth``: keys waiting in the work queue (due or not); ``queue_wait_seconds``: histogram
  of how long a due key waited for a worker; ``worker_restarts_total``: workers that died and were
  replaced (each is a bug).
- ``api_requests_total{verb}``: requests this process sent the Kubernetes API server (``write``:
  the ones that change something, dry runs not counted; ``all``: every request, watches included).
- ``process_*``: CPU, memory and file descriptors of this process.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# ``*_created`` series (one per counter and histogram) only double the scrape; Flux and
# controller-runtime do not expose them either.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "gitops_kubepkg"
# A pass over a Repository or a KubePkg takes milliseconds (nothing changed) to minutes (a large
# fetch, a CRD waiting to be Established).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def pack_bytes(mirror: Path) -> int:
    """Bytes of the packs in a bare repository: a fetch adds its received pack here."""
    try:
        entries = list(os.scandir(mirror / "objects" / "pack"))
    except OSError:
        return 0
    return sum(e.stat().st_size for e in entries if e.is_file())


class _StoreCollector(Collector):
    """Size of the registry's blob store, measured at most every ``ttl`` seconds."""

    def __init__(self, root: Path, ttl: float = 30.0) -> None:
        self.root = root
        self.ttl = ttl
        self._at = -ttl
        self._value = (0, 0)
        self._lock = threading.Lock()

    def _measure(self) -> tuple[int, int]:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                size = blobs = 0
                for directory, _, files in os.walk(self.root / "blobs"):
                    for name in files:
                        try:
                            size += os.stat(os.path.join(directory, name)).st_size
                        except OSError:
                            continue  # removed while we walked
                        blobs += 1
                self._value = (size, blobs)
                self._at = time.monotonic()
            return self._value

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size, blobs = self._measure()
        yield GaugeMetricFamily(
            f"{PREFIX}_registry_store_bytes",
            "Bytes of blobs in the registry store (what airgap import wrote).",
            value=size,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_registry_store_blobs", "Blobs in the registry store.", value=blobs
        )


class _CallbackCollector(Collector):
    """Series read at scrape time from the parts that count them (the API client, the queue)."""

    def __init__(self, read: Callable[[], Iterator[CounterMetricFamily | GaugeMetricFamily]]):
        self.read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield from self.read()


class Metrics:
    """Every series of one controller process, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Duration of one reconcile pass, by kind (Repository, KubePkg) and result.",
            ["kind", "result"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.git_polls = Counter(
            f"{PREFIX}_git_polls",
            "Remote ref listings, by whether a fetch followed.",
            ["fetched"],
            registry=r,
        )
        self.git_fetch_duration = Histogram(
            f"{PREFIX}_git_fetch_duration_seconds",
            "Duration of polls that fetched (ref listing and fetch).",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.git_fetch_bytes = Counter(
            f"{PREFIX}_git_fetch_bytes",
            "Pack bytes fetches added to the mirrors.",
            registry=r,
        )
        self.objects_applied = Counter(
            f"{PREFIX}_objects_applied",
            "Objects a KubePkg pass created or configured.",
            ["kind", "action"],
            registry=r,
        )
        self.objects_pruned = Counter(
            f"{PREFIX}_objects_pruned",
            "Objects a KubePkg pass deleted (pruned, or its KubePkg was deleted).",
            ["kind"],
            registry=r,
        )
        self.registry_requests = Counter(
            f"{PREFIX}_registry_requests",
            "Requests the pull-only registry answered, by method and status code.",
            ["method", "code"],
            registry=r,
        )
        self.dashboard_requests = Counter(
            f"{PREFIX}_dashboard_requests",
            "Requests the dashboard answered, by endpoint and status code.",
            ["endpoint", "code"],
            registry=r,
        )
        self.dashboard_streams = Gauge(
            f"{PREFIX}_dashboard_streams", "Live dashboard streams open now.", registry=r
        )
        self.leader = Gauge(
            f"{PREFIX}_leader", "1 while this replica holds the leader Lease.", registry=r
        )
        self.leader_transitions = Counter(
            f"{PREFIX}_leader_transitions",
            "Times this replica acquired the leader Lease.",
            registry=r,
        )
        self.ready = Gauge(
            f"{PREFIX}_ready",
            "1 when the object's last pass left it Ready, else 0.",
            ["kind", "namespace", "name"],
            registry=r,
        )
        self.suspended = Gauge(
            f"{PREFIX}_suspended",
            "1 when the object is suspended (spec.suspend), else 0.",
            ["kind", "namespace", "name"],
            registry=r,
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "How long a due key waited in the work queue for a worker.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.worker_restarts = Counter(
            f"{PREFIX}_worker_restarts",
            "Workers that died and were replaced.",
            registry=r,
        )
        self._queue_depth: Callable[[], int] = lambda: 0
        self._api: Callable[[], tuple[int, int]] = lambda: (0, 0)
        r.register(_CallbackCollector(self._read_callbacks))
        ProcessCollector(registry=r)
        # Series with labels appear only once recorded; the ones an operator alerts on are
        # created at zero so a dashboard shows 0 rather than "no data".
        for kind in ("Repository", "KubePkg"):
            self.reconcile_duration.labels(kind, "ready")
        for fetched in ("true", "false"):
            self.git_polls.labels(fetched)

    def _read_callbacks(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_depth", "Keys waiting in the work queue.", value=self._queue_depth()
        )
        requests, writes = self._api()
        api = CounterMetricFamily(
            f"{PREFIX}_api_requests",
            "Requests sent to the Kubernetes API server (all; write: changes, no dry runs).",
            labels=["verb"],
        )
        api.add_metric(["all"], requests)
        api.add_metric(["write"], writes)
        yield api

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as the queue depth (the leader's runtime, per term)."""
        self._queue_depth = depth

    def watch_api(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Report ``counts()`` (requests, writes) of the process's API client."""
        self._api = counts

    def record_pass(
        self, kind: str, namespace: str, name: str, *, ready: bool, suspended: bool
    ) -> None:
        self.ready.labels(kind, namespace, name).set(1 if ready else 0)
        self.suspended.labels(kind, namespace, name).set(1 if suspended else 0)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """An object is gone (or moved to another replica): drop its series."""
        for gauge in (self.ready, self.suspended):
            with contextlib.suppress(KeyError):
                gauge.remove(kind, namespace, name)

    def watch_store(self, root: Path) -> None:
        """Report the registry store under ``root`` (once per process)."""
        self.registry.register(_StoreCollector(root))

    def record_registry_request(self, method: str, code: int) -> None:
        self.registry_requests.labels(method, str(code)).inc()

    def record_dashboard_request(self, endpoint: str, code: int) -> None:
        self.dashboard_requests.labels(endpoint, str(code)).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every series."""
        return generate_latest(self.registry)
