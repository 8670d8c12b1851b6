"""The realnode tier: one local cluster with a real node (kubelet, kube-proxy, containerd, runc)
per test session, shared by every test under tests/realnode/.

Place in the flow: test infrastructure only. `scripts/local-cluster up --real-node` starts it in a
private network namespace; at the end of the session `down` stops it and this fixture checks that
nothing is left behind: no process, mount, network namespace, veth, cgroup or claim file, the
VM-wide sysctls the kubelet rewrites are back, and the fixed paths kubelet and containerd write
to are as they were.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.cluster import (
    cached_test_image,
    cluster_processes,
    load_image,
    process_running,
    start_cluster,
    stop_cluster,
)

# What the node must leave as it found it (scripts/local-cluster, "Real node").
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
FIXED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/run/containerd",
    "/run/netns",
)
NETNS = "gitops-kubepkg-node"
CGROUP = "gitops-kubepkg-node"
CLAIM = "/run/gitops-kubepkg-real-node"
HOST_VETH = "gkpnode0"
NODE_NAME = "10.88.0.2"
BUSYBOX = "docker.io/library/busybox:gitops-kubepkg-test"


@dataclass(frozen=True)
class RealCluster:
    directory: Path
    kubeconfig: str

    def load_image(self, archive: str | os.PathLike[str]) -> None:
        load_image(self.directory, archive)


def _machine_snapshot() -> dict[str, object]:
    def read(path: str) -> str | None:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None

    def entries(path: str) -> list[str] | None:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return None

    cgroups = sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{CGROUP}") if p.is_dir())
    links = subprocess.run(
        ["ip", "-o", "link", "show", HOST_VETH], capture_output=True, text=True
    ).returncode
    return {
        "sysctls": {name: read(f"/proc/sys/{name}") for name in SYSCTLS},
        "fixed_paths": {path: entries(path) for path in FIXED_PATHS},
        "cgroups": cgroups,
        "netns": os.path.exists(f"/run/netns/{NETNS}"),
        "veth": links == 0,
        "claim": os.path.exists(CLAIM),
    }


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory).rstrip("/") + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f if (line.split()[4] + "/").startswith(prefix)]


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    before = _machine_snapshot()
    assert not before["netns"] and not before["claim"], (
        "a real node already runs on this machine (one at a time)"
    )
    directory = tmp_path_factory.mktemp("realnode")
    kubeconfig = start_cluster(directory, real_node=True)
    try:
        started = cluster_processes(directory)
        assert {"kubelet", "kube-proxy", "containerd"} <= set(started)
        cluster = RealCluster(directory, kubeconfig)
        cluster.load_image(cached_test_image("busybox"))
        yield cluster
    finally:
        stop_cluster(directory, real_node=True)
    left = [name for name, pid in started.items() if process_running(pid)]
    assert not left, f"still running after down: {left}"
    assert not _mounts_under(directory), f"mounts left: {_mounts_under(directory)}"
    after = _machine_snapshot()
    assert after == before, f"the real node changed the machine: {before} -> {after}"


@pytest.fixture(scope="session")
def real_kube(real_cluster: RealCluster) -> Iterator[object]:
    """A ``gitops_kubepkg.kube.Kube`` on the real-node cluster, with deploy/crds applied."""
    from gitops_kubepkg.controller.install import install_crds
    from gitops_kubepkg.kube import Kube

    client = Kube(real_cluster.kubeconfig)
    install_crds(client)
    yield client
    client.close()
