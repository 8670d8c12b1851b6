"""The kube adapter against the real kube-apiserver: credentials, keep-alive connections, watches."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from gitops_kubepkg.kube import Kube

pytestmark = pytest.mark.integration


def tls_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("gitops-kubepkg-tls-*"))


def test_embedded_certificates_leave_no_file_behind(kubeconfig: str) -> None:
    assert "client-key-data" in Path(kubeconfig).read_text(), "the local cluster embeds its keys"
    before = tls_dirs()
    kube = Kube(kubeconfig)
    try:
        assert kube.get("v1", "Namespace", "default") is not None
    finally:
        kube.close()
    assert tls_dirs() == before


def test_a_thread_can_send_requests_while_it_reads_a_watch(kube: Kube, namespace: str) -> None:
    # Labelled: the controller manager adds kube-root-ca.crt to every new namespace meanwhile.
    def config_map(name: str) -> dict[str, object]:
        meta = {"name": name, "namespace": namespace, "labels": {"test": "watch"}}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}

    _, version = kube.list_with_version("v1", "ConfigMap", namespace)
    kube.apply(config_map("a"))
    seen = []
    for event, obj in kube.watch(
        "v1",
        "ConfigMap",
        namespace,
        resource_version=version,
        timeout_seconds=30,
        label_selector="test=watch",
    ):
        if event == "BOOKMARK":
            continue
        seen.append((event, obj["metadata"]["name"]))
        # The same thread asks for more while the watch's response is still open.
        if obj["metadata"]["name"] == "a":
            assert kube.get("v1", "ConfigMap", "a", namespace) is not None
            kube.apply(config_map("b"))
        if obj["metadata"]["name"] == "b":
            break
    assert seen == [("ADDED", "a"), ("ADDED", "b")]
