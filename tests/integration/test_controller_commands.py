"""``get`` and ``reconcile`` as a user runs them, against real objects on the local control
plane: tables, wide and JSON output, and the errors for what does not exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.cli import main
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from tests.integration.controllers import RunningController, edit_config_map_by_hand, wait_until

pytestmark = pytest.mark.integration


def kubepkg(version: str) -> bytes:
    return json.dumps(
        {
            "apiVersion": "octohelm.tech/v1alpha1",
            "kind": "KubePkg",
            "metadata": {"name": "web"},
            "spec": {"version": version, "manifests": {}},
        }
    ).encode()


def test_get_lists_what_a_controller_pass_made(
    kube: Kube,
    kubeconfig: str,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = git.init_bare(tmp_path / "catalog.git")
    for version in ("1.0.0", "1.1.0"):
        commit = repo.commit_files("main", {"web/kubepkg.json": kubepkg(version)}, version)
        repo.tag(f"web/v{version}", commit)
    kube.apply(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "Repository",
            "metadata": {"name": "catalog", "namespace": namespace},
            "spec": {"url": f"file://{tmp_path / 'catalog.git'}", "type": "catalog"},
        }
    )
    cluster = ["--kubeconfig", kubeconfig]
    once = ["controller", "--once", "-n", namespace, "--state-dir", str(tmp_path / "s")]
    assert main([*once, *cluster]) == 0
    capsys.readouterr()

    assert main(["get", "revisions", "-n", namespace, *cluster]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "NAME", "PACKAGE", "REVISION", "LATEST", "REPOSITORY", "LIFECYCLE", "TARGET", "AGE"
    ]  # fmt: skip
    assert [line.split()[:-1] for line in table[1:]] == [
        ["catalog.web.v1.0.0", "web", "1.0.0", "catalog", "Published"],
        ["catalog.web.v1.1.0", "web", "1.1.0", "true", "catalog", "Published"],
    ]

    assert main(["get", "repositories", "-n", namespace, "-o", "wide", *cluster]) == 0
    wide = capsys.readouterr().out.splitlines()
    assert "URL" in wide[0] and "LAST SYNC" in wide[0]
    assert wide[1].split()[:5] == ["catalog", "catalog", repo.resolve("refs/heads/main")[:12], "1", "True"]  # type: ignore[index]  # fmt: skip

    assert main(["get", "repos", "-A", "-o", "json", *cluster]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["kind"] == "List"
    assert f"{namespace}/catalog" in {
        f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in listed["items"]
    }

    assert main(["get", "kubepkgs", "-n", namespace, *cluster]) == 0
    assert "No KubePkg objects found" in capsys.readouterr().err
    assert main(["get", "kubepkg", "nope", "-n", namespace, *cluster]) == 1
    assert f"KubePkg {namespace}/nope not found" in capsys.readouterr().err
    assert main(["get", "widgets", *cluster]) == 1
    assert "unknown resource 'widgets'" in capsys.readouterr().err


def test_reconcile_without_a_controller_times_out_and_says_what_to_check(
    kube: Kube, kubeconfig: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    kube.apply(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "Repository",
            "metadata": {"name": "lonely", "namespace": namespace},
            "spec": {"url": "file:///nowhere", "type": "catalog"},
        }
    )
    args = ["-n", namespace, "--kubeconfig", kubeconfig]
    assert main(["reconcile", "repository", "lonely", "--timeout", "1s", *args]) == 2
    err = capsys.readouterr().err
    assert "did not handle the request within 1s; is it running?" in err
    obj = kube.get(GITOPS_API_VERSION, "Repository", "lonely", namespace)
    assert obj is not None and obj["metadata"]["annotations"]["gitops.kubepkg.dev/requestedAt"]
    assert main(["reconcile", "repository", "missing", *args]) == 1
    assert f"Repository {namespace}/missing not found" in capsys.readouterr().err


def test_reconcile_kubepkg_runs_a_pass_now_and_reverts_a_hand_edit(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
        "data": {"mode": "safe"},
    }
    kube.apply(
        {
            "apiVersion": "octohelm.tech/v1alpha1",
            "kind": "KubePkg",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "version": "1.0.0",
                "manifests": {f"settings.{namespace}.configmap": settings},
            },
        }
    )
    args = ["-n", namespace, "--kubeconfig", kubeconfig]
    with RunningController(
        kubeconfig, tmp_path / "state", "-n", namespace, "--no-leader-elect", log=tmp_path / "log"
    ):
        wait_until(lambda: kube.get("v1", "ConfigMap", "settings", namespace), 60, "the apply")
        edit_config_map_by_hand(kube, namespace, "settings", {"mode": "edited"})
        # The periodic resync is minutes away: only the requested pass reverts the edit now.
        assert main(["reconcile", "kubepkg", "web", "--timeout", "60s", *args]) == 0
        edited = kube.get("v1", "ConfigMap", "settings", namespace)
        assert edited is not None and edited["data"] == {"mode": "safe"}
    out = capsys.readouterr().out
    assert f"KubePkg {namespace}/web applied 1.0.0" in out
    assert main(["reconcile", "kubepkg", "missing", *args]) == 1
    assert f"KubePkg {namespace}/missing not found" in capsys.readouterr().err
