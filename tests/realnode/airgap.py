"""Helpers of the realnode tests and bench/realnode_airgap.py: a test image unique per run, a
KubePkg that runs it, the static PV deploy/'s state claim binds to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.cluster import cached_test_image

IMAGE = "docker.io/library/airgap-probe:1.0"


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr[-2000:]}"
    return result.stdout


def cli(*args: str) -> str:
    return run(sys.executable, "-m", "gitops_kubepkg", *args)


def unique_image(tmp_path: Path, marker: str) -> Path:
    """The test busybox image plus one layer holding /marker, as an OCI layout (tag `t`)."""
    layout = tmp_path / "layout"
    run(
        "skopeo",
        "copy",
        "--quiet",
        f"oci-archive:{cached_test_image('busybox')}",
        f"oci:{layout}:t",
    )
    (tmp_path / "marker").write_text(marker + "\n")
    run("umoci", "insert", "--image", f"{layout}:t", str(tmp_path / "marker"), "/marker")
    return layout


def write_kubepkg(path: Path, digest: str = "", command: list[str] | None = None) -> Path:
    """A KubePkg whose Deployment runs IMAGE (pinned to `digest` when given)."""
    container: dict[str, object] = {"name": "p", "image": IMAGE}
    if command:
        container["command"] = command
    doc = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "airgap-probe"},
        "spec": {
            "version": "1.0.0",
            "images": {IMAGE: digest},
            "manifests": {
                "probe.default.deployment": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "probe", "namespace": "default"},
                    "spec": {
                        "selector": {"matchLabels": {"app": "probe"}},
                        "template": {
                            "metadata": {"labels": {"app": "probe"}},
                            "spec": {"containers": [container]},
                        },
                    },
                }
            },
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def state_volume(path: Path, node: str) -> dict[str, object]:
    """A static local PersistentVolume on `node` for deploy/pvc.yaml's claim (no StorageClass)."""
    term = {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "gitops-kubepkg-state"},
        "spec": {
            "capacity": {"storage": "4Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "local": {"path": str(path)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [term]}]}},
        },
    }
