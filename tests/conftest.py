"""Shared fixtures: one real control plane per test session, a Kube client, a namespace per test.

Integration tests ask for ``kube`` (or ``kubeconfig``) and get a real kube-apiserver with RBAC
on, started once by ``tests/integration/cluster.py`` (or the cluster named by
GITOPS_KUBEPKG_TEST_KUBECONFIG) with this project's CRDs installed. Everything started here is
stopped at the end of the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_gpg_agent_left() -> Iterator[None]:
    """gpg starts an agent per key home a signature test makes; none outlives its test."""
    yield
    from tests.signing import stop_gpg_agents

    stop_gpg_agents()


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.integration.cluster import start_cluster, stop_cluster

    directory = tmp_path_factory.mktemp("cluster")
    path = start_cluster(directory)
    try:
        yield path
    finally:
        stop_cluster(directory)


@pytest.fixture(scope="session")
def kube(kubeconfig: str) -> Iterator[object]:
    """A ``gitops_kubepkg.kube.Kube`` on the session's cluster, with deploy/crds applied."""
    from gitops_kubepkg.controller.install import install_crds
    from gitops_kubepkg.kube import Kube

    client = Kube(kubeconfig)
    install_crds(client)
    yield client
    client.close()


@pytest.fixture
def namespace(kube: object) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    from gitops_kubepkg.kube import Kube

    assert isinstance(kube, Kube)
    name = f"t-{uuid.uuid4().hex[:10]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete("v1", "Namespace", name)
