"""The node side of the airgap path, for real: an image pushed to a "connected" Distribution is
exported, the connected registry is stopped, the export is imported into our store, `registry
serve` serves it on the host side of the node, and the node's containerd pulls the image by
digest through a hosts.toml mirror and runs it.

The image is made unique per run (a layer with a random marker), so containerd holds none of its
content beforehand: the marker the container prints can only have come from our registry (the
connected one is stopped; the node cannot reach anything else).

Not covered yet (issue 13): the upload of the export into the in-cluster controller (here the
CLI imports on the host), and the controller's registry as the mirror."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import kubectl_path, set_mirror
from tests.integration.registry_peers import Distribution, registry_serve
from tests.realnode.airgap import IMAGE, cli, run, unique_image, write_kubepkg
from tests.realnode.conftest import NODE_NAME, RealCluster

pytestmark = pytest.mark.realnode

HOST_IP = "10.88.0.1"


def test_node_pulls_an_airgapped_image_by_digest_from_our_registry(
    real_cluster: RealCluster, real_kube: Any, tmp_path: Path
) -> None:
    marker = uuid.uuid4().hex
    layout = unique_image(tmp_path, marker)
    connected = Distribution(tmp_path / "connected")
    try:
        run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:t",
            f"docker://{connected.host}/library/airgap-probe:1.0")  # fmt: skip
        exported = json.loads(
            cli(
                "airgap",
                "export",
                str(write_kubepkg(tmp_path / "pkg" / "kubepkg.json")),
                "--out",
                str(tmp_path / "export"),
                "--registry-mirror",
                f"docker.io={connected.url}",
                "-o",
                "json",
            )
        )
    finally:
        connected.stop()
    digest = exported["images"][IMAGE]
    assert digest.startswith("sha256:")
    store = tmp_path / "store"
    imported = json.loads(
        cli(
            "airgap",
            "import",
            str(tmp_path / "export"),
            "--store",
            str(store),
            "--images-only",
            "-o",
            "json",
        )
    )
    assert imported["images"][IMAGE] == digest
    namespace = f"rn-{uuid.uuid4().hex[:8]}"
    real_kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    with registry_serve(store, host=HOST_IP) as served:
        set_mirror(real_cluster.directory, "docker.io", f"http://{served.host}")
        real_kube.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "probe", "namespace": namespace},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "probe",
                            "image": f"docker.io/library/airgap-probe@{digest}",
                            "command": ["cat", "/marker"],
                        }
                    ],
                },
            }
        )
        deadline = time.monotonic() + 120
        while True:
            pod = real_kube.get("v1", "Pod", "probe", namespace) or {}
            phase = pod.get("status", {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                break
            assert time.monotonic() < deadline, json.dumps(pod.get("status"), indent=1)
            time.sleep(1)
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert phase == "Succeeded", json.dumps(pod["status"], indent=1)
    (status,) = pod["status"]["containerStatuses"]
    assert status["imageID"].endswith(digest)
    logs = run(kubectl_path(), f"--kubeconfig={real_cluster.kubeconfig}", "logs", "-n",
               namespace, "probe")  # fmt: skip
    assert logs.strip() == marker
    real_kube.delete("v1", "Namespace", namespace)
