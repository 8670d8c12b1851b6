"""Airgap into a running cluster, on a real node: from the start of the upload to the Pod Running.

    .venv/bin/python bench/realnode_airgap.py --size-mb 200     # the run in BENCHMARKS.md
    .venv/bin/python bench/realnode_airgap.py --smoke           # 8 MiB: does it still run?

Starts its own cluster with a real node (`scripts/local-cluster up --real-node`; root), builds the
controller image (`make image`'s script), runs deploy/ on the node, then times two ways to get the
same kind of image (busybox plus random layers, `--size-mb` in all, unique per run so nothing is
cached) running on the node:

- **ours**: the image and a deployment repository are exported from a "connected" Distribution
  (not timed: that happens on the connected side), which is then stopped. Timed: `airgap import
  DIR --to-controller` streams the export into the controller, `repo add --airgap`, the
  controller syncs and applies the KubePkg, the node's containerd pulls the image by digest from
  the controller's registry through hosts.toml, the Pod is Running.
- **peer**: `skopeo copy` pushes the image into a Distribution on the host side of the node, the
  node pulls it by digest from there through hosts.toml, the Pod (created directly) is Running.

It also samples the controller process's resident memory (VmRSS, VmHWM from /proc) before and
after the import: an import streamed to disk keeps it flat, far below deploy/'s 512 MiB limit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gitops_kubepkg.kube import Kube  # noqa: E402
from tests.integration.cluster import (  # noqa: E402
    cached_test_image,
    load_image,
    set_mirror,
    start_cluster,
    stop_cluster,
)
from tests.integration.controllers import tenant_namespace  # noqa: E402
from tests.integration.registry_peers import Distribution  # noqa: E402
from tests.realnode.airgap import state_volume  # noqa: E402

NODE = "10.88.0.2"
HOST_IP = "10.88.0.1"
SYSTEM = "gitops-kubepkg-system"


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {result.stderr[-2000:]}")
    return result.stdout


def cli(*args: str) -> str:
    return run(sys.executable, "-m", "gitops_kubepkg", *args)


def wait(what: str, check: Any, timeout: float = 600.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def big_image(work: Path, size_mb: int) -> Path:
    """busybox plus random layers of `size_mb` MiB in all (at most 50 MiB each), as an OCI
    layout tagged `t`; random, so compression gains nothing and no cache holds any of it."""
    layout = work / "layout"
    run(
        "skopeo",
        "copy",
        "--quiet",
        f"oci-archive:{cached_test_image('busybox')}",
        f"oci:{layout}:t",
    )
    left, index = size_mb, 0
    while left > 0:
        part = min(50, left)
        data = work / f"data{index}"
        with open(data, "wb") as f:
            for _ in range(part):
                f.write(os.urandom(1 << 20))
        run("umoci", "insert", "--image", f"{layout}:t", str(data), f"/data/{index}")
        data.unlink()
        left, index = left - part, index + 1
    marker = work / "marker"
    marker.write_text(uuid.uuid4().hex + "\n")
    run("umoci", "insert", "--image", f"{layout}:t", str(marker), "/marker")
    return layout


def kubepkg(name: str, image: str, digest: str) -> dict[str, Any]:
    container = {"name": "p", "image": image, "command": ["sh", "-c", "exec sleep 3600"]}
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": name},
        "spec": {
            "version": "1.0.0",
            "images": {image: digest},
            "manifests": {
                f"{name}.default.deployment": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {"containers": [container]},
                        },
                    },
                }
            },
        },
    }


def pod_running(kube: Kube, namespace: str, selector: str) -> bool:
    for pod in kube.list("v1", "Pod", namespace, label_selector=selector):
        for status in pod.get("status", {}).get("containerStatuses") or []:
            if status.get("state", {}).get("running"):
                return True
    return False


def controller_pid(cluster: Path) -> int:
    """The controller's process on the node, found through containerd (its task list)."""
    socket = cluster / "node" / "containerd" / "containerd.sock"
    kube = Kube(str(cluster / "kubeconfig"))
    try:
        (pod,) = kube.list(
            "v1", "Pod", SYSTEM, label_selector="app.kubernetes.io/name=gitops-kubepkg"
        )
        container = pod["status"]["containerStatuses"][0]["containerID"].split("//", 1)[1]
    finally:
        kube.close()
    tasks = run("ctr", "--address", str(socket), "-n", "k8s.io", "tasks", "ls")
    for line in tasks.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container:
            return int(fields[1])
    raise SystemExit("the controller's task is not in containerd's list")


def memory(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) // 1024  # MiB
    return values


class RssSampler(threading.Thread):
    """VmRSS of one process every 0.2 s: the peak while it runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            try:
                self.peak = max(self.peak, memory(self.pid)["VmRSS"])
            except OSError:
                return

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def deploy(work: Path, cluster: Path, kube: Kube) -> None:
    out = work / "image"
    archive = run(sys.executable, str(ROOT / "scripts" / "build-image"), "--out", str(out))
    load_image(cluster, archive.strip().splitlines()[-1])
    state = cluster / "node" / "volumes" / "controller-state"
    state.mkdir(parents=True)
    kube.apply(state_volume(state, NODE))
    cli("install", "deploy", "--kubeconfig", str(cluster / "kubeconfig"))

    def available() -> bool:
        obj = kube.get("apps/v1", "Deployment", "gitops-kubepkg-controller", SYSTEM) or {}
        conditions = obj.get("status", {}).get("conditions") or []
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    wait("the controller Deployment Available", available)


def uploader_token(kube: Kube, path: Path, namespace: str) -> Path:
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "bench-uploader", "namespace": SYSTEM}})  # fmt: skip
    kube.apply({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bench-uploader", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "gitops-kubepkg-airgap-uploader"},
        "subjects": [{"kind": "ServiceAccount", "name": "bench-uploader", "namespace": SYSTEM}],
    })  # fmt: skip
    answer = kube.request(
        "POST", f"/api/v1/namespaces/{SYSTEM}/serviceaccounts/bench-uploader/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 3600}},
    )  # fmt: skip
    path.write_text(answer["status"]["token"])
    return path


def ours(work: Path, cluster: Path, kube: Kube, size_mb: int) -> dict[str, Any]:
    (work / "ours").mkdir()
    layout = big_image(work / "ours", size_mb)
    image = "docker.io/library/bench-ours:1.0"
    url = f"https://git.example.com/bench-{uuid.uuid4().hex[:8]}.git"
    connected = Distribution(work / "connected")
    try:
        ref = f"docker://{connected.host}/library/bench-ours:1.0"
        run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:t", ref)
        digest = run(
            "skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", ref
        ).strip()
        repo = work / "repo"
        (repo / "apps" / "bench").mkdir(parents=True)
        (repo / "apps" / "bench" / "kubepkg.json").write_text(
            json.dumps(kubepkg("bench-ours", image, digest))
        )
        git = ["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@b"]
        run("git", "init", "-q", "-b", "main", str(repo))
        run(*git, "add", "-A")
        run(*git, "commit", "-qm", "bench")
        cli("airgap", "export", "--out", str(work / "export"), "--repo", f"{url}={repo}",
            "--registry-mirror", f"docker.io={connected.url}")  # fmt: skip
    finally:
        connected.stop()
    export_bytes = sum(p.stat().st_size for p in (work / "export").rglob("*") if p.is_file())
    registry = kube.get("v1", "Service", "gitops-kubepkg-registry", SYSTEM)["spec"]["clusterIP"]
    upload = kube.get("v1", "Service", "gitops-kubepkg-upload", SYSTEM)["spec"]["clusterIP"]
    set_mirror(cluster, "docker.io", f"http://{registry}:5000")
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    tenant_namespace(kube, namespace)  # deploy/ runs the controller multi-tenant
    token = uploader_token(kube, work / "token", namespace)
    pid = controller_pid(cluster)
    before = memory(pid)
    sampler = RssSampler(pid)
    sampler.start()
    started = time.monotonic()
    cli("airgap", "import", str(work / "export"), "--to-controller", f"http://{upload}",
        "--token-file", str(token), "--namespace", namespace, "-o", "json")  # fmt: skip
    uploaded = time.monotonic()
    peak = sampler.stop()
    cli("repo", "add", "bench", "--url", url, "--type", "deployment", "--airgap", "-n", namespace,
        "--kubeconfig", str(cluster / "kubeconfig"))  # fmt: skip
    wait("our Pod Running", lambda: pod_running(kube, namespace, "app=bench-ours"))
    running = time.monotonic()
    return {
        "export_mib": export_bytes / (1 << 20),
        "upload_import_s": uploaded - started,
        "total_s": running - started,
        "rss_before_mib": before["VmRSS"],
        "rss_peak_mib": max(peak, memory(pid)["VmRSS"]),
        "hwm_after_mib": memory(pid)["VmHWM"],
    }


def peer(work: Path, cluster: Path, kube: Kube, size_mb: int) -> dict[str, Any]:
    (work / "peer").mkdir()
    layout = big_image(work / "peer", size_mb)
    registry = Distribution(work / "peer-registry", listen=HOST_IP)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        set_mirror(cluster, "docker.io", registry.url)
        ref = f"docker://{registry.host}/library/bench-peer:1.0"
        started = time.monotonic()
        run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:t", ref)
        digest = run(
            "skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", ref
        ).strip()
        pushed = time.monotonic()
        kube.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "bench-peer", "namespace": namespace,
                         "labels": {"app": "bench-peer"}},
            "spec": {"containers": [{"name": "p", "image": f"docker.io/library/bench-peer@{digest}",
                                     "command": ["sh", "-c", "exec sleep 3600"]}]},
        })  # fmt: skip
        wait("the peer Pod Running", lambda: pod_running(kube, namespace, "app=bench-peer"))
        running = time.monotonic()
    finally:
        registry.stop()
    return {"push_s": pushed - started, "total_s": running - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="8 MiB, to check it runs")
    args = parser.parse_args()
    size = 8 if args.smoke else args.size_mb
    with tempfile.TemporaryDirectory(prefix="bench-realnode-") as tmp:
        work = Path(tmp)
        cluster = work / "cluster"
        kubeconfig = start_cluster(cluster, real_node=True)
        kube = Kube(kubeconfig)
        try:
            load_image(cluster, cached_test_image("busybox"))
            deploy(work, cluster, kube)
            a = ours(work, cluster, kube, size)
            b = peer(work, cluster, kube, size)
        finally:
            kube.close()
            stop_cluster(cluster, real_node=True)
    print(f"image: busybox + {size} MiB of random layers; export {a['export_mib']:.0f} MiB\n")
    print("| path | upload+import / push | to every Pod Running |")
    print("| --- | ---: | ---: |")
    print(f"| ours: airgap import --to-controller, airgapped repo, pull from our registry "
          f"| {a['upload_import_s']:.1f} s | {a['total_s']:.1f} s |")  # fmt: skip
    print(f"| peer: skopeo copy into Distribution, pull from it | {b['push_s']:.1f} s "
          f"| {b['total_s']:.1f} s |")  # fmt: skip
    print(f"\ncontroller RSS: {a['rss_before_mib']} MiB before the upload, peak "
          f"{a['rss_peak_mib']} MiB during it (sampled every 0.2 s), VmHWM {a['hwm_after_mib']} MiB "
          "after; limit 512 MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
