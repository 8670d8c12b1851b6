"""Sharding on the real API server: three controller processes split the KubePkgs by shard Lease;
one is SIGKILLed and the other two take its shards over and keep working on them.

Real processes, the real kube-apiserver; deadlines derive from the lease duration, never timed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.controller.leader import API_VERSION as LEASE_API
from gitops_kubepkg.controller.shards import assign, shard_lease_name, shard_of
from gitops_kubepkg.kube import Kube
from tests.integration.controllers import RunningController, edit_config_map_by_hand, wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 4
SHARDS = 6
BASE = "gitops-kubepkg-controller"
# One lease duration of silence, a retry period to notice, process and API latency: far beyond.
TAKEOVER_DEADLINE = 3 * LEASE_SECONDS + 10


def kubepkg(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "version": "1.0.0",
            "manifests": {
                f"{name}.configmap": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name},
                    "data": {"mode": "a"},
                }
            },
        },
    }


def owners(kube: Kube, namespace: str) -> dict[int, str]:
    out = {}
    for i in range(SHARDS):
        lease = kube.get(LEASE_API, "Lease", shard_lease_name(BASE, i), namespace) or {}
        holder = (lease.get("spec") or {}).get("holderIdentity")
        if holder:
            out[i] = str(holder)
    return out


def all_ready(kube: Kube, namespace: str, names: list[str]) -> bool:
    for name in names:
        pkg = kube.get("octohelm.tech/v1alpha1", "KubePkg", name, namespace) or {}
        conditions = (pkg.get("status") or {}).get("conditions") or []
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return False
    return True


def spread_identities(count: int) -> list[str]:
    """Replica identities among which rendezvous hashing gives every replica a shard (random
    identities leave one replica without any in about a quarter of runs at 6 shards and 3)."""
    n = 0
    while True:
        ids = [f"replica-{n + i}" for i in range(count)]
        if set(assign(SHARDS, ids).values()) == set(ids):
            return ids
        n += count


def test_three_replicas_split_the_shards_and_survive_a_sigkill(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    names = [f"app{i}" for i in range(12)]
    for name in names:
        kube.apply(kubepkg(name, namespace))
    args = [
        "-n", namespace, "--leader-election-namespace", namespace, "--shards", str(SHARDS),
        "--no-repositories", "--resync", "1h",
        "--lease-duration", f"{LEASE_SECONDS}s", "--renew-deadline", "3s", "--retry-period", "1s",
    ]  # fmt: skip
    ids = spread_identities(3)
    with (
        RunningController(
            kubeconfig, tmp_path / "a", *args, identity=ids[0], log=tmp_path / "a.log"
        ) as a,
        RunningController(
            kubeconfig, tmp_path / "b", *args, identity=ids[1], log=tmp_path / "b.log"
        ) as b,
        RunningController(
            kubeconfig, tmp_path / "c", *args, identity=ids[2], log=tmp_path / "c.log"
        ) as c,
    ):
        replicas = {r.identity: r for r in (a, b, c)}

        def spread() -> dict[int, str] | None:
            held = owners(kube, namespace)
            return held if len(held) == SHARDS and set(held.values()) == set(replicas) else None

        held = wait_until(spread, 60, "all shards held, by all three replicas")
        wait_until(lambda: all_ready(kube, namespace, names), 60, "every KubePkg Ready")
        for r in replicas.values():
            wait_until(lambda r=r: r.get("/readyz")[0] == 200, 30, f"{r.identity} ready")

        # get -o wide names each KubePkg's owner: the holder of its shard's Lease.
        out = subprocess.run(
            [sys.executable, "-m", "gitops_kubepkg", "get", "kubepkgs", "-n", namespace,
             "-o", "wide", "--controller-namespace", namespace, "--kubeconfig", kubeconfig],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
        held = owners(kube, namespace)
        for name in names:
            shard = shard_of(namespace, name, SHARDS)
            assert f"{held[shard]} (shard {shard})" in rows[name]

        # Kill the replica holding the most shards; the others take its shards over.
        victim = max(replicas, key=lambda r: sum(1 for h in held.values() if h == r))
        moved = sorted(i for i, h in held.items() if h == victim)
        replicas[victim].signal(signal.SIGKILL)
        assert replicas[victim].wait(30) == -signal.SIGKILL
        survivors = set(replicas) - {victim}

        def taken_over() -> bool:
            now = owners(kube, namespace)
            return len(now) == SHARDS and set(now.values()) <= survivors

        wait_until(taken_over, TAKEOVER_DEADLINE, f"shards {moved} to move to the survivors")

        # The new owner works on a moved shard: a hand edit is reverted (resync is an hour).
        orphan = next(n for n in names if shard_of(namespace, n, SHARDS) in moved)
        edit_config_map_by_hand(kube, namespace, orphan, {"mode": "by-hand"})

        def reverted() -> bool:
            live = kube.get("v1", "ConfigMap", orphan, namespace) or {}
            return (live.get("data") or {}).get("mode") == "a"

        wait_until(reverted, 30, f"the new owner of {orphan}'s shard to revert the hand edit")
        new_owner = owners(kube, namespace)[shard_of(namespace, orphan, SHARDS)]
        assert f"KubePkg {namespace}/{orphan}" in replicas[new_owner].log()

        for identity in survivors:
            replicas[identity].signal(signal.SIGTERM)
            assert replicas[identity].wait(60) == 0, replicas[identity].log()
    assert owners(kube, namespace) == {}, "SIGTERM releases every shard Lease"
    assert json.dumps(held)  # (the assignment, for a failing run's report)
