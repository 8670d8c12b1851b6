"""deploy/ on the local control plane: it applies, its Pod passes the restricted Pod Security
Standard, and the controller running as its ServiceAccount (a token from the TokenRequest API)
reconciles the example repositories with exactly that RBAC, while writes outside it get 403.

Real kube-apiserver with RBAC on, real kube-controller-manager (it creates the Pod), real git
repositories made from examples/repos, the real CLI in subprocesses."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_kubepkg.controller.leader import API_VERSION as LEASE_API
from gitops_kubepkg.conventions import find_condition
from gitops_kubepkg.errors import Forbidden
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.reconcile.status import inventory_of
from gitops_kubepkg.sources.catalog import KIND as REVISION_KIND
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from tests.integration.controllers import (
    RunningController,
    service_account_kubeconfig,
    tenant_namespace,
    wait_until,
)

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SYSTEM = "gitops-kubepkg-system"
ACCOUNT = "gitops-kubepkg-controller"
IMAGE = "registry.test/gitops-kubepkg:test"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


MULTI_TENANT = ["--multi-tenant", "--default-service-account", "gitops-kubepkg"]
"""deploy/deployment.yaml's tenancy flags (a test of the args checks they are these)."""


@pytest.fixture(scope="module")
def installed(kube: Kube, kubeconfig: str) -> str:
    """``gitops-kubepkg install deploy/``: what it printed."""
    return cli("install", "deploy", "--image", IMAGE, "--kubeconfig", kubeconfig).stdout


@pytest.fixture
def tenant(kube: Kube, installed: str, namespace: str) -> str:
    """``namespace`` made a tenant as the operator does: deploy/tenant/tenant.yaml applied."""
    tenant_namespace(kube, namespace)
    return namespace


@pytest.fixture
def examples(tmp_path: Path, kubeconfig: str, namespace: str) -> Iterator[dict[str, str]]:
    """The example catalog and deployment as real repositories, registered in ``namespace``;
    afterwards their KubePkgs are deleted and finalized (their objects live in ``default``)."""
    urls = (
        subprocess.run(
            [sys.executable, str(REPO / "examples/repos/make-repos.py"), str(tmp_path / "srv")],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    repos = {"catalog": urls[0], "prod": urls[1]}
    for name, url in repos.items():
        kind = "catalog" if name == "catalog" else "deployment"
        cli("repo", "add", name, "--url", url, "--type", kind, "-n", namespace,
            "--kubeconfig", kubeconfig)  # fmt: skip
    yield repos
    admin = Kube(kubeconfig)
    try:
        admin.delete(GITOPS_API_VERSION, "Repository", "prod", namespace)
        reconciler = KubePkgReconciler(admin)
        for pkg in admin.list(API_VERSION, KIND, namespace):
            admin.delete(API_VERSION, KIND, pkg["metadata"]["name"], namespace)
            reconciler.reconcile(namespace, pkg["metadata"]["name"])
        reconciler.applier.close()
    finally:
        admin.close()


def test_deploy_applies_and_its_pod_meets_the_restricted_standard(
    kube: Kube, installed: str
) -> None:
    for line in [
        f"applied Namespace {SYSTEM}",
        "applied CustomResourceDefinition kubepkgs.octohelm.tech",
        f"applied ServiceAccount {SYSTEM}/{ACCOUNT}",
        f"applied ClusterRole {ACCOUNT}",
        "applied ClusterRole gitops-kubepkg-tenant",
        f"applied ConfigMap {SYSTEM}/gitops-kubepkg-tenancy",
        f"applied NetworkPolicy {SYSTEM}/gitops-kubepkg-controller",
        f"applied Role {SYSTEM}/gitops-kubepkg-leader-election",
        f"applied Deployment {SYSTEM}/gitops-kubepkg-controller",
        f"applied Service {SYSTEM}/gitops-kubepkg-webhook",
        f"applied Service {SYSTEM}/gitops-kubepkg-registry",
    ]:
        assert line in installed.splitlines()
    # No kubelet runs here, but the ReplicaSet controller creates the Pod, and the API server
    # admits it only if it meets the namespace's enforced "restricted" Pod Security Standard.
    pods = wait_until(
        lambda: kube.list(
            "v1", "Pod", SYSTEM, label_selector="app.kubernetes.io/component=controller"
        ),
        60,
        "the controller Deployment's Pod",
    )
    spec = pods[0]["spec"]
    container = spec["containers"][0]
    assert container["image"] == IMAGE
    assert spec["serviceAccountName"] == ACCOUNT
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {e["name"] for e in container["env"]} >= {"POD_NAME", "POD_NAMESPACE"}
    # An unprivileged copy is refused: the namespace really enforces the standard.
    rogue = json.loads(json.dumps(pods[0]))
    rogue["metadata"] = {"name": "rogue", "namespace": SYSTEM}
    rogue["spec"].pop("nodeName", None)
    rogue["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(Forbidden, match="restricted"):
        kube.create(rogue, dry_run=True)


def test_the_service_account_reconciles_the_examples_and_nothing_more(
    kube: Kube,
    kubeconfig: str,
    tenant: str,
    namespace: str,
    examples: dict[str, str],
    tmp_path: Path,
) -> None:
    sa = service_account_kubeconfig(kube, kubeconfig, tmp_path / "sa.kubeconfig", SYSTEM, ACCOUNT)
    once = cli(
        "controller", "--once", "-n", namespace, "--state-dir", str(tmp_path / "state"),
        "--kubeconfig", str(sa), "-o", "json", *MULTI_TENANT, "--local-sources",
    )  # fmt: skip
    results = json.loads(once.stdout)
    repositories = {r["repository"]: r for r in results if r["kind"] == "Repository"}
    assert set(repositories) == {f"{namespace}/catalog", f"{namespace}/prod"}
    assert all(r["ready"] for r in repositories.values()), repositories
    kubepkgs = {r["kubepkg"]: r for r in results if r["kind"] == "KubePkg"}
    assert set(kubepkgs) == {f"{namespace}/redis", f"{namespace}/web"}
    # One pass right after creating the Deployments: kwok (the simulated kubelet) makes their
    # Pods ready only later, so "progressing" is the usual success here; "ready" is one too.
    assert {r["result"] for r in kubepkgs.values()} <= {"progressing", "ready"}, kubepkgs

    revisions = kube.list(GITOPS_API_VERSION, REVISION_KIND, namespace)
    assert len(revisions) == 5
    web = kube.get(API_VERSION, KIND, "web", namespace)
    assert web is not None
    assert {(o.kind, o.name) for o in inventory_of(web["status"])} == {
        ("Deployment", "web"),
        ("Service", "web"),
    }
    for kind, name in [("Deployment", "web"), ("Service", "web"), ("Deployment", "redis")]:
        api = "apps/v1" if kind == "Deployment" else "v1"
        # Upstream forces the KubePkg's namespace on what it renders (the files say "default").
        assert kube.get(api, kind, name, namespace) is not None, f"{kind} {namespace}/{name}"
        assert kube.get(api, kind, name, "default") is None

    # Outside the ClusterRole: refused by the API server, not by our own code. The controller
    # holds no package contents of its own: what it applied, it applied as the tenant's account.
    account = Kube(str(sa))
    try:
        with pytest.raises(Forbidden):
            account.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "direct", "namespace": namespace},
                }
            )
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "nope", "namespace": namespace},
            "stringData": {"a": "b"},
        }
        with pytest.raises(Forbidden):
            account.create(secret)
        with pytest.raises(Forbidden):
            account.list("v1", "Secret", namespace)  # get by name only, never list
        with pytest.raises(Forbidden):
            account.apply(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "gitops-kubepkg-escalate"},
                    "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
                }
            )
        with pytest.raises(Forbidden):
            account.delete("v1", "Namespace", namespace)
        with pytest.raises(Forbidden):  # the Lease Role is for its own namespace only
            account.create(
                {
                    "apiVersion": LEASE_API,
                    "kind": "Lease",
                    "metadata": {"name": "x", "namespace": namespace},
                    "spec": {},
                }
            )
    finally:
        account.close()
    assert kube.get("v1", "Secret", "nope", namespace) is None


def test_a_package_needing_more_than_the_role_is_refused_and_says_so(
    kube: Kube, kubeconfig: str, tenant: str, namespace: str, tmp_path: Path
) -> None:
    sa = service_account_kubeconfig(kube, kubeconfig, tmp_path / "sa.kubeconfig", SYSTEM, ACCOUNT)
    kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": "needs-secret", "namespace": namespace},
            "spec": {
                "version": "1.0.0",
                "manifests": {
                    "token.secret": {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": "token"},
                        "stringData": {"token": "x"},
                    },
                    "settings.configmap": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": "settings"},
                        "data": {"a": "b"},
                    },
                },
            },
        }
    )
    once = cli(
        "controller", "--once", "--no-repositories", "-n", namespace,
        "--state-dir", str(tmp_path / "state"), "--kubeconfig", str(sa), "-o", "json",
        *MULTI_TENANT, check=False,
    )  # fmt: skip
    assert once.returncode == 1
    (result,) = json.loads(once.stdout)
    assert result["result"] == "stalled", result
    assert "forbidden" in result["message"].lower() and "secrets" in result["message"]
    assert f"system:serviceaccount:{namespace}:gitops-kubepkg" in result["message"]
    assert kube.get("v1", "ConfigMap", "settings", namespace) is None, "nothing half-applied"
    kube.delete(API_VERSION, KIND, "needs-secret", namespace)
    reconciler = KubePkgReconciler(kube)
    reconciler.reconcile(namespace, "needs-secret")  # the finalizer, as the controller would
    reconciler.applier.close()


def test_the_service_account_leads_answers_a_requested_sync_and_releases_its_lease(
    kube: Kube,
    kubeconfig: str,
    tenant: str,
    namespace: str,
    examples: dict[str, str],
    tmp_path: Path,
) -> None:
    sa = service_account_kubeconfig(kube, kubeconfig, tmp_path / "sa.kubeconfig", SYSTEM, ACCOUNT)
    args = ["-n", namespace, "--leader-election-namespace", SYSTEM, "--retry-period", "1s",
            *MULTI_TENANT, "--local-sources"]  # fmt: skip
    with RunningController(
        str(sa), tmp_path / "state", *args, log=tmp_path / "controller.log"
    ) as controller:
        wait_until(lambda: controller.get("/readyz")[0] == 200, 60, "a ready leader")
        lease = kube.get(LEASE_API, "Lease", "gitops-kubepkg-controller", SYSTEM)
        assert lease is not None and lease["spec"]["holderIdentity"] == controller.identity

        answered = cli(
            "reconcile", "repository", "prod", "-n", namespace, "--kubeconfig", kubeconfig
        )
        assert f"Repository {namespace}/prod synced at" in answered.stdout

        controller.signal(signal.SIGTERM)
        assert controller.wait(60) == 0, controller.log()
    lease = kube.get(LEASE_API, "Lease", "gitops-kubepkg-controller", SYSTEM)
    assert lease is not None and not lease["spec"].get("holderIdentity"), "released on SIGTERM"
    assert "Forbidden" not in controller.log(), controller.log()


def test_with_deploys_rbac_the_controller_shards_and_watches_what_tenants_apply(
    kube: Kube,
    kubeconfig: str,
    tenant: str,
    namespace: str,
    examples: dict[str, str],
    tmp_path: Path,
) -> None:
    """The controller as deploy/'s ServiceAccount with --shards 2: it holds its shard and member
    Leases (the Lease Role), and it watches the kinds the examples applied (the watch role), so a
    scale by another manager is reverted by the Deployment's event: resync is an hour away, and
    no informer falls back to timed checks."""
    sa = service_account_kubeconfig(kube, kubeconfig, tmp_path / "sa.kubeconfig", SYSTEM, ACCOUNT)
    args = ["-n", namespace, "--leader-election-namespace", SYSTEM, "--retry-period", "1s",
            "--shards", "2", "--resync", "1h", *MULTI_TENANT, "--local-sources"]  # fmt: skip
    with RunningController(
        str(sa), tmp_path / "state", *args, log=tmp_path / "controller.log"
    ) as controller:

        def holds_both_shards() -> bool:
            leases = [
                kube.get(LEASE_API, "Lease", f"{ACCOUNT}-shard-{i}", SYSTEM) for i in range(2)
            ]
            return all(
                lease is not None and lease["spec"].get("holderIdentity") == controller.identity
                for lease in leases
            )

        wait_until(holds_both_shards, 60, "the one replica to hold both shard Leases")
        member = kube.get(LEASE_API, "Lease", f"{ACCOUNT}-member-{controller.identity}", SYSTEM)
        assert member is not None, "its member Lease"
        wait_until(lambda: kube.get("apps/v1", "Deployment", "web", namespace), 120, "web applied")
        want = int(kube.get("apps/v1", "Deployment", "web", namespace)["spec"]["replicas"])

        def replicas() -> int:
            live = kube.get("apps/v1", "Deployment", "web", namespace) or {}
            return int((live.get("spec") or {}).get("replicas") or 0)

        # Ready first: a progressing KubePkg is also checked on a timer, a Ready one is not.
        wait_until(lambda: ready_condition(kube, "web", namespace), 120, "web Ready")
        kube.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/web/scale",
            query={"fieldManager": "someone"},
            body={"spec": {"replicas": want + 2}},
            content_type="application/merge-patch+json",
        )
        wait_until(lambda: replicas() == want, 30, "the scale reverted by the watch (resync: 1h)")
        controller.signal(signal.SIGTERM)
        assert controller.wait(60) == 0, controller.log()
    log = controller.log()
    assert "not allowed to list and watch" not in log, log
    assert "forbidden" not in log.lower(), log


def ready_condition(kube: Kube, name: str, namespace: str) -> bool:
    pkg = kube.get(API_VERSION, KIND, name, namespace) or {}
    conditions = (pkg.get("status") or {}).get("conditions")
    return find_condition(conditions, "Ready").get("status") == "True"
