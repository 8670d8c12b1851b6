"""Start and stop the real local Kubernetes control plane for integration tests.

Place in the flow: test infrastructure only. tests/conftest.py (and the fixtures in
tests/integration/test_local_cluster.py) call `start_cluster(dir)` for a kubeconfig path and
`stop_cluster(dir)` at teardown. Both shell out to `scripts/local-cluster up/down --dir DIR`,
which builds etcd, kube-apiserver, kube-controller-manager and kubectl from hack/k8s once,
caches them, and runs them on loopback with RBAC on.

Set GITOPS_KUBEPKG_TEST_KUBECONFIG to the kubeconfig of an existing cluster to use it instead:
then nothing is started or stopped here.

Pure standard library plus subprocess, so it works before any package is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCAL_CLUSTER = REPO / "scripts" / "local-cluster"
EXISTING_KUBECONFIG_ENV = "GITOPS_KUBEPKG_TEST_KUBECONFIG"


class ClusterError(RuntimeError):
    """The control plane could not be started or stopped; the message carries the script's
    own explanation (for example the tail of the kube-apiserver log)."""


def existing_kubeconfig() -> str | None:
    """The kubeconfig of a cluster the caller provides, if any."""
    path = os.environ.get(EXISTING_KUBECONFIG_ENV)
    if not path:
        return None
    if not os.path.isfile(path):
        raise ClusterError(f"{EXISTING_KUBECONFIG_ENV}={path} does not name a file")
    return os.path.abspath(path)


def _run_script(*args: str) -> str:
    """Run scripts/local-cluster, echo its progress to stderr, return its stdout.

    Progress is streamed (the first build takes many minutes) and its tail is kept for the
    error message.
    """
    command = [sys.executable, str(LOCAL_CLUSTER), *args]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    assert process.stdout is not None and process.stderr is not None
    tail: deque[str] = deque(maxlen=40)
    for line in process.stderr:
        sys.stderr.write(line)
        tail.append(line)
    stdout = process.stdout.read()
    if process.wait() != 0:
        raise ClusterError(
            f"`scripts/local-cluster {' '.join(args)}` exited {process.returncode}:\n"
            + "".join(tail)
        )
    return stdout


def start_cluster(directory: str | os.PathLike[str], *, real_node: bool = False) -> str:
    """Start a control plane whose state (certificates, etcd data, logs) lives in `directory`
    and return the path of its admin kubeconfig (client certificate in system:masters).
    With `real_node`, also a real node (kubelet, kube-proxy, containerd) whose Pods run.

    With GITOPS_KUBEPKG_TEST_KUBECONFIG set, return that instead and start nothing (never for
    a real node: that one is always started here, so its cleanup can be checked).
    """
    provided = None if real_node else existing_kubeconfig()
    if provided is not None:
        return provided
    extra = ("--real-node",) if real_node else ()
    output = _run_script("up", *extra, "--dir", os.fspath(directory))
    lines = output.strip().splitlines()
    if not lines or not os.path.isfile(lines[-1]):
        raise ClusterError(f"`scripts/local-cluster up` printed no kubeconfig path: {output!r}")
    return lines[-1]


def stop_cluster(directory: str | os.PathLike[str], *, real_node: bool = False) -> None:
    """Stop exactly the processes `start_cluster(directory)` started and remove their state
    (logs stay in `directory`). A no-op when GITOPS_KUBEPKG_TEST_KUBECONFIG is set."""
    if not real_node and existing_kubeconfig() is not None:
        return
    _run_script("down", "--dir", os.fspath(directory))


def load_image(directory: str | os.PathLike[str], archive: str | os.PathLike[str]) -> None:
    """Import an image archive into the real node's containerd (`local-cluster load-image`)."""
    _run_script("load-image", os.fspath(archive), "--dir", os.fspath(directory))


def set_mirror(directory: str | os.PathLike[str], registry: str, url: str) -> None:
    """Make the real node pull `registry`'s images from `url` (`local-cluster mirror`)."""
    _run_script("mirror", registry, url, "--dir", os.fspath(directory))


def cached_test_image(name: str) -> str:
    """The path of a cached test image archive (`local-cluster test-image NAME`)."""
    return _run_script("test-image", name).strip().splitlines()[-1]


def cluster_processes(directory: str | os.PathLike[str]) -> dict[str, int]:
    """Component name -> pid of the processes running for `directory` (empty if none)."""
    try:
        with open(os.path.join(directory, "state.json"), encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        return {}
    return {name: int(p["pid"]) for name, p in state.get("processes", {}).items()}


def process_running(pid: int) -> bool:
    """True if `pid` is a live process (a zombie waiting to be reaped does not count)."""
    if not os.path.isdir("/proc"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def kubectl_path() -> str:
    """kubectl from the local-cluster cache (or KUBEBUILDER_ASSETS), built if missing."""
    output = _run_script("which", "kubectl")
    return output.strip().splitlines()[-1]
