"""The hostile-input corpus (tests/hostile/*.case.yaml) against ``validate`` and the controller.

Each case is one hostile KubePkg file and the safe behaviour it must meet (tests/hostile/README.md):
``validate`` gives its one clear line and exit 1 (or accepts what only tenancy refuses), never a
traceback or a hang; the controller, run as deploy/ runs it (``controller --once --multi-tenant``
as the controller's own ServiceAccount), refuses the file or stalls its KubePkg with the expected
reason, writes none of the objects the case lists, still syncs and applies the repository's good
file, and says Ready=False on the Repository. A case that ``needs`` issue 12 part 3 for a runner
(``needs: {validate: parsers}``) is expected to fail there until then, and this runner fails once
it passes, so the mark is removed in the same merge.

Real CLI in subprocesses (with timeouts: a hang fails the case), real git, the local control plane
with RBAC on."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kubepkg import git
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from tests.integration.controllers import service_account_kubeconfig, tenant_namespace

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "hostile"
CASES = sorted(CORPUS.glob("*.case.yaml"))
GOOD = b"""apiVersion: octohelm.tech/v1alpha1
kind: KubePkg
metadata: {name: good}
spec:
  version: 1.0.0
  manifests:
    cm: {apiVersion: v1, kind: ConfigMap, metadata: {name: good}, data: {ok: "yes"}}
"""


def load_case(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load(path.read_text())
    if "input_parts" in case:
        case["input"] = "".join(text * times for text, times in case["input_parts"])
    return case


def input_bytes(case: dict[str, Any]) -> bytes:
    return str(case["input"]).encode("utf-8", "surrogateescape")


def cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_case(case: dict[str, Any], runner: str, check: Callable[[float], None]) -> None:
    """``check`` with its timeout; a case that ``needs`` more for this runner must fail
    (strictly) until then."""
    needs = (case.get("needs") or {}).get(runner)
    if not needs:
        check(120.0)
        return
    try:
        check(20.0)
    except (AssertionError, subprocess.TimeoutExpired) as e:
        pytest.xfail(f"needs issue 12 part 3 ({needs}): {str(e)[:200]}")
    pytest.fail(f"passes now: remove `{runner}: {needs}` from the case's needs")


def test_the_corpus_is_well_formed() -> None:
    assert len(CASES) >= 8
    for path in CASES:
        case = load_case(path)
        assert set(case) <= {
            "what", "input", "input_parts", "file", "validate", "controller", "absent", "needs",
        }, path  # fmt: skip
        assert case["what"] and "input" in case and "validate" in case, path
        assert set(case["controller"]) <= {"repository", "kubepkg"}, path
        assert len(case["controller"]) == 1, path
        assert set(case.get("needs") or {}) <= {"validate", "controller"}, path


@pytest.mark.parametrize("path", CASES, ids=[p.name.split(".")[0] for p in CASES])
def test_validate(path: Path, tmp_path: Path) -> None:
    case = load_case(path)
    target = tmp_path / case.get("file", "kubepkg.yaml")
    target.write_bytes(input_bytes(case))

    def check(timeout: float) -> None:
        out = cli("validate", str(target), timeout=timeout)
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        if case["validate"] == "ok":
            assert out.returncode == 0, out.stdout + out.stderr
            return
        assert out.returncode == 1, out.stdout + out.stderr
        text = (out.stdout + out.stderr).strip()
        assert case["validate"] in text, text[-2000:]
        assert len(out.stderr.strip().splitlines()) <= 3, out.stderr[-2000:]

    run_case(case, "validate", check)


@pytest.fixture(scope="module")
def controller_kubeconfig(
    kube: Kube, kubeconfig: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = cli("install", "deploy", "--image", "registry.test/gitops-kubepkg:test",
              "--kubeconfig", kubeconfig, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    path = tmp_path_factory.mktemp("hostile") / "controller.kubeconfig"
    return service_account_kubeconfig(
        kube, kubeconfig, path, "gitops-kubepkg-system", "gitops-kubepkg-controller"
    )


@pytest.fixture
def tenant(kube: Kube) -> Iterator[str]:
    name = f"h-{uuid.uuid4().hex[:10]}"
    tenant_namespace(kube, name)
    yield name
    reconciler = KubePkgReconciler(kube, events=False)
    try:
        for pkg in kube.list(API_VERSION, KIND, name):
            kube.delete(API_VERSION, KIND, pkg["metadata"]["name"], name)
            reconciler.reconcile(name, pkg["metadata"]["name"])
    finally:
        reconciler.applier.close()
    kube.delete("v1", "Namespace", name)


@pytest.mark.parametrize("path", CASES, ids=[p.name.split(".")[0] for p in CASES])
def test_controller(
    path: Path, kube: Kube, controller_kubeconfig: Path, tenant: str, tmp_path: Path
) -> None:
    case = load_case(path)
    hostile_path = f"hostile/{case.get('file', 'kubepkg.yaml')}"
    repo = git.init_bare(tmp_path / "deploy.git")
    repo.commit_files(
        "main", {"good/kubepkg.yaml": GOOD, hostile_path: input_bytes(case)}, "hostile"
    )
    kube.apply(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "Repository",
            "metadata": {"name": "deploy", "namespace": tenant},
            "spec": {"url": f"file://{tmp_path / 'deploy.git'}", "type": "deployment"},
        }
    )
    expect = {k: str(v).replace("$NS", tenant) if isinstance(v, str) else v
              for k, v in case["controller"].items()}  # fmt: skip

    def check(timeout: float) -> None:
        out = cli(
            "controller", "--once", "-n", tenant, "--state-dir", str(tmp_path / "state"),
            "--kubeconfig", str(controller_kubeconfig), "-o", "json", "--multi-tenant",
            "--default-service-account", "gitops-kubepkg", "--local-sources",
            timeout=timeout,
        )  # fmt: skip
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        assert out.returncode == 1, out.stdout + out.stderr[-2000:]
        results = json.loads(out.stdout)
        (repository,) = [r for r in results if r["kind"] == "Repository"]
        kubepkgs = {r["kubepkg"]: r for r in results if r["kind"] == "KubePkg"}
        assert kubepkgs[f"{tenant}/good"]["result"] in ("ready", "progressing"), kubepkgs
        good = kube.get("v1", "ConfigMap", "good", tenant)
        assert good is not None, "the good file synced and applied"

        live = kube.get(GITOPS_API_VERSION, "Repository", "deploy", tenant)
        assert live is not None
        (ready,) = [c for c in live["status"]["conditions"] if c["type"] == "Ready"]
        if "repository" in expect:
            assert not repository["ready"] and ready["status"] == "False", repository
            assert hostile_path in ready["message"], ready["message"]
            assert expect["repository"] in ready["message"], ready["message"]
        else:
            want = expect["kubepkg"]
            (hostile,) = [r for key, r in kubepkgs.items() if key != f"{tenant}/good"]
            assert hostile["result"] == "stalled", hostile
            assert hostile["reason"] == want["reason"], hostile
            assert want["says"] in hostile["message"], hostile["message"]

        for api_version, kind, namespace, name in case.get("absent") or []:
            where = str(namespace).replace("$NS", tenant)
            assert kube.get(api_version, kind, name, where) is None, f"{kind} {where}/{name}"

    run_case(case, "controller", check)


def test_a_file_that_breaks_fails_its_own_kubepkg_and_the_rest_syncs(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    from gitops_kubepkg.controller.repository import request_patch
    from gitops_kubepkg.controller.sync import Syncer

    def app(mode: str, typo: bool = False) -> bytes:
        spec = {"version": "1.0.0", "manifests": {"cm": {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
            "data": {"mode": mode}}}}  # fmt: skip
        if typo:
            spec["imagez"] = {}
        return json.dumps({"apiVersion": API_VERSION, "kind": KIND,
                           "metadata": {"name": "app"}, "spec": spec}).encode()  # fmt: skip

    repo = git.init_bare(tmp_path / "deploy.git")
    repo.commit_files("main", {"good/kubepkg.yaml": GOOD, "app/kubepkg.json": app("1")}, "one")
    repository = {
        "apiVersion": GITOPS_API_VERSION,
        "kind": "Repository",
        "metadata": {"name": "deploy", "namespace": namespace},
        "spec": {"url": f"file://{tmp_path / 'deploy.git'}", "type": "deployment"},
    }
    kube.apply(repository)
    syncer = Syncer(kube, tmp_path / "state")
    reconciler = KubePkgReconciler(kube, events=False)

    def ready_condition() -> dict[str, Any]:
        live = kube.get(GITOPS_API_VERSION, "Repository", "deploy", namespace) or {}
        (ready,) = [c for c in live["status"]["conditions"] if c["type"] == "Ready"]
        return dict(ready)

    try:
        assert (syncer.sync(namespace, "deploy") or pytest.fail()).ready
        for name in ("good", "app"):
            assert reconciler.reconcile(namespace, name)[0].kind == "ready"

        repo.commit_files(
            "main", {"app/kubepkg.json": app("2", typo=True), "good/kubepkg.yaml": GOOD}, "two"
        )
        outcome = syncer.sync(namespace, "deploy")
        assert outcome is not None and not outcome.ready, outcome
        assert ready_condition()["status"] == "False"
        assert "app/kubepkg.json: spec.imagez: unknown field" in ready_condition()["message"]
        stalled, _ = reconciler.reconcile(namespace, "app")
        assert (stalled.kind, stalled.reason) == ("stalled", "SourceUnreadable")
        assert stalled.message.startswith("app/kubepkg.json: spec.imagez: unknown field")
        obj = kube.get(API_VERSION, KIND, "app", namespace) or {}
        (cond,) = [c for c in obj["status"]["conditions"] if c["type"] == "Stalled"]
        assert cond["reason"] == "SourceUnreadable" and "app/kubepkg.json" in cond["message"]
        cm = kube.get("v1", "ConfigMap", "app", namespace)
        assert cm is not None and cm["data"] == {"mode": "1"}, "what it applied stays"
        assert reconciler.reconcile(namespace, "good")[0].kind == "ready"

        # Suspended, a requested sync is still answered.
        kube.patch(GITOPS_API_VERSION, "Repository", "deploy", namespace,
                   {"spec": {"suspend": True}})  # fmt: skip
        kube.patch(GITOPS_API_VERSION, "Repository", "deploy", namespace, request_patch("t-1"))
        answered = syncer.sync(namespace, "deploy")
        assert answered is not None and answered.reason == "Suspended"
        live = kube.get(GITOPS_API_VERSION, "Repository", "deploy", namespace) or {}
        assert live["status"]["lastHandledReconcileAt"] == "t-1"
        kube.patch(GITOPS_API_VERSION, "Repository", "deploy", namespace,
                   {"spec": {"suspend": False}})  # fmt: skip

        repo.commit_files("main", {"app/kubepkg.json": app("3")}, "fixed")
        assert (syncer.sync(namespace, "deploy") or pytest.fail()).ready
        assert reconciler.reconcile(namespace, "app")[0].kind == "ready"
        cm = kube.get("v1", "ConfigMap", "app", namespace)
        assert cm is not None and cm["data"] == {"mode": "3"}
    finally:
        for pkg in kube.list(API_VERSION, KIND, namespace):
            kube.delete(API_VERSION, KIND, pkg["metadata"]["name"], namespace)
            reconciler.reconcile(namespace, pkg["metadata"]["name"])
        reconciler.applier.close()
