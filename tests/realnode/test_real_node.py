"""The real node runs Pods for real: a container starts, serves, is probed, reaches the API
server through the `kubernetes` ClusterIP (kube-proxy), and the host reaches it by Pod IP.
kwok could fake every status field here, but not the bytes served from inside the container."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.realnode.conftest import BUSYBOX, NODE_NAME

pytestmark = pytest.mark.realnode

SCRIPT = """
mkdir -p /tmp/www
echo "$(hostname) $(id -u)" > /tmp/www/index.html
if echo | nc -w 5 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT"; then
  echo reachable > /tmp/www/api.html
else
  echo unreachable > /tmp/www/api.html
fi
exec httpd -f -p 8080 -h /tmp/www
"""


@pytest.fixture
def real_namespace(real_kube: Any) -> Iterator[str]:
    name = f"rn-{uuid.uuid4().hex[:8]}"
    real_kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    real_kube.delete("v1", "Namespace", name)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode().strip()


def test_busybox_pod_really_runs(real_kube: Any, real_namespace: str) -> None:
    name = "busybox"
    real_kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": real_namespace},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": BUSYBOX,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", SCRIPT],
                        "securityContext": {"runAsUser": 1234},
                        "readinessProbe": {
                            "httpGet": {"path": "/index.html", "port": 8080},
                            "periodSeconds": 1,
                        },
                    }
                ],
            },
        }
    )
    pod = real_kube.wait_for("v1", "Pod", name, real_namespace, condition="Ready", timeout=90)
    assert pod is not None
    assert pod["spec"]["nodeName"] == NODE_NAME
    ip = pod["status"]["podIP"]
    assert ip.startswith("10.245.0.")
    assert http_get(f"http://{ip}:8080/index.html") == f"{name} 1234"
    assert http_get(f"http://{ip}:8080/api.html") == "reachable"
    real_kube.delete("v1", "Pod", name, real_namespace)
    deadline = time.monotonic() + 60
    while real_kube.get("v1", "Pod", name, real_namespace) is not None:
        assert time.monotonic() < deadline, "the kubelet did not finish deleting the Pod"
        time.sleep(0.5)
