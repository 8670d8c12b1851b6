"""The dashboard's JSON API (gitops_kubepkg/dashboard/API.md) against the local control plane.

The controller runs as a user runs it (``controller --dashboard-listen``, a subprocess) over a
catalog and a deployment repository served by a real git smart-HTTP server with basic auth (the
credentials in the Repositories' Secret). Viewers are ServiceAccounts with tokens from the
TokenRequest API and RBAC Roles, so the real kube-apiserver answers every TokenReview and
SubjectAccessReview. What the API says is compared with what the cluster holds and with what the
CLI prints (``trace -o json``); a git push must reach the live stream and the overview without a
restart; actions need RBAC and do what ``reconcile``/``promote``/``approve`` do. The slow-client
test runs the server in this process (``DashboardServer``, as ``--dashboard-listen`` starts it)
to drive its topics directly.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kubepkg import git
from gitops_kubepkg.airgap.trust import ImportRecord
from gitops_kubepkg.dashboard.server import DashboardServer, Settings
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.objects import ANNOTATION_REQUESTED_AT
from gitops_kubepkg.registry.blobstore import BlobStore
from gitops_kubepkg.registry.digest import digest_bytes
from gitops_kubepkg.registry.repositories import Repositories
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from gitops_kubepkg.tenancy import Tenancy
from tests.integration.controllers import (
    REPO,
    RunningController,
    service_account_kubeconfig,
    service_account_token,
    tenant_namespace,
    wait_until,
)
from tests.integration.git_servers import free_port, http_server
from tests.integration.test_controller_upgrades import deploy, encode, publish

pytestmark = pytest.mark.integration

GIT_USER, GIT_PASSWORD = "deployer", "s3cret-git-password"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
IMAGE = "docker.io/library/nginx:alpine"


def web(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web"},
        "spec": {
            "version": version,
            "images": {},
            "manifests": {
                "web.configmap": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "web"},
                    "data": {"version": version},
                },
                # kwok (the control plane's simulated kubelet) runs its Pod: never pulled.
                "web.deployment": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web"},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "image": IMAGE}]},
                        },
                    },
                },
            },
        },
    }


def repository(namespace: str, name: str, url: str, type_: str) -> dict[str, Any]:
    return {
        "apiVersion": GITOPS_API_VERSION,
        "kind": "Repository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"url": url, "type": type_, "interval": "2s", "secretRef": {"name": "git"}},
    }


def role(kube: Kube, namespace: str, name: str, verbs: list[str], account: str) -> None:
    """A Role on what the dashboard shows (``verbs`` on gitops objects, get/list on the rest)
    bound to ServiceAccount ``account`` of ``namespace``."""
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [
                {"apiGroups": ["gitops.kubepkg.dev"],
                 "resources": ["repositories", "packagerevisions"], "verbs": verbs},
                {"apiGroups": ["octohelm.tech"], "resources": ["kubepkgs"], "verbs": verbs},
                {"apiGroups": [""], "resources": ["events", "configmaps", "pods"],
                 "verbs": ["get", "list"]},
            ],
        }
    )  # fmt: skip
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{name}-{account}", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        }
    )  # fmt: skip


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    def __init__(self, port: int, token: str = "", cookie: str = "") -> None:
        self.port, self.token, self.cookie = port, token, cookie

    def request(self, method: str, path: str, body: Any = None, *, csrf: bool = True) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.cookie:
            headers["Cookie"] = self.cookie
        data = None
        if method == "POST":
            data = json.dumps(body if body is not None else {}).encode()
            headers["Content-Type"] = "application/json"
            if csrf:
                headers["X-Requested-With"] = "dashboard"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return Answer(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        finally:
            conn.close()

    def get(self, path: str) -> Any:
        answer = self.request("GET", path)
        assert answer.status == 200, (path, answer.status, answer.body)
        return answer.json()

    def post(self, path: str, body: Any) -> Answer:
        return self.request("POST", path, body)


class Stream:
    """An open ``/api/stream``: its events, read on a thread as they come."""

    def __init__(
        self, port: int, token: str, *, read: bool = True, rcvbuf: int = 0, cookie: str = ""
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        credentials = f"Cookie: {cookie}" if cookie else f"Authorization: Bearer {token}"
        self.sock.sendall(
            f"GET /api/stream HTTP/1.1\r\nHost: dashboard\r\n{credentials}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.status = 0
        self.cond = threading.Condition()
        self.closed = False
        self._thread: threading.Thread | None = None
        if read:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()

    def _read(self) -> None:
        f = self.sock.makefile("rb")
        try:
            status_line = f.readline().decode()
            with self.cond:
                self.status = int(status_line.split()[1]) if status_line else 0
                self.cond.notify_all()
            while f.readline() not in (b"\r\n", b"\n", b""):
                pass  # headers
            name = ""
            for raw in f:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    with self.cond:
                        self.events.append((name, json.loads(line[len("data: ") :])))
                        self.cond.notify_all()
        except OSError:
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def wait_for(self, check: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events:
                    if check(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(f"the stream did not carry {what}: {self.events}")
                self.cond.wait(left)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self._thread is not None:
            self._thread.join(10)


@dataclass
class Site:
    namespace: str
    port: int
    catalog: git.Repository
    deployment: git.Repository
    catalog_url: str
    deployment_url: str
    first: str
    deployed: str
    viewer: str
    operator: str
    controller: RunningController
    store: Path


def fill_store(store: Path) -> str:
    """One small image in the store the controller serves, and one import in its record, as
    ``airgap import`` leaves them (the store's own writers)."""
    blobs, refs = BlobStore(store), Repositories(store)
    layer = b"layer bytes" * 100
    config = b'{"architecture":"amd64","os":"linux"}'
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": str(digest_bytes(config)), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": str(digest_bytes(layer)), "size": len(layer)}],
        }
    ).encode()  # fmt: skip
    for data in (layer, config, manifest):
        blobs.put(digest_bytes(data), data, "test image")
    digest = digest_bytes(manifest)
    refs.link_manifest("docker.io/library/web", digest, OCI_MANIFEST)
    refs.set_tag("docker.io/library/web", "1.0", digest)
    ImportRecord(store).add(
        "2026-11-30T10:00:00Z",
        "a" * 64,
        "ops@example.com",
        images={"docker.io/library/web:1.0": str(digest)},
        repositories=["https://ops:pw@git.example.com/deploy.git"],
    )
    return str(digest)


@pytest.fixture
def site(kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "git"
    root.mkdir()
    catalog = git.init_bare(root / "catalog.git")
    deployment = git.init_bare(root / "deploy.git")
    first = publish(catalog, web("1.0.0"))
    publish(catalog, web("1.1.0"))
    store = tmp_path / "store"
    fill_store(store)
    with http_server(root, user=GIT_USER, password=GIT_PASSWORD) as server:
        catalog_url, deployment_url = f"{server.url}/catalog.git", f"{server.url}/deploy.git"
        deployed = deploy(deployment, catalog_url, web("1.0.0"), first)
        kube.apply(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git", "namespace": namespace},
             "stringData": {"username": GIT_USER, "password": GIT_PASSWORD}}
        )  # fmt: skip
        kube.apply(repository(namespace, "catalog", catalog_url, "catalog"))
        kube.apply(repository(namespace, "prod", deployment_url, "deployment"))
        role(kube, namespace, "dash-viewer", ["get", "list", "watch"], "viewer")
        role(kube, namespace, "dash-operator", ["get", "list", "watch", "patch"], "operator")
        viewer = service_account_token(kube, namespace, "viewer")
        operator = service_account_token(kube, namespace, "operator")
        port = free_port()
        with RunningController(
            kubeconfig, tmp_path / "state", "-n", namespace, "--no-leader-elect",
            "--dashboard-listen", f"127.0.0.1:{port}", "--dashboard-actions",
            "--serve-registry", str(store), "--registry-listen", f"127.0.0.1:{free_port()}",
            log=tmp_path / "controller.log",
        ) as controller:  # fmt: skip
            site = Site(namespace, port, catalog, deployment, catalog_url, deployment_url, first,
                        deployed, viewer, operator, controller, store)  # fmt: skip
            client = Client(port, viewer)

            def applied() -> bool:
                status, _ = controller.get("/healthz")
                assert controller.process.poll() is None, controller.log()
                if status != 200:
                    return False
                answer = client.request("GET", "/api/overview")
                if answer.status != 200:
                    return False
                rows = answer.json()["kubepkgs"]
                return bool(rows) and rows[0]["health"] == "Ready"

            wait_until(applied, 120, "the dashboard to show web Ready")
            yield site


def test_every_endpoint_answers_what_the_cluster_holds(
    kube: Kube, kubeconfig: str, site: Site
) -> None:
    client = Client(site.port, site.viewer)
    ns = site.namespace
    assert client.get("/api/whoami") == {
        "user": f"system:serviceaccount:{ns}:viewer", "auth": True, "actions": True,
    }  # fmt: skip

    overview = client.get("/api/overview")
    repos = {r["name"]: r for r in overview["repositories"]}
    assert set(repos) == {"catalog", "prod"}
    prod = repos["prod"]
    assert prod["kind"] == "deployment" and prod["ready"] == "True"
    assert prod["commit"] == site.deployed, "the commit the controller fetched"
    assert prod["url"] == site.deployment_url and GIT_PASSWORD not in json.dumps(overview)
    live_repo = kube.get(GITOPS_API_VERSION, "Repository", "prod", ns)
    assert live_repo is not None
    assert prod["lastSync"] == live_repo["status"]["lastSyncTime"]
    [pkg] = overview["kubepkgs"]
    assert (pkg["namespace"], pkg["name"], pkg["version"], pkg["health"]) == (
        ns, "web", "1.0.0", "Ready",
    )  # fmt: skip
    assert pkg["repository"] == f"{ns}/prod" and pkg["commit"] == site.deployed

    def upgrade_listed() -> Any:
        return client.get("/api/overview")["upgrades"]

    upgrades = wait_until(upgrade_listed, 60, "the upgrade to 1.1.0 in the overview")
    assert upgrades == [{"namespace": ns, "name": "web", "version": "1.0.0",
                         "available": "1.1.0", "tag": "web/v1.1.0",
                         "repository": f"{ns}/catalog"}]  # fmt: skip

    detail = client.get(f"/api/kubepkgs/{ns}/web")
    live = kube.get(API_VERSION, KIND, "web", ns)
    assert live is not None
    assert detail["version"] == "1.0.0" and detail["source"]["commit"] == site.deployed
    assert detail["source"]["path"] == live["status"]["source"]["path"]
    assert detail["catalog"]["tag"] == "web/v1.0.0" and detail["catalog"]["commit"] == site.first
    assert [h["id"] for h in detail["history"]] == [h["id"] for h in live["status"]["history"]]
    assert {c["type"] for c in detail["conditions"]} >= {"Ready"}
    tree = detail["inventory"]
    assert tree["kind"] == "KubePkg" and tree["health"] == "Ready"
    assert [(c["kind"], c["namespace"], c["name"], c["health"]) for c in tree["children"]] == [
        ("Deployment", ns, "web", "Current"),  # ordered as the inventory: apps/v1 before v1
        ("ConfigMap", ns, "web", "Current"),
    ]
    assert tree["children"][1]["children"] == [], "a ConfigMap has no Pods"
    pods = kube.list("v1", "Pod", ns, label_selector="app=web")
    assert [(p["kind"], p["name"], p["health"]) for p in tree["children"][0]["children"]] == [
        ("Pod", pod["metadata"]["name"], "Current") for pod in pods
    ] and pods, "the Deployment's running Pod, under it"

    # Events: the kube-controller-manager's of the Deployment the package applied, as the
    # cluster holds them (the informer may see them a moment after the page first loads).
    def events() -> Any:
        return [
            e
            for e in client.get(f"/api/kubepkgs/{ns}/web")["events"]
            if e["object"] == {"kind": "Deployment", "namespace": ns, "name": "web"}
        ]

    shown = wait_until(events, 60, "the Deployment's Events on the KubePkg page")
    held = [
        e
        for e in kube.list("v1", "Event", ns)
        if (e["involvedObject"]["kind"], e["involvedObject"]["name"]) == ("Deployment", "web")
    ]
    assert {(e["reason"], e["message"]) for e in shown} <= {
        (e["reason"], e["message"]) for e in held
    }
    assert "ScalingReplicaSet" in {e["reason"] for e in shown}

    trace = client.get(f"/api/trace?apiVersion=v1&kind=ConfigMap&namespace={ns}&name=web")
    cli = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", "trace", "configmap/web", "-n", ns, "-o", "json",
         "--kubeconfig", kubeconfig],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert trace == json.loads(cli.stdout), "/api/trace is `trace -o json`"
    assert trace["managed"] is True and trace["kubepkg"]["name"] == "web"
    objects = client.get(f"/api/trace?kind=kubepkg&namespace={ns}&name=web")["objects"]
    assert [o for o in objects if o["object"]["kind"] == "ConfigMap"] == [trace]
    assert {o["object"]["kind"] for o in objects} == {"ConfigMap", "Deployment"}
    missing = client.request("GET", f"/api/trace?kind=ConfigMap&namespace={ns}&name=nothing")
    assert missing.status == 404 and "not found" in missing.json()["error"]

    catalog = client.get("/api/catalog")
    [package] = catalog["packages"]
    assert package["name"] == "web" and package["repository"] == f"{ns}/catalog"
    assert package["latest"] == "1.1.0"
    assert [r["version"] for r in package["revisions"]] == ["1.1.0", "1.0.0"]
    assert package["revisions"][1]["commit"] == site.first
    assert catalog["warnings"] == []

    # A published tag moved (never allowed): the catalog page warns, naming the tag.
    moved = site.catalog.commit_files(
        "main", {"web/kubepkg.json": encode(web("1.0.0")), "web/NOTE": b"moved\n"}, "moved"
    )
    site.catalog.tag("web/v1.0.0", moved, message="web 1.0.0 again", force=True)

    def warned() -> Any:
        return client.get("/api/catalog")["warnings"]

    [warning] = wait_until(warned, 60, "the moved-tag warning")
    assert (warning["repository"], warning["package"], warning["tag"]) == (
        f"{ns}/catalog", "web", "web/v1.0.0",
    )  # fmt: skip
    assert "moved" in warning["message"] and moved[:12] in warning["message"]


def test_the_airgap_and_registry_pages_show_the_store(kube: Kube, site: Site) -> None:
    """They need get on airgapimports (cluster-wide here: the controller runs without
    POD_NAMESPACE), which the viewer lacks until it is granted."""
    client = Client(site.port, site.viewer)
    refused = client.request("GET", "/api/registry")
    assert refused.status == 403 and "airgapimports" in refused.json()["error"]
    name = f"dash-store-{site.namespace}"
    kube.apply(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name},
         "rules": [{"apiGroups": ["gitops.kubepkg.dev"], "resources": ["airgapimports"],
                    "verbs": ["get"]}]}
    )  # fmt: skip
    kube.apply(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": site.namespace}]}
    )  # fmt: skip
    try:
        registry = wait_until(
            lambda: (
                client.request("GET", "/api/registry").status == 200 and client.get("/api/registry")
            ),
            30,
            "the grant to be seen (answers are cached 10 s)",
            step=1.0,
        )
        refs, blobs = Repositories(site.store), BlobStore(site.store)
        digest = refs.resolve("docker.io/library/web", "1.0")
        assert digest is not None
        manifest = json.loads(blobs.path(digest).read_bytes())
        size = (blobs.size(digest) or 0) + sum(
            d["size"] for d in [manifest["config"], *manifest["layers"]]
        )
        assert registry == {
            "store": True,
            "repositories": [{"name": "docker.io/library/web",
                              "tags": [{"tag": "1.0", "digest": str(digest), "size": size}]}],
        }  # fmt: skip
        airgap = client.get("/api/airgap")
        assert airgap["store"] is True
        assert [
            (i["created"], i["sha256"], i["signer"], i["record"]) for i in airgap["imports"]
        ] == [("2026-11-30T10:00:00Z", "a" * 64, "ops@example.com", "store")]
        assert airgap["images"] == [
            {"repository": "docker.io/library/web", "tag": "1.0", "digest": str(digest)}
        ]
    finally:
        kube.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", name)
        kube.delete("rbac.authorization.k8s.io/v1", "ClusterRole", name)


def test_a_git_push_reaches_the_stream_and_the_overview_without_a_restart(site: Site) -> None:
    stream = Stream(site.port, site.viewer)
    try:
        hello = stream.wait_for(lambda e: e[0] == "hello", 30, "hello")
        assert set(hello[1]["topics"]) >= {"repositories", "kubepkgs", "revisions", "events"}
        _, metrics = site.controller.get("/metrics")
        assert "\ngitops_kubepkg_dashboard_streams 1.0\n" in metrics
        assert re.search(
            r'\ngitops_kubepkg_dashboard_requests_total\{code="200",endpoint="/api/overview"\} '
            r"[1-9]",
            metrics,
        ), "the fixture's overview requests are counted"
        pushed = deploy(site.deployment, site.catalog_url, web("1.1.0"), site.first)
        stream.wait_for(
            lambda e: e[0] == "change" and "kubepkgs" in e[1]["topics"], 120, "a kubepkgs change"
        )
        client = Client(site.port, site.viewer)

        def moved() -> Any:
            [pkg] = client.get("/api/overview")["kubepkgs"]
            return pkg["commit"] == pushed and pkg["version"] == "1.1.0" and pkg

        wait_until(moved, 120, "the overview to show the pushed commit")
        assert site.controller.process.poll() is None, "the same controller, never restarted"
    finally:
        stream.close()


def test_without_a_valid_token_nothing_is_shown(site: Site) -> None:
    paths = ["/api/whoami", "/api/overview", f"/api/kubepkgs/{site.namespace}/web",
             f"/api/trace?kind=ConfigMap&namespace={site.namespace}&name=web", "/api/catalog",
             "/api/airgap", "/api/registry", "/api/stream"]  # fmt: skip
    for token in ("", "not-a-token"):
        client = Client(site.port, token)
        for path in paths:
            answer = client.request("GET", path)
            assert answer.status == 401, (token, path, answer.status)
            assert list(answer.json()) == ["error"], "an error and no data"
        answer = client.post("/api/actions/reconcile", {"kind": "KubePkg",
                             "namespace": site.namespace, "name": "web"})  # fmt: skip
        assert answer.status == 401

    # The browser's way: a session cookie for the token, then logout forgets it.
    bad = Client(site.port).post("/api/login", {"token": "not-a-token"})
    assert bad.status == 401 and "set-cookie" not in bad.headers
    no_csrf = Client(site.port).request("POST", "/api/login", {"token": site.viewer}, csrf=False)
    assert no_csrf.status == 403 and "X-Requested-With" in no_csrf.json()["error"]
    login = Client(site.port).post("/api/login", {"token": site.viewer})
    assert login.status == 200
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    session = cookie.split(";")[0]
    assert site.viewer not in cookie, "an opaque id, not the token"
    browser = Client(site.port, cookie=session)
    assert browser.get("/api/whoami")["user"].endswith(":viewer")
    assert browser.post("/api/logout", {}).status == 200
    assert browser.request("GET", "/api/overview").status == 401, "the session is gone"


def test_a_tenant_token_sees_only_its_own_namespace(
    kube: Kube, kubeconfig: str, site: Site, tmp_path: Path
) -> None:
    """The controller watches one namespace in the other tests; here a second controller
    watches all, and a token with RBAC in one namespace sees that namespace's objects only."""
    other = f"{site.namespace}-b"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        kube.apply(repository(other, "theirs", site.catalog_url, "catalog"))
        admin_view = Client(site.port, site.operator)
        port = free_port()
        with RunningController(
            kubeconfig, tmp_path / "state2", "--no-leader-elect", "--no-repositories", "--no-kubepkgs",
            "--dashboard-listen", f"127.0.0.1:{port}", log=tmp_path / "all.log",
        ):  # fmt: skip
            client = Client(port, site.viewer)

            def listed() -> Any:
                try:
                    answer = client.request("GET", "/api/overview")
                except OSError:
                    return False  # not listening yet
                return answer.status == 200 and answer.json()

            overview = wait_until(listed, 60, "the all-namespaces dashboard")
            assert {r["namespace"] for r in overview["repositories"]} == {site.namespace}
            assert {k["namespace"] for k in overview["kubepkgs"]} == {site.namespace}
            assert {p["repository"] for p in client.get("/api/catalog")["packages"]} == {
                f"{site.namespace}/catalog"
            }
            refused = client.request("GET", f"/api/kubepkgs/{other}/web")
            assert refused.status == 403 and other in refused.json()["error"]
            refused = client.request("GET", f"/api/trace?kind=ConfigMap&namespace={other}&name=x")
            assert refused.status == 403
        assert admin_view.get("/api/whoami")["actions"] is True
    finally:
        kube.delete("v1", "Namespace", other)


def test_actions_need_rbac_and_do_what_the_cli_does(kube: Kube, site: Site) -> None:
    ns = site.namespace
    viewer, operator = Client(site.port, site.viewer), Client(site.port, site.operator)
    body = {"kind": "KubePkg", "namespace": ns, "name": "web"}
    refused = viewer.post("/api/actions/reconcile", body)
    assert refused.status == 403
    assert "may not patch kubepkgs.octohelm.tech" in refused.json()["error"]
    answer = operator.post("/api/actions/reconcile", body)
    assert answer.status == 202, answer.body
    token = answer.json()["requestedAt"]
    live = kube.get(API_VERSION, KIND, "web", ns)
    assert live is not None and live["metadata"]["annotations"][ANNOTATION_REQUESTED_AT] == token

    def handled() -> bool:
        obj = kube.get(API_VERSION, KIND, "web", ns)
        return bool(obj and obj["status"].get("lastHandledReconcileAt") == token)

    wait_until(handled, 60, "the controller to answer the request as it answers the CLI's")
    repo = operator.post("/api/actions/reconcile", {"kind": "Repository", "namespace": ns,
                                                     "name": "prod"})  # fmt: skip
    assert repo.status == 202

    promote = {"namespace": ns, "name": "prod", "package": "web", "version": "1.1.0",
               "upgrade": True}  # fmt: skip
    assert viewer.post("/api/actions/promote", promote).status == 403
    answer = operator.post("/api/actions/promote", promote)
    assert answer.status == 200, answer.body
    done = answer.json()
    assert done["branch"] == "promote/web/1.1.0" and done["catalog"]["tag"] == "web/v1.1.0"
    refs = git.list_remote_refs(
        site.deployment_url, git.Credentials(username=GIT_USER, password=GIT_PASSWORD)
    )
    assert refs["refs/heads/promote/web/1.1.0"] == done["commit"], "the branch is on the server"
    path = (
        done["path"]
        if done["path"].endswith((".json", ".yaml"))
        else f"{done['path']}/kubepkg.json"
    )
    promoted = yaml.safe_load(site.deployment.read(done["commit"], path) or b"{}")
    assert promoted["spec"]["version"] == "1.1.0"

    approve = {"namespace": ns, "name": "prod", "branch": "promote/web/1.1.0"}
    assert viewer.post("/api/actions/approve", approve).status == 403
    answer = operator.post("/api/actions/approve", approve)
    assert answer.status == 200, answer.body
    refs = git.list_remote_refs(
        site.deployment_url, git.Credentials(username=GIT_USER, password=GIT_PASSWORD)
    )
    assert "refs/heads/promote/web/1.1.0" not in refs, "merged and deleted, as approve does"
    assert refs["refs/heads/main"] == answer.json()["merged"]

    def deployed() -> bool:
        [pkg] = viewer.get("/api/overview")["kubepkgs"]
        return bool(pkg["version"] == "1.1.0" and pkg["health"] == "Ready")

    wait_until(deployed, 120, "the approved promotion to be applied")
    bad = operator.post("/api/actions/reconcile", {"kind": "Secret", "namespace": ns, "name": "x"})
    assert bad.status == 400 and "kind" in bad.json()["error"]


@pytest.fixture
def local_server(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[DashboardServer]:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>dashboard</title>")
    (static / "app.js").write_text("console.log('hi')")
    server = DashboardServer(
        ("127.0.0.1", 0),
        kube,
        settings=Settings(static_dir=static, heartbeat=0.5, stream_write_timeout=2.0,
                          max_streams=6, max_streams_per_viewer=3),
        namespace=namespace,
    )  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_slow_stream_client_holds_only_its_own_slot(
    kube: Kube, namespace: str, local_server: DashboardServer
) -> None:
    role(kube, namespace, "dash-viewer", ["get", "list", "watch"], "viewer")
    slow_token = service_account_token(kube, namespace, "viewer")
    fast_token = service_account_token(kube, namespace, "other")
    role(kube, namespace, "dash-viewer", ["get", "list", "watch"], "other")
    port = local_server.port
    slow = Stream(port, slow_token, read=False, rcvbuf=1024)
    fast = Stream(port, fast_token)
    try:
        fast.wait_for(lambda e: e[0] == "hello", 30, "hello")
        wait_until(lambda: local_server.streams.count() == 2, 30, "both streams open")
        # Change after change: the slow client reads none, so its socket buffers fill and the
        # server's write to it blocks, until it is cut once a write waited stream_write_timeout;
        # all the while the other stream gets every change, and then its own slot is the only one.
        deadline = time.monotonic() + 120
        while local_server.streams.count() != 1:
            assert time.monotonic() < deadline, "the slow stream was never cut"
            local_server.state.bump("events")
            time.sleep(0.002)
        local_server.state.bump("registry")
        fast.wait_for(
            lambda e: e[0] == "change" and "registry" in e[1]["topics"], 60, "the last change"
        )
        assert len([e for e in fast.events if e[0] == "change"]) > 100, "it heard them all along"
        local_server.state.bump("airgap")
        fast.wait_for(lambda e: e[0] == "change" and "airgap" in e[1]["topics"], 30, "airgap")

        # Per viewer at most 3 here (Settings), in total 6: the next one is refused, not queued.
        more = [Stream(port, fast_token) for _ in range(3)]
        try:
            for s in more:
                with s.cond:
                    s.cond.wait_for(lambda s=s: s.status != 0 or s.closed, 30)
            assert sorted(s.status for s in more) == [200, 200, 429], "the third is refused"
        finally:
            for s in more:
                s.close()
    finally:
        slow.close()
        fast.close()


def test_a_stream_ends_when_its_session_is_logged_out(
    kube: Kube, namespace: str, local_server: DashboardServer
) -> None:
    role(kube, namespace, "dash-viewer", ["get", "list", "watch"], "viewer")
    token = service_account_token(kube, namespace, "viewer")
    login = Client(local_server.port).post("/api/login", {"token": token})
    assert login.status == 200
    session = login.headers["set-cookie"].split(";")[0]
    stream = Stream(local_server.port, "", cookie=session)
    try:
        stream.wait_for(lambda e: e[0] == "hello", 30, "hello")
        assert Client(local_server.port, cookie=session).post("/api/logout", {}).status == 200
        with stream.cond:
            stream.cond.wait_for(lambda: stream.closed, 30)
        assert stream.closed, "the server ended the stream at its next heartbeat"
    finally:
        stream.close()


def test_static_files_post_rules_and_actions_switched_off(
    kube: Kube, namespace: str, local_server: DashboardServer
) -> None:
    role(kube, namespace, "dash-viewer", ["get", "list", "watch", "patch"], "viewer")
    token = service_account_token(kube, namespace, "viewer")
    client = Client(local_server.port, token)
    page = client.request("GET", "/")
    assert page.status == 200 and page.body.startswith(b"<!doctype html>")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    script = client.request("GET", "/static/app.js")
    assert script.status == 200 and "javascript" in script.headers["content-type"]
    for path in ("/static/../server.py", "/static/.hidden", "/static/", "/other"):
        assert client.request("GET", path).status == 404, path
    off = client.post("/api/actions/reconcile", {"kind": "KubePkg", "namespace": namespace,
                                                  "name": "web"})  # fmt: skip
    assert off.status == 403 and "--dashboard-actions" in off.json()["error"]
    no_csrf = client.request("POST", "/api/actions/reconcile", {}, csrf=False)
    assert no_csrf.status == 403
    assert client.request("GET", "/api/nothing").status == 404
    assert client.request("POST", "/api/overview", {}).status == 405
    whoami = client.get("/api/whoami")
    assert whoami["actions"] is False and whoami["auth"] is True


def test_the_real_pages_are_served_when_installed(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """The package's own static/ (what the wheel ships), when the UI's files are there."""
    from gitops_kubepkg.dashboard.server import STATIC

    if not (STATIC / "index.html").is_file():
        pytest.skip("gitops_kubepkg/dashboard/static/ is not in this checkout yet")
    server = DashboardServer(
        ("127.0.0.1", 0), kube, settings=Settings(no_auth=True), namespace=namespace
    )
    server.start()
    try:
        page = Client(server.port).request("GET", "/")
        assert page.status == 200 and b"<html" in page.body.lower()
        assert b"http://" not in page.body and b"https://" not in page.body, "nothing external"
        assert Client(server.port).get("/api/whoami")["auth"] is False
    finally:
        server.stop()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_multi_tenant_controller_reads_live_objects_as_the_namespaces_account(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    """deploy/'s controller may not read what packages hold (rbac.yaml); its dashboard traces a
    namespace's objects as that namespace's ServiceAccount, as it applies them."""
    name = f"dash-controller-{namespace}"
    kube.apply(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name},
         "rules": [
             {"apiGroups": ["gitops.kubepkg.dev"], "resources": ["repositories", "packagerevisions"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["octohelm.tech"], "resources": ["kubepkgs"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
             {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
             {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},  # as deploy/rbac.yaml
             {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
              "verbs": ["create"]},
             {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
              "verbs": ["create"]},
         ]}
    )  # fmt: skip
    kube.apply(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": "controller", "namespace": namespace}]}
    )  # fmt: skip
    try:
        service_account_token(kube, namespace, "controller")
        config = service_account_kubeconfig(
            kube, kubeconfig, tmp_path / "controller.kubeconfig", namespace, "controller"
        )
        kube.apply(yaml.safe_load((REPO / "deploy/tenant-role.yaml").read_text()))
        tenant_namespace(kube, namespace)  # deploy/tenant/tenant.yaml: gitops-kubepkg, tenant role
        kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "plain", "namespace": namespace}, "data": {"a": "b"}})  # fmt: skip
        kube.apply(
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "web", "namespace": namespace},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "web", "image": IMAGE}]}}}}
        )  # fmt: skip
        [pod] = wait_until(
            lambda: kube.list("v1", "Pod", namespace, label_selector="app=web"), 60, "its Pod"
        )
        role(kube, namespace, "dash-viewer", ["get", "list", "watch"], "viewer")
        viewer = service_account_token(kube, namespace, "viewer")
        path = f"/api/trace?apiVersion=v1&kind=ConfigMap&namespace={namespace}&name=plain"
        restricted = Kube(str(config))
        try:
            for tenancy, status in (
                (Tenancy(), 502),
                (Tenancy(multi_tenant=True, default_service_account="gitops-kubepkg"), 200),
            ):
                server = DashboardServer(
                    ("127.0.0.1", 0), restricted, namespace=namespace, tenancy=tenancy
                )
                server.start()
                try:
                    answer = Client(server.port, viewer).request("GET", path)
                    pods = server.pods.of("apps/v1", "Deployment", namespace, "web")
                finally:
                    server.stop()
                assert answer.status == status, (tenancy, answer.body)
                # The Deployment read as the tenant's account, its Pods listed by the controller.
                assert [p["name"] for p in pods] == (
                    [pod["metadata"]["name"]] if tenancy.multi_tenant else []
                ), tenancy
            assert answer.json()["managed"] is False, "read and traced: not ours"
            assert "forbidden" not in answer.body.decode().lower()
        finally:
            restricted.close()
    finally:
        kube.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", name)
        kube.delete("rbac.authorization.k8s.io/v1", "ClusterRole", name)


def test_over_tls_or_behind_a_tls_proxy_the_session_cookie_is_secure(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    from gitops_kubepkg.registry.server import tls_context
    from tests.unit.test_servers_hostile import self_signed

    role(kube, namespace, "dash-viewer", ["get", "list", "watch"], "viewer")
    token = service_account_token(kube, namespace, "viewer")
    login = json.dumps({"token": token}).encode()
    headers = {"X-Requested-With": "dashboard", "Content-Type": "application/json"}
    cert, key = self_signed(tmp_path)
    server = DashboardServer(
        ("127.0.0.1", 0), kube, namespace=namespace, tls=tls_context(cert, key)
    )
    server.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("localhost", server.port, context=context, timeout=60)
        conn.request("POST", "/api/login", body=login, headers=headers)
        answer = conn.getresponse()
        answer.read()
        conn.close()
        assert answer.status == 200
        assert "; Secure" in (answer.getheader("Set-Cookie") or "")
    finally:
        server.stop()
    plain = DashboardServer(("127.0.0.1", 0), kube, namespace=namespace)
    plain.start()
    try:
        for proto, secure in (("", False), ("https", True)):
            conn = http.client.HTTPConnection("127.0.0.1", plain.port, timeout=60)
            extra = {"X-Forwarded-Proto": proto} if proto else {}
            conn.request("POST", "/api/login", body=login, headers={**headers, **extra})
            answer = conn.getresponse()
            answer.read()
            conn.close()
            assert answer.status == 200
            assert ("; Secure" in (answer.getheader("Set-Cookie") or "")) is secure, proto
    finally:
        plain.stop()
