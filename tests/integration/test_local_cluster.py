"""The local control plane behaves like a real cluster where the project depends on it.

These tests pin what the other integration tests take for granted: the API server is ready,
RBAC refuses anonymous callers, kube-controller-manager finishes namespace deletion and
garbage-collects owned objects, and the project's KubePkg CRD accepts the seed example.
They talk to the cluster with kubectl from the local-cluster cache, never the Python client.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration import cluster

pytestmark = pytest.mark.integration

REPO = cluster.REPO
KUBEPKG_CRD = REPO / "deploy" / "crds" / "kubepkg.yaml"
SEED_KUBEPKG = REPO / "examples" / "kubepkg.seed.json"


@dataclass(frozen=True)
class ControlPlane:
    kubeconfig: str
    kubectl_binary: str

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def get_json(self, *args: str) -> dict[str, Any]:
        output = self.kubectl("get", *args, "-o", "json").stdout
        value: dict[str, Any] = json.loads(output)
        return value

    def exists(self, *args: str) -> bool:
        result = self.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
        if result.returncode != 0:
            raise AssertionError(f"kubectl get {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip() != ""

    def server(self) -> str:
        return self.kubectl(
            "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
        ).stdout.strip()


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of its own (not the session one from tests/conftest.py), so that its
    teardown can prove `stop_cluster` leaves no process behind. Module scope: it is stopped as
    soon as these tests finish instead of idling beside the session cluster."""
    directory = tmp_path_factory.mktemp("local-cluster")
    kubeconfig = cluster.start_cluster(directory)
    started = cluster.cluster_processes(directory)
    try:
        yield ControlPlane(kubeconfig=kubeconfig, kubectl_binary=cluster.kubectl_path())
    finally:
        cluster.stop_cluster(directory)
        # Logs stay in `directory` (pytest keeps recent temp dirs) for a post-mortem.
        left = {name: pid for name, pid in started.items() if cluster.process_running(pid)}
        assert not left, f"processes left running after stop_cluster: {left}"


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace, unique so the tests can also run against a shared cluster."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def configmap(name: str, namespace: str, **metadata: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, **metadata},
            "data": {"key": "value"},
        }
    )


def assert_contains(expected: Any, actual: Any, path: str = "spec") -> None:
    """Every field of `expected` is in `actual` with the same value (the server may add more)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} was dropped by the API server"
            assert_contains(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{path}: expected {expected!r}, got {actual!r}"
        )
        for index, (want, have) in enumerate(zip(expected, actual, strict=True)):
            assert_contains(want, have, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: expected {expected!r}, got {actual!r}"


def test_the_api_server_reports_ready(control_plane: ControlPlane) -> None:
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_an_anonymous_request_is_refused_by_rbac(control_plane: ControlPlane) -> None:
    # Anonymous authentication is on, so the caller becomes system:anonymous and RBAC
    # answers 403 (a 401 would mean anonymous requests are not authenticated at all).
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    url = f"{control_plane.server()}/api/v1/namespaces"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, context=insecure, timeout=10)
    assert refused.value.code == 403
    assert "system:anonymous" in refused.value.read().decode()


def test_deleting_a_namespace_completes(control_plane: ControlPlane) -> None:
    name = f"doomed-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    # Content makes the namespace controller do real work before it removes the finalizer.
    control_plane.kubectl("apply", "-f", "-", stdin=configmap("content", name))
    control_plane.kubectl("delete", "namespace", name, "--wait=false")
    wait_until(
        lambda: not control_plane.exists("namespace", name),
        timeout=60,
        what=f"deletion of namespace {name}",
    )


def test_a_dependent_is_garbage_collected_after_its_owner_is_deleted(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("apply", "-f", "-", stdin=configmap("owner", namespace))
    owner = control_plane.get_json("configmap", "owner", "-n", namespace)
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    control_plane.kubectl(
        "apply", "-f", "-", stdin=configmap("dependent", namespace, ownerReferences=[reference])
    )
    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace, "--wait=true")
    # The garbage collector first has to sync its graph after the controller manager starts.
    wait_until(
        lambda: not control_plane.exists("configmap", "dependent", "-n", namespace),
        timeout=90,
        what="garbage collection of the dependent ConfigMap",
    )


def test_the_kubepkg_crd_accepts_the_seed_example(
    control_plane: ControlPlane, namespace: str
) -> None:
    if not KUBEPKG_CRD.is_file():
        pytest.skip(f"{KUBEPKG_CRD.relative_to(REPO)} does not exist yet")
    if not SEED_KUBEPKG.is_file():
        pytest.skip(f"{SEED_KUBEPKG.relative_to(REPO)} does not exist yet")
    control_plane.kubectl(
        "apply", "--server-side", "--field-manager=gitops-kubepkg-tests", "-f", str(KUBEPKG_CRD)
    )
    control_plane.kubectl(
        "wait", "--for=condition=Established", "-f", str(KUBEPKG_CRD), "--timeout=60s"
    )

    seed = json.loads(Path(SEED_KUBEPKG).read_text(encoding="utf-8"))
    control_plane.kubectl(
        "apply", "--server-side", "--field-manager=gitops-kubepkg-tests",
        "-n", namespace, "-f", str(SEED_KUBEPKG),
    )  # fmt: skip
    live = control_plane.get_json(
        "kubepkgs.octohelm.tech", seed["metadata"]["name"], "-n", namespace
    )
    assert live["apiVersion"] == seed["apiVersion"]
    assert live["kind"] == "KubePkg"
    # Nothing in the seed's spec may be pruned or rewritten by the CRD's schema.
    assert_contains(seed["spec"], live["spec"])


def test_a_deployment_becomes_available_on_the_fake_node(
    control_plane: ControlPlane, namespace: str
) -> None:
    # kube-scheduler binds the Pods to the kwok Node and kwok marks them Running and Ready,
    # so the Deployment controller counts them available like on a real cluster.
    replicas = 2
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(deployment))

    def available() -> bool:
        status = control_plane.get_json("deployment", "web", "-n", namespace).get("status", {})
        return status.get("availableReplicas") == replicas

    wait_until(available, timeout=120, what="Deployment web becoming Available")
    pods = control_plane.get_json("pods", "-n", namespace, "-l", "app=web")["items"]
    assert len(pods) == replicas
    for pod in pods:
        assert pod["spec"]["nodeName"], f"pod {pod['metadata']['name']} was not scheduled"
        assert pod["status"]["phase"] == "Running"
