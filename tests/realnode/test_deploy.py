"""deploy/ on the real node, from the image `make image` builds: the Pod really runs (uid 65532,
read-only root, the restricted Pod Security Standard enforced by its namespace), its probes pass,
it holds the Lease, its webhook and registry Services answer a Pod, its state is on the
PersistentVolumeClaim (a static local PV here), and it reconciles the example repositories,
served from the host over git://."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.images import REPO, dockerfile_declarations
from tests.integration.cluster import kubectl_path, set_mirror
from tests.integration.controllers import tenant_namespace
from tests.integration.git_servers import git_daemon
from tests.integration.registry_peers import Distribution
from tests.realnode.airgap import IMAGE, run, state_volume, unique_image, write_kubepkg
from tests.realnode.airgap import cli as gitops_cli
from tests.realnode.conftest import BUSYBOX, NODE_NAME, RealCluster

pytestmark = pytest.mark.realnode

SYSTEM = "gitops-kubepkg-system"
SELECTOR = "app.kubernetes.io/component=controller"
HOST_IP = "10.88.0.1"  # the host side of the node's veth: what Pods reach the host at


def wait(what: str, check: Callable[[], Any], timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"gitops-kubepkg {' '.join(args)}: {result.stderr}"
    return result


@dataclass(frozen=True)
class Deployed:
    cluster: RealCluster
    archive: str

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [kubectl_path(), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result

    def controller_pod(self, kube: Any) -> dict[str, Any]:
        pods = [
            p
            for p in kube.list("v1", "Pod", SYSTEM, label_selector=SELECTOR)
            if not p["metadata"].get("deletionTimestamp")
        ]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        pod: dict[str, Any] = pods[0]
        return pod


@pytest.fixture(scope="session")
def controller_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`make image`'s archive (scripts/build-image), built once per session."""
    out = tmp_path_factory.mktemp("image")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build-image"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    archive = result.stdout.strip().splitlines()[-1]
    assert Path(archive).is_file()
    return archive


def deployment_available(kube: Any) -> bool:
    deployment = kube.get("apps/v1", "Deployment", "gitops-kubepkg-controller", SYSTEM)
    conditions = (deployment or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="session")
def deployed(
    real_cluster: RealCluster, real_kube: Any, controller_image: str
) -> Iterator[Deployed]:
    real_cluster.load_image(controller_image)
    # A static local PV for the claim in deploy/pvc.yaml (no StorageClass here).
    state = real_cluster.directory / "node" / "volumes" / "controller-state"
    state.mkdir(parents=True)
    real_kube.apply(state_volume(state, NODE_NAME))
    cli("install", "deploy", "--kubeconfig", real_cluster.kubeconfig)
    wait("the controller Deployment Available", lambda: deployment_available(real_kube), 300)
    yield Deployed(real_cluster, controller_image)


def test_the_image_archive_declares_what_the_dockerfile_declares(controller_image: str) -> None:
    result = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci-archive:{controller_image}"],
        capture_output=True,
        text=True,
        check=True,
    )
    config = json.loads(result.stdout)["config"]
    docker = dockerfile_declarations()
    assert config["User"] == docker["user"]
    assert config["Entrypoint"] == docker["entrypoint"]
    assert config["Cmd"] == docker["cmd"]
    assert set(config["ExposedPorts"]) == docker["ports"]
    env = dict(item.split("=", 1) for item in config["Env"])
    for key in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "HOME"):  # runtime, not pip's
        assert env[key] == docker["env"][key], key


def test_deploy_runs_on_the_real_node(deployed: Deployed, real_kube: Any) -> None:
    pod = deployed.controller_pod(real_kube)
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["status"]["phase"] == "Running"
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] and status["restartCount"] == 0
    # What the process really runs as, and that its root file system refuses writes.
    probe = deployed.kubectl(
        "exec", "-n", SYSTEM, name, "--", "sh", "-c",
        "id -u; id -g; touch /usr/x 2>&1; echo rc=$?; touch /var/lib/gitops-kubepkg/x && echo ok",
    ).stdout.splitlines()  # fmt: skip
    assert probe[0:2] == ["65532", "65532"]
    assert "Read-only file system" in probe[2] and probe[3] != "rc=0"
    assert probe[-1] == "ok"
    # The namespace enforces the restricted standard, and the Pod was admitted under it.
    labels = real_kube.get("v1", "Namespace", SYSTEM)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # git is in the image (airgap import fetches bundles with it).
    git = deployed.kubectl("exec", "-n", SYSTEM, name, "--", "git", "--version").stdout
    assert git.startswith("git version")
    # It holds the Lease.
    leases = real_kube.list("coordination.k8s.io/v1", "Lease", SYSTEM)
    holders = [lease["spec"].get("holderIdentity", "") for lease in leases]
    assert any(name in holder for holder in holders), holders
    # The state is on the claim, bound to the static local PV.
    claim = real_kube.get("v1", "PersistentVolumeClaim", "gitops-kubepkg-state", SYSTEM)
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["volumeName"] == "gitops-kubepkg-state"


def test_services_answer_a_pod(deployed: Deployed, real_kube: Any) -> None:
    registry = real_kube.get("v1", "Service", "gitops-kubepkg-registry", SYSTEM)["spec"]
    webhook = real_kube.get("v1", "Service", "gitops-kubepkg-webhook", SYSTEM)["spec"]
    namespace = f"rn-{uuid.uuid4().hex[:8]}"
    real_kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    script = (
        f"wget -qO- http://{registry['clusterIP']}:5000/v2/; echo; echo registry=$?; "
        f"wget -qO- http://{webhook['clusterIP']}:80/hooks/nowhere/nothing 2>&1; echo webhook"
    )
    real_kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": namespace},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "client",
                        "image": BUSYBOX,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", script],
                    }
                ],
            },
        }
    )
    try:
        wait(
            "the client Pod to finish",
            lambda: (
                (real_kube.get("v1", "Pod", "client", namespace) or {})
                .get("status", {})
                .get("phase")
                in ("Succeeded", "Failed")
            ),
            120,
        )
        log = deployed.kubectl("logs", "-n", namespace, "client").stdout
        assert "{}" in log and "registry=0" in log, log
        # The webhook receiver answers (an unknown Repository is refused with an HTTP status).
        assert "HTTP/1.1 4" in log, log
    finally:
        real_kube.delete("v1", "Namespace", namespace)


def test_deploy_reconciles_the_examples(deployed: Deployed, real_kube: Any, tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, str(REPO / "examples/repos/make-repos.py"), str(tmp_path / "srv")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert made.stdout.count("file://") == 2
    namespace = f"rn-{uuid.uuid4().hex[:8]}"
    tenant_namespace(real_kube, namespace)  # deploy/ runs the controller multi-tenant
    with git_daemon(tmp_path / "srv", host=HOST_IP) as server:
        for name, kind in (("catalog", "catalog"), ("deployment", "deployment")):
            cli("repo", "add", name, "--url", server.repo_url(f"{name}.git"), "--type", kind,
                "-n", namespace, "--kubeconfig", deployed.cluster.kubeconfig)  # fmt: skip
        kubepkgs = wait(
            "the example KubePkgs applied by the in-cluster controller",
            lambda: [
                p
                for p in real_kube.list("octohelm.tech/v1alpha1", "KubePkg", namespace)
                if (p.get("status") or {}).get("lastAppliedVersion")
            ],
            240,
        )
    names = sorted(p["metadata"]["name"] for p in kubepkgs)
    assert names, kubepkgs
    revisions = real_kube.list("gitops.kubepkg.dev/v1alpha1", "PackageRevision", namespace)
    assert revisions, "the catalog was not rendered into PackageRevisions"


def service_ip(kube: Any, name: str) -> str:
    ip: str = kube.get("v1", "Service", name, SYSTEM)["spec"]["clusterIP"]
    return ip


def uploader_token(kube: Any, path: Path, namespace: str) -> Path:
    """A ServiceAccount bound to deploy/'s gitops-kubepkg-airgap-uploader in `namespace` (the
    tenant it uploads for), and its token."""
    kube.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "airgap-uploader", "namespace": SYSTEM}}
    )  # fmt: skip
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "airgap-uploader", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "gitops-kubepkg-airgap-uploader"},
            "subjects": [{"kind": "ServiceAccount", "name": "airgap-uploader",
                          "namespace": SYSTEM}],
        }
    )  # fmt: skip
    answer = kube.request(
        "POST",
        f"/api/v1/namespaces/{SYSTEM}/serviceaccounts/airgap-uploader/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 3600}},
    )  # fmt: skip
    path.write_text(answer["status"]["token"])
    return path


def test_airgap_export_streamed_into_the_controller_runs_by_digest(
    deployed: Deployed, real_kube: Any, tmp_path: Path
) -> None:
    """The issue's airgap end to end: an image in a connected Distribution and a deployment
    repository are exported; the connected registry is stopped; the export is streamed into the
    controller in the cluster; the airgapped Repository syncs; the node's containerd pulls the
    image by digest (the KubePkg names only its tag: the controller pins it from its store) from
    the controller's registry through hosts.toml and the Pod runs; a
    restart of the controller keeps the store and the mirror (the PVC)."""
    marker = uuid.uuid4().hex
    layout = unique_image(tmp_path, marker)
    url = f"https://git.example.com/airgap-{marker[:8]}.git"
    connected = Distribution(tmp_path / "connected")
    try:
        ref = f"docker://{connected.host}/library/airgap-probe:1.0"
        run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:t", ref)
        digest = run(
            "skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", ref
        ).strip()  # fmt: skip
        repo = tmp_path / "deploy-repo"
        run("git", "init", "-q", "-b", "main", str(repo))
        # Only the tag: the controller pins it to the digest its store holds after the import.
        write_kubepkg(
            repo / "apps" / "probe" / "kubepkg.json",
            "",
            ["sh", "-c", "cat /marker; exec sleep 3600"],
        )
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
        run(*git, "add", "-A")
        run(*git, "commit", "-qm", "probe")
        gitops_cli("airgap", "export", "--out", str(tmp_path / "export"), "--repo", f"{url}={repo}",
            "--registry-mirror", f"docker.io={connected.url}")  # fmt: skip
    finally:
        connected.stop()
    namespace = f"rn-{uuid.uuid4().hex[:8]}"
    tenant_namespace(real_kube, namespace)  # deploy/ runs the controller multi-tenant
    registry = f"{service_ip(real_kube, 'gitops-kubepkg-registry')}:5000"
    set_mirror(deployed.cluster.directory, "docker.io", f"http://{registry}")
    token = uploader_token(real_kube, tmp_path / "token", namespace)
    result = json.loads(
        gitops_cli(
            "airgap",
            "import",
            str(tmp_path / "export"),
            "--to-controller",
            f"http://{service_ip(real_kube, 'gitops-kubepkg-upload')}",
            "--namespace",
            namespace,
            "--token-file",
            str(token),
            "-o",
            "json",
        )
    )
    assert result["images"][IMAGE] == digest
    assert url in result["repositories"]
    cli("repo", "add", "airgapped", "--url", url, "--type", "deployment", "--airgap",
        "-n", namespace, "--kubeconfig", deployed.cluster.kubeconfig)  # fmt: skip

    def probe_running() -> dict[str, Any] | None:
        for pod in real_kube.list("v1", "Pod", namespace, label_selector="app=probe"):
            statuses = pod.get("status", {}).get("containerStatuses") or []
            if statuses and statuses[0].get("state", {}).get("running"):
                found: dict[str, Any] = pod
                return found
        return None

    pod = wait("the airgapped KubePkg's Pod running", probe_running, 240)
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["spec"]["containers"][0]["image"] == f"{IMAGE}@{digest}"
    kubepkg = real_kube.get("octohelm.tech/v1alpha1", "KubePkg", "airgap-probe", namespace)
    assert kubepkg["status"]["images"] == {IMAGE: digest}  # recorded from the store
    assert pod["status"]["containerStatuses"][0]["imageID"].endswith(digest)
    logs = deployed.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    assert logs.strip() == marker
    # A restart of the controller keeps the store and the mirror (the tenant's: deploy/ runs
    # the controller multi-tenant): they are on the claim.
    old = deployed.controller_pod(real_kube)["metadata"]["name"]
    real_kube.delete("v1", "Pod", old, SYSTEM)

    def new_controller_ready() -> bool:
        pods = [
            p
            for p in real_kube.list("v1", "Pod", SYSTEM, label_selector=SELECTOR)
            if not p["metadata"].get("deletionTimestamp") and p["metadata"]["name"] != old
        ]
        conditions = pods[0].get("status", {}).get("conditions") or [] if len(pods) == 1 else []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait("a new controller Pod ready", new_controller_ready, 240)
    manifest = urllib.request.Request(
        f"http://{registry}/v2/library/airgap-probe/manifests/{digest}", method="HEAD"
    )
    with urllib.request.urlopen(manifest, timeout=10) as answer:
        assert answer.status == 200
    new = deployed.controller_pod(real_kube)["metadata"]["name"]
    ls = deployed.kubectl(
        "exec", "-n", SYSTEM, new, "--", "sh", "-c", f"ls /var/lib/gitops-kubepkg/tenants/{namespace}/mirrors"
    ).stdout  # fmt: skip
    assert f"airgap-{marker[:8]}" in ls, ls
