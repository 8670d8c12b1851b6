"""Real ``gitops-kubepkg controller`` processes for tests, and a ServiceAccount's kubeconfig.

Place in the flow: test infrastructure. ``RunningController`` starts the CLI as a subprocess
(its own process group, its log in a file), probes ``/healthz``, ``/readyz`` and ``/metrics``, and
is always stopped (SIGTERM, then SIGKILL) by its context manager. ``service_account_kubeconfig``
asks the TokenRequest API for a token of a ServiceAccount and writes a kubeconfig that
authenticates with it, so a test runs the controller with exactly the deploy/ RBAC;
``tenant_namespace`` makes a namespace a tenant as deploy/tenant/tenant.yaml says.
``flux_app`` is one app of Flux's benchmark shape (the request budget test and bench/ use it), and
``api_requests`` reads a controller's API request counter from its /metrics.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from gitops_kubepkg.kube import Kube
from tests.integration.git_servers import free_port

REPO = Path(__file__).resolve().parents[2]


def edit_config_map_by_hand(kube: Kube, namespace: str, name: str, data: dict[str, str]) -> None:
    """Change a ConfigMap's data through another field manager, as ``kubectl edit`` does."""
    kube.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/configmaps/{name}",
        query={"fieldManager": "kubectl-edit"},
        body={"data": data},
        content_type="application/merge-patch+json",
    )


def flux_app(name: str, namespace: str) -> dict[str, Any]:
    """A KubePkg of Flux's benchmark shape: a Deployment scaled to 0, a ServiceAccount, a Service
    and a ConfigMap."""
    labels = {"app": name}
    objects = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": name,
                        "containers": [
                            {"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.5.0"}
                        ],
                    },
                },
            },
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 9898}]},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}},
    ]
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "version": "1.0.0",
            "manifests": {f"{name}.{o['kind'].lower()}": o for o in objects},
        },
    }


def wait_until(check: Callable[[], Any], timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


class RunningController:
    """One controller process; ``with`` stops it however the test ends."""

    def __init__(
        self, kubeconfig: str, state_dir: Path, *args: str, identity: str = "", log: Path
    ) -> None:
        self.identity = identity or f"test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.log_path = log
        command = [
            sys.executable,
            "-m",
            "gitops_kubepkg",
            "controller",
            "--kubeconfig",
            kubeconfig,
            "--state-dir",
            str(state_dir),
            "--monitoring-listen",
            f"127.0.0.1:{self.port}",
            "--identity",
            self.identity,
            *args,
        ]
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )

    def __enter__(self) -> RunningController:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def get(self, path: str) -> tuple[int, str]:
        """(status, body) of GET ``path`` on the monitoring port; (0, "") when not listening."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()
        except OSError:
            return 0, ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api_requests(self) -> int:
        """Requests it sent the API server so far (``gitops_kubepkg_api_requests_total{verb="all"}``)."""
        status, body = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}"
        for line in body.splitlines():
            if line.startswith('gitops_kubepkg_api_requests_total{verb="all"}'):
                return int(float(line.split()[-1]))
        raise AssertionError("no gitops_kubepkg_api_requests_total in /metrics")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 30 s; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def service_account_kubeconfig(
    kube: Kube, admin_kubeconfig: str, path: Path, namespace: str, name: str
) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` (TokenRequest API)."""
    answer = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    token = answer["status"]["token"]
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    ca = cluster.get("certificate-authority-data")
    if ca is None:
        ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": cluster["server"], "certificate-authority-data": ca},
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def tenant_namespace(admin: Kube, name: str) -> None:
    """What an operator does for a tenant (docs/security.md): its namespace, and
    deploy/tenant/tenant.yaml's ServiceAccount bound to the tenant role in it."""
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    text = (REPO / "deploy/tenant/tenant.yaml").read_text().replace("TENANT", name)
    for doc in yaml.safe_load_all(text):
        admin.apply(doc)


def service_account_token(kube: Kube, namespace: str, name: str) -> str:
    """A token of ServiceAccount ``namespace/name`` (created when missing), from the
    TokenRequest API: what a user pastes into the dashboard's login."""
    kube.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": namespace}}
    )  # fmt: skip
    answer = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 3600}},
    )  # fmt: skip
    return str(answer["status"]["token"])
