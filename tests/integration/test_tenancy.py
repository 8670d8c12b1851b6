"""Tenancy on the local control plane, with deploy/'s RBAC: the controller runs as its own
ServiceAccount (multi-tenant: it may only impersonate), each tenant namespace has the
ServiceAccount deploy/tenant/tenant.yaml makes, and the tenant is a user who may only write
KubePkgs and Repositories in its own namespace. Every escape issue 12 lists is refused with a
clear status, and nothing is written.

Real kube-apiserver with RBAC on, real git repositories (smart HTTP with basic auth on loopback),
the real reconciler and syncer in this process, the real CLI for the flags."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.conventions import Outcome
from gitops_kubepkg.errors import Forbidden
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from gitops_kubepkg.tenancy import Tenancy
from tests.integration.controllers import service_account_kubeconfig, tenant_namespace
from tests.integration.git_servers import Server, http_server

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SYSTEM = "gitops-kubepkg-system"
CONTROLLER = "gitops-kubepkg-controller"
APPLIER = "gitops-kubepkg"
TENANCY = Tenancy(multi_tenant=True, default_service_account=APPLIER, local_sources=False)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def installed(kube: Kube, kubeconfig: str) -> None:
    out = cli("install", "deploy", "--image", "registry.test/gitops-kubepkg:test",
              "--kubeconfig", kubeconfig)  # fmt: skip
    assert out.returncode == 0, out.stderr


@dataclass
class Cluster:
    admin: Kube
    controller: Kube
    """The controller's own ServiceAccount (deploy/rbac.yaml)."""
    tenant: Kube
    """A user who may write KubePkgs and Repositories in ``a`` only."""
    a: str
    b: str
    state: Path

    def reconcile(self, namespace: str, name: str) -> Outcome:
        reconciler = KubePkgReconciler(self.controller, tenancy=TENANCY, events=False)
        try:
            outcome, _ = reconciler.reconcile(namespace, name)
        finally:
            reconciler.applier.close()
        return outcome

    def syncer(self, tenancy: Tenancy = TENANCY) -> Syncer:
        return Syncer(self.controller, self.state, tenancy=tenancy)

    def delete_kubepkg(self, namespace: str, name: str) -> None:
        self.admin.delete(API_VERSION, KIND, name, namespace)
        self.reconcile(namespace, name)  # the finalizer, as the controller runs it


def tenant_user(admin: Kube, namespace: str) -> None:
    """ServiceAccount ``alice``: may write KubePkgs and Repositories in ``namespace``, no more."""
    admin.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "alice", "namespace": namespace}})  # fmt: skip
    rbac = "rbac.authorization.k8s.io/v1"
    admin.apply(
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": {"name": "tenant", "namespace": namespace},
            "rules": [
                {"apiGroups": ["octohelm.tech"], "resources": ["kubepkgs"], "verbs": ["*"]},
                {
                    "apiGroups": ["gitops.kubepkg.dev"],
                    "resources": ["repositories"],
                    "verbs": ["*"],
                },
            ],
        }
    )
    admin.apply(
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": {"name": "tenant", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
            "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": namespace}],
        }
    )


@pytest.fixture
def cluster(
    kube: Kube, kubeconfig: str, installed: None, namespace: str, tmp_path: Path
) -> Iterator[Cluster]:
    b = f"t-{uuid.uuid4().hex[:10]}"
    tenant_namespace(kube, namespace)
    tenant_namespace(kube, b)
    tenant_user(kube, namespace)
    controller = Kube(str(service_account_kubeconfig(
        kube, kubeconfig, tmp_path / "controller.kubeconfig", SYSTEM, CONTROLLER)))  # fmt: skip
    tenant = Kube(str(service_account_kubeconfig(
        kube, kubeconfig, tmp_path / "alice.kubeconfig", namespace, "alice")))  # fmt: skip
    c = Cluster(kube, controller, tenant, namespace, b, tmp_path / "state")
    try:
        yield c
    finally:
        for ns in (namespace, b):
            for pkg in kube.list(API_VERSION, KIND, ns):
                c.delete_kubepkg(ns, pkg["metadata"]["name"])
        kube.delete("v1", "Namespace", b)
        controller.close()
        tenant.close()


def kubepkg(name: str, namespace: str, *manifests: dict[str, Any], **annotations: str) -> Any:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "version": "1.0.0",
            "manifests": {f"m{i}": m for i, m in enumerate(manifests)},
        },
    }


def config_map(name: str, namespace: str = "", **data: str) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def stalled(c: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The KubePkg's Stalled condition (it must have one)."""
    obj = c.admin.get(API_VERSION, KIND, name, namespace)
    assert obj is not None
    conditions = {x["type"]: x for x in obj["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Stalled"]["status"] == "True", conditions
    return dict(conditions["Stalled"])


def repository_ready(c: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj = c.admin.get(GITOPS_API_VERSION, "Repository", name, namespace)
    assert obj is not None
    (ready,) = [x for x in obj["status"]["conditions"] if x["type"] == "Ready"]
    return dict(ready)


def test_a_kubepkg_applies_as_its_namespaces_service_account_and_nothing_more(
    cluster: Cluster,
) -> None:
    c = cluster
    c.tenant.apply(kubepkg("web", c.a, config_map("web", mode="a")))
    assert c.reconcile(c.a, "web").kind == "ready"
    live = c.admin.get("v1", "ConfigMap", "web", c.a)
    assert live is not None and live["data"] == {"mode": "a"}

    # A privileged hostPID Pod aimed at kube-system: render keeps it in the KubePkg's namespace,
    # and there the tenant's ServiceAccount may not create Pods at all.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": "kube-system"},
        "spec": {
            "hostPID": True,
            "containers": [
                {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}
            ],
        },
    }
    c.tenant.apply(kubepkg("root", c.a, pod, config_map("root-settings")))
    outcome = c.reconcile(c.a, "root")
    assert outcome.kind == "stalled"
    condition = stalled(c, c.a, "root")
    assert f"system:serviceaccount:{c.a}:{APPLIER}" in condition["message"]
    assert "forbidden" in condition["message"] and "pods" in condition["message"]
    assert c.admin.get("v1", "Pod", "root", "kube-system") is None
    assert c.admin.get("v1", "Pod", "root", c.a) is None
    assert c.admin.get("v1", "ConfigMap", "root-settings", c.a) is None, "nothing half-applied"

    # A ClusterRoleBinding to cluster-admin: cluster-scoped, and the policy grants a nothing.
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"escalate-{c.a}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": APPLIER, "namespace": c.a}],
    }  # fmt: skip
    c.tenant.apply(kubepkg("escalate", c.a, binding))
    assert c.reconcile(c.a, "escalate").reason == "ClusterScopedRefused"
    condition = stalled(c, c.a, "escalate")
    assert f"ClusterRoleBinding escalate-{c.a}" in condition["message"]
    assert "grants it nothing beyond its namespace" in condition["message"]
    crb = c.admin.get("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", f"escalate-{c.a}")
    assert crb is None

    # Naming a ServiceAccount of its namespace with more rights is the namespace's own business;
    # one that does not exist has none.
    c.tenant.apply(kubepkg("other", c.a, config_map("other"),
                           **{"gitops.kubepkg.dev/service-account": "nobody"}))  # fmt: skip
    assert c.reconcile(c.a, "other").kind == "stalled"
    assert f"system:serviceaccount:{c.a}:nobody" in stalled(c, c.a, "other")["message"]
    assert c.admin.get("v1", "ConfigMap", "other", c.a) is None

    # The controller itself may not write package contents: only through a ServiceAccount.
    with pytest.raises(Forbidden):
        c.controller.apply(config_map("direct", c.a))


def test_nothing_another_kubepkg_or_manager_owns_is_taken_over_or_deleted(
    cluster: Cluster,
) -> None:
    c = cluster
    c.admin.apply(kubepkg("b-app", c.b, config_map("shared", mode="b")))
    assert c.reconcile(c.b, "b-app").kind == "ready"
    c.admin.request(
        "POST",
        f"/api/v1/namespaces/{c.a}/configmaps",
        query={"fieldManager": "kubectl-create"},
        body=config_map("handmade", c.a, mode="by hand"),
    )

    # Another manager's object in the KubePkg's own namespace.
    c.tenant.apply(kubepkg("grab", c.a, config_map("handmade", mode="mine")))
    assert c.reconcile(c.a, "grab").reason == "OwnedElsewhere"
    message = stalled(c, c.a, "grab")["message"]
    assert f"ConfigMap {c.a}/handmade exists and is not this package's" in message
    assert "kubectl-create" in message and "not taken over" in message
    handmade = c.admin.get("v1", "ConfigMap", "handmade", c.a)
    assert handmade is not None and handmade["data"] == {"mode": "by hand"}

    # Another KubePkg's object in the same namespace; deleting the grabber leaves it.
    c.tenant.apply(kubepkg("one", c.a, config_map("x", owner="one")))
    assert c.reconcile(c.a, "one").kind == "ready"
    c.tenant.apply(kubepkg("two", c.a, config_map("x", owner="two")))
    assert c.reconcile(c.a, "two").reason == "OwnedElsewhere"
    assert f"ConfigMap {c.a}/x belongs to KubePkg {c.a}/one" in stalled(c, c.a, "two")["message"]
    c.delete_kubepkg(c.a, "two")
    assert c.admin.get(API_VERSION, KIND, "two", c.a) is None
    x = c.admin.get("v1", "ConfigMap", "x", c.a)
    assert x is not None and x["data"] == {"owner": "one"}

    # Aimed at team b's ConfigMap: it lands in a (upstream forces the KubePkg's namespace), and
    # team b's object is untouched, also after the KubePkg is deleted.
    c.tenant.apply(kubepkg("aim", c.a, config_map("shared", c.b, mode="a")))
    assert c.reconcile(c.a, "aim").kind == "ready"
    c.delete_kubepkg(c.a, "aim")
    shared = c.admin.get("v1", "ConfigMap", "shared", c.b)
    assert shared is not None and shared["data"] == {"mode": "b"}
    assert shared["metadata"]["labels"]["gitops.kubepkg.dev/package-namespace"] == c.b


def package_file(name: str, namespace: str = "", mode: str = "x") -> bytes:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    doc = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": meta,
        "spec": {"version": "1.0.0", "manifests": {"cm": config_map(name, mode=mode)}},
    }
    return json.dumps(doc).encode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "srv"
    root.mkdir()
    with http_server(root, user="bob", password="team-b-secret") as server:
        yield server


def secret(c: Cluster, namespace: str, name: str, **data: str) -> None:
    c.admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )


def repository(c: Cluster, who: Kube, namespace: str, name: str, url: str, **spec: Any) -> None:
    who.apply(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "Repository",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"url": url, "type": "deployment", **spec},
        }
    )


def test_a_deployment_repository_writes_only_its_namespace_and_overwrites_nobody(
    cluster: Cluster, served: Server
) -> None:
    c = cluster
    secret(c, c.b, "git", username="bob", password="team-b-secret", hosts="127.0.0.1")
    b_repo = git.init_bare(served.root / "b.git")
    b_repo.commit_files("main", {"b-app/kubepkg.json": package_file("b-app", mode="b")}, "b")
    repository(c, c.admin, c.b, "deploy", served.repo_url("b.git"), secretRef={"name": "git"})
    assert (c.syncer().sync(c.b, "deploy") or pytest.fail()).ready
    b_app = c.admin.get(API_VERSION, KIND, "b-app", c.b)
    assert b_app is not None

    secret(c, c.a, "git", username="bob", password="team-b-secret", hosts="127.0.0.1")
    a_repo = git.init_bare(served.root / "a.git")
    a_repo.commit_files(
        "main",
        {
            "app/kubepkg.json": package_file("app"),
            "evil/kubepkg.json": package_file("b-app", c.b, mode="overwritten by a"),
            "steal/kubepkg.json": package_file("handmade"),
        },
        "a",
    )
    c.tenant.apply(kubepkg("handmade", c.a, config_map("handmade")))
    repository(c, c.tenant, c.a, "deploy", served.repo_url("a.git"), secretRef={"name": "git"})
    outcome = c.syncer().sync(c.a, "deploy")
    assert outcome is not None and not outcome.ready and outcome.reason == "InvalidKubePkgs"
    ready = repository_ready(c, c.a, "deploy")
    assert ready["status"] == "False" and ready["reason"] == "InvalidKubePkgs"
    assert (
        f"evil/kubepkg.json: metadata.namespace: KubePkg {c.b}/b-app: a Repository of "
        f"namespace {c.a} may only write KubePkgs into {c.a}"
    ) in ready["message"]
    assert f"steal/kubepkg.json: metadata.namespace: KubePkg {c.a}/handmade exists and was " \
        "not written by a Repository" in ready["message"]  # fmt: skip
    assert "the other KubePkgs synced" in ready["message"]
    assert c.admin.get(API_VERSION, KIND, "app", c.a) is not None, "the good file still syncs"
    after = c.admin.get(API_VERSION, KIND, "b-app", c.b)
    assert after is not None and after["spec"] == b_app["spec"]
    assert after["metadata"]["resourceVersion"] == b_app["metadata"]["resourceVersion"]
    hand = c.admin.get(API_VERSION, KIND, "handmade", c.a)
    assert hand is not None and "gitops.kubepkg.dev/repository" not in hand["metadata"].get(
        "annotations", {}
    )

    # A second Repository of the same namespace naming the first one's KubePkg.
    other = git.init_bare(served.root / "other.git")
    other.commit_files("main", {"app/kubepkg.json": package_file("app", mode="other")}, "o")
    repository(c, c.tenant, c.a, "other", served.repo_url("other.git"),
               secretRef={"name": "git"})  # fmt: skip
    assert (c.syncer().sync(c.a, "other") or pytest.fail()).reason == "InvalidKubePkgs"
    assert (
        f"KubePkg {c.a}/app belongs to Repository {c.a}/deploy; not overwritten"
        in (repository_ready(c, c.a, "other")["message"])
    )


def test_sources_read_only_what_the_tenant_may_read_and_send_secrets_only_where_named(
    cluster: Cluster, served: Server
) -> None:
    c = cluster
    # Team b's private repository, synced for team b with its credentials.
    secret(c, c.b, "git", username="bob", password="team-b-secret", hosts="127.0.0.1")
    b_repo = git.init_bare(served.root / "b.git")
    b_repo.commit_files("main", {"private/kubepkg.json": package_file("private")}, "b")
    url = served.repo_url("b.git")
    repository(c, c.admin, c.b, "deploy", url, secretRef={"name": "git"})
    syncer = c.syncer()
    assert (syncer.sync(c.b, "deploy") or pytest.fail()).ready

    # file:// to the controller's own mirror of it, and a local path.
    mirrors = sorted((c.state / "tenants" / c.b / "mirrors").iterdir())
    assert len(mirrors) == 1, "team b's mirror is team b's"
    for name, local in [("by-file", f"file://{mirrors[0]}"), ("by-path", str(mirrors[0]))]:
        repository(c, c.tenant, c.a, name, local)
        outcome = syncer.sync(c.a, name)
        assert outcome is not None and outcome.reason == "LocalSourceRefused"
        ready = repository_ready(c, c.a, name)
        assert ready["status"] == "False"
        assert "does not allow local sources (--local-sources)" in ready["message"]

    # airgap: true on team b's URL: a's mirrors are a's, and no import made one.
    repository(c, c.tenant, c.a, "airgapped", url, airgap=True)
    outcome = syncer.sync(c.a, "airgapped")
    assert outcome is not None and not outcome.ready and outcome.reason == "FetchFailed"
    assert "never imported" in repository_ready(c, c.a, "airgapped")["message"]

    # The same URL without credentials: the server refuses a (no shared mirror answers for it).
    repository(c, c.tenant, c.a, "anonymous", url)
    assert (syncer.sync(c.a, "anonymous") or pytest.fail()).reason == "AuthenticationFailed"
    assert c.admin.list(API_VERSION, KIND, c.a) == [], "nothing of team b's landed in a"

    # A Secret of a's that the tenant cannot read, sent to a server of the tenant's.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        evil = f"http://localhost:{listener.getsockname()[1]}/x.git"
        secret(c, c.a, "no-hosts", username="ops", password="ops-secret")
        secret(c, c.a, "pinned", username="ops", password="ops-secret", hosts="git.example")
        for name, ref in [("exfil", "no-hosts"), ("exfil-pinned", "pinned")]:
            repository(c, c.tenant, c.a, name, evil, secretRef={"name": ref})
            outcome = syncer.sync(c.a, name)
            assert outcome is not None and outcome.reason == "AuthenticationFailed"
        assert (
            "has no 'hosts' key naming the hosts its credentials may be sent to"
            in (repository_ready(c, c.a, "exfil")["message"])
        )
        assert (
            "may only be sent to git.example, not to localhost"
            in (repository_ready(c, c.a, "exfil-pinned")["message"])
        )
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing was sent: not even a connection


def test_the_controller_command_runs_multi_tenant(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    c.tenant.apply(kubepkg("web", c.a, config_map("web")))
    c.tenant.apply(kubepkg("priority", c.a, {"apiVersion": "scheduling.k8s.io/v1",
                                        "kind": "PriorityClass",
                                        "metadata": {"name": f"p-{c.a}"}, "value": 10}))  # fmt: skip
    controller = tmp_path / "controller.kubeconfig"  # written by the fixture
    policy = tmp_path / "policy.yaml"
    policy.write_text("grants: [{namespace: somebody-else, kinds: [PriorityClass]}]\n")
    args = ["controller", "--once", "--no-repositories", "-n", c.a, "--state-dir",
            str(tmp_path / "s"), "--kubeconfig", str(controller), "-o", "json",
            "--multi-tenant", "--default-service-account", APPLIER]  # fmt: skip
    out = cli(*args, "--tenancy-policy", str(policy))
    assert out.returncode == 1, out.stderr
    results = {r["kubepkg"]: r for r in json.loads(out.stdout)}
    assert results[f"{c.a}/web"]["result"] == "ready"
    assert results[f"{c.a}/priority"]["reason"] == "ClusterScopedRefused"
    assert c.admin.get("scheduling.k8s.io/v1", "PriorityClass", f"p-{c.a}") is None

    policy.write_text("grants: [{namespace: a, kinds: PriorityClass}]\n")
    bad = cli(*args, "--tenancy-policy", str(policy))
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].endswith("grants[0].kinds: want a list of names"), (
        bad.stderr
    )
    assert "Traceback" not in bad.stderr


def test_upgrades_sends_the_catalog_password_only_to_the_catalog_named(tmp_path: Path) -> None:
    """A repository author records a catalog URL of theirs in a deployed file; ``upgrades`` with
    the operator's catalog password must not send it there (no cluster needed)."""
    import os
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        evil = f"http://127.0.0.1:{server.server_address[1]}/catalog.git"
        doc = json.loads(package_file("web"))
        doc["metadata"]["annotations"] = {
            "gitops.kubepkg.dev/catalog-url": evil,
            "gitops.kubepkg.dev/catalog-tag": "web/v1.0.0",
            "gitops.kubepkg.dev/catalog-commit": "a" * 40,
        }
        deploy = git.init_bare(tmp_path / "deploy.git")
        deploy.commit_files("main", {"web/kubepkg.json": json.dumps(doc).encode()}, "web")
        out = subprocess.run(
            [sys.executable, "-m", "gitops_kubepkg", "upgrades", f"file://{tmp_path}/deploy.git",
             "--catalog-username", "ops", "-o", "json"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
            env={**os.environ, "GITOPS_KUBEPKG_CATALOG_PASSWORD": "operator-catalog-password"},
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert "catalog credentials go only to the catalog named with --catalog" in out.stderr
    assert seen, "the recorded catalog was asked (anonymously)"
    assert all(not header for header in seen), seen
    assert "operator-catalog-password" not in out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["problems"] and "web/kubepkg.json" in report["problems"][0]


def test_an_airgap_import_for_one_namespace_serves_only_its_repositories(
    cluster: Cluster, tmp_path: Path
) -> None:
    c = cluster
    source = git.init_bare(tmp_path / "src.git")
    source.commit_files("main", {"app/kubepkg.json": package_file("app")}, "app")
    url = "https://git.example.com/team-a/deploy.git"
    out = cli("airgap", "export", "--out", str(tmp_path / "out"), "--repo",
              f"{url}={tmp_path / 'src.git'}")  # fmt: skip
    assert out.returncode == 0, out.stderr
    imported = cli("airgap", "import", str(tmp_path / "out"), "--store", str(tmp_path / "store"),
                   "--state-dir", str(c.state), "--namespace", c.a)  # fmt: skip
    assert imported.returncode == 0, imported.stderr

    syncer = c.syncer()
    for namespace, who in ((c.a, c.tenant), (c.b, c.admin)):
        repository(c, who, namespace, "deploy", url, airgap=True)
        syncer.sync(namespace, "deploy")
    assert repository_ready(c, c.a, "deploy")["status"] == "True"
    assert c.admin.get(API_VERSION, KIND, "app", c.a) is not None
    ready_b = repository_ready(c, c.b, "deploy")
    assert ready_b["status"] == "False" and "never imported" in ready_b["message"]
    assert c.admin.list(API_VERSION, KIND, c.b) == []

    bad = cli("airgap", "import", str(tmp_path / "out"), "--store", str(tmp_path / "store"),
              "--state-dir", str(c.state), "--namespace", "../..")  # fmt: skip
    assert bad.returncode == 1 and "not a Kubernetes namespace name" in bad.stderr
