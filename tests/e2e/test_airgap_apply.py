"""Airgap end to end: export on the connected side, import on the airgapped side, serve the
images from our pull-only registry, sync the deployment repository from the imported mirror, and
apply the KubePkg so its pods pull from inside.

Real everything: a git repository, CNCF Distribution as the image source, our registry as a
process, skopeo as an independent client, the local kube-apiserver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.registry.client import RegistryClient
from tests.integration.registry_peers import (
    Distribution,
    build_image,
    have_peers,
    push,
    registry_serve,
    skopeo,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not have_peers(), reason="needs docker-registry and skopeo"),
]

IMAGE = build_image([4096, 65536])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert proc.returncode == 0, f"gitops-kubepkg {' '.join(args)}: {proc.stderr}"
    return proc


def kubepkg(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "version": "1.0.0",
            "images": {"docker.io/library/web:1.0": ""},
            "manifests": {
                f"web.{namespace}.deployment": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": namespace},
                    "spec": {
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {
                                "containers": [
                                    {"name": "web", "image": "docker.io/library/web:1.0"}
                                ]
                            },
                        },
                    },
                }
            },
        },
    }


@pytest.fixture
def source_registry(tmp_path: Path) -> Iterator[Distribution]:
    registry = Distribution(tmp_path / "source-registry")
    try:
        client = RegistryClient()
        push(client, registry.endpoint, "library/web", "1.0", IMAGE)
        client.close()
        yield registry
    finally:
        registry.stop()


@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Our pull-only registry as its own process, serving the airgapped side's store."""
    store = tmp_path / "airgapped" / "store"
    store.mkdir(parents=True)
    with registry_serve(store) as served:
        yield store, served.host


def test_export_import_and_the_kubepkg_pulls_from_the_local_registry(
    tmp_path: Path,
    kube: Kube,
    kubeconfig: str,
    namespace: str,
    source_registry: Distribution,
    local_registry: tuple[Path, str],
) -> None:
    # The connected side: a deployment repository and the image in a registry.
    origin = tmp_path / "deploy.git"
    repo = git.init_bare(origin)
    commit = repo.commit_files(
        "main", {"web/kubepkg.json": json.dumps(kubepkg(namespace)).encode()}, "deploy web 1.0.0"
    )
    url = f"file://{origin}"
    export_dir = tmp_path / "export"
    cli(
        "airgap", "export", "--repo", url, "--ref", "refs/heads/main", "--out", str(export_dir),
        "--registry-mirror", f"docker.io={source_registry.url}",
    )  # fmt: skip
    assert (export_dir / "kubepkg.airgap.tar").stat().st_size > 65536

    # The airgapped side: nothing but the export directory.
    store, host = local_registry
    state = tmp_path / "airgapped" / "state"
    result = json.loads(
        cli(
            "airgap",
            "import",
            str(export_dir),
            "--store",
            str(store),
            "--state-dir",
            str(state),
            "-o",
            "json",
        ).stdout
    )
    assert result["images"] == {"docker.io/library/web:1.0": str(IMAGE.digest)}
    assert result["repositories"], "the git bundle went into the mirror"
    served = skopeo(
        "inspect", "--raw", "--tls-verify=false", f"docker://{host}/docker.io/library/web:1.0"
    ).stdout
    assert served.encode() == IMAGE.raw, "our registry serves the manifest byte for byte"

    # The controller reads the deployment repository from the imported mirror, never the network.
    origin.rename(tmp_path / "gone.git")
    env = {"KUBECONFIG": kubeconfig}
    cli(
        "repo",
        "add",
        "deploy",
        "--url",
        url,
        "--type",
        "deployment",
        "--airgap",
        "-n",
        namespace,
        "--kubeconfig",
        kubeconfig,
    )
    cli(
        "controller",
        "--once",
        "--state-dir",
        str(state),
        "-n",
        namespace,
        "--kubeconfig",
        kubeconfig,
        env=env,
    )
    pkg = kube.get("octohelm.tech/v1alpha1", "KubePkg", "web", namespace)
    assert pkg is not None, "the KubePkg came from the imported git bundle"
    assert commit in json.dumps(pkg["metadata"].get("annotations", {}))

    reconciler = KubePkgReconciler(kube, registry=host)
    try:
        reconciler.reconcile(namespace, "web")
    finally:
        reconciler.applier.close()
    deployment = kube.get("apps/v1", "Deployment", "web", namespace)
    assert deployment is not None
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{host}/docker.io/library/web:1.0"
    # What the pod would pull is really there: skopeo resolves it against our registry.
    inspected = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{image}").stdout)
    assert inspected["Digest"] == str(IMAGE.digest)
