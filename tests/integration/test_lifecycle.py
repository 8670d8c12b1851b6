"""Package lifecycle through the Kubernetes API, on the local control plane with real git remotes.

A catalog and a deployment repository (bare repositories on disk, reached as ``file://``
remotes), both as Repository objects, and the real Syncer: a PackageRevision created with
kubectl in Proposed opens the promotion branch; patching it to Published merges it and the
deployment pass applies the KubePkg; a branch pushed by ``gitops-kubepkg promote`` shows up as
Proposed and goes when the branch is deleted; the proposer role cannot publish; every revision's
content is readable as PackageRevisionResources.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kubepkg import git
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from tests.integration import cluster

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def web(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web"},
        "spec": {
            "version": version,
            "manifests": {
                "cm": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "web"},
                    "data": {"version": version},
                }
            },
        },
    }


def kubectl(
    kubeconfig: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cluster.kubectl_path(), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.test",
    }
    return subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


class World:
    def __init__(self, kube: Kube, namespace: str, tmp: Path) -> None:
        self.kube, self.namespace = kube, namespace
        self.catalog = git.init_bare(tmp / "catalog.git")
        self.deployment = git.init_bare(tmp / "deploy.git")
        self.catalog_url = f"file://{tmp}/catalog.git"
        self.deployment_url = f"file://{tmp}/deploy.git"
        self.deployment.commit_files("main", {"README.md": b"deploy\n"}, "start")
        for version in ("1.2.0", "1.3.0"):
            commit = self.catalog.commit_files(
                "main", {"web/kubepkg.json": json.dumps(web(version)).encode()}, f"web {version}"
            )
            self.catalog.tag(f"web/v{version}", commit, message=f"web {version}")
        for name, url, kind in (
            ("catalog", self.catalog_url, "catalog"),
            ("deploy", self.deployment_url, "deployment"),
        ):
            kube.apply(
                {
                    "apiVersion": GITOPS_API_VERSION,
                    "kind": "Repository",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"url": url, "type": kind, "forge": "none"},
                }
            )
        self.syncer = Syncer(kube, tmp / "state")

    def sync(self) -> None:
        for outcome in self.syncer.sync_all(self.namespace, force=True):
            assert outcome.ready, outcome

    def revision(self, name: str) -> dict[str, Any] | None:
        return self.kube.get(GITOPS_API_VERSION, "PackageRevision", name, self.namespace)

    def branches(self) -> set[str]:
        return {r for r in self.deployment.refs() if r.startswith("refs/heads/")}


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def proposal(namespace: str, name: str = "prod-web") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "PackageRevision",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "repository": "deploy",
                "catalog": "catalog",
                "packageName": "web",
                "revision": "1.2.0",
                "lifecycle": "Proposed",
            },
        }
    )


def test_proposed_with_kubectl_opens_the_branch_and_published_merges_and_applies(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    world = World(kube, namespace, tmp_path)
    world.sync()
    done = kubectl(kubeconfig, "create", "-f", "-", stdin=proposal(namespace))
    assert done.returncode == 0, done.stderr
    world.sync()

    assert "refs/heads/promote/web/1.2.0" in world.branches()
    obj = world.revision("prod-web")
    assert obj is not None
    assert obj["spec"]["lifecycle"] == "Proposed"
    assert obj["spec"]["tag"] == "web/v1.2.0"
    assert obj["spec"]["target"] == "main"
    assert obj["spec"]["commit"] == world.deployment.resolve("refs/heads/promote/web/1.2.0")
    assert obj["status"]["lifecycle"] == "Proposed"
    assert obj["status"]["branch"] == "promote/web/1.2.0"
    assert ready(obj)["reason"] == "Proposed"
    assert kube.get(API_VERSION, KIND, "web", namespace) is None, "not merged yet: nothing applied"

    # Its content, through the API, without a clone.
    shown = kubectl(
        kubeconfig, "get", "packagerevisionresources", "prod-web", "-n", namespace, "-o", "yaml"
    )
    assert shown.returncode == 0, shown.stderr
    resources = yaml.safe_load(shown.stdout)["spec"]
    assert json.loads(resources["resources"]["kubepkg.json"])["spec"]["version"] == "1.2.0"
    [rendered] = list(yaml.safe_load_all(resources["rendered"]))
    assert (rendered["kind"], rendered["data"]) == ("ConfigMap", {"version": "1.2.0"})
    catalog_content = kube.get(
        GITOPS_API_VERSION, "PackageRevisionResources", "catalog.web.v1.3.0", namespace
    )
    assert catalog_content is not None and "1.3.0" in catalog_content["spec"]["rendered"]

    # Published: the controller approves it (merge pushed with a lease, branch deleted) and the
    # deployment pass applies the merged KubePkg.
    main_before = world.deployment.resolve("refs/heads/main")
    patched = kubectl(
        kubeconfig,
        "patch",
        "packagerevision",
        "prod-web",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"lifecycle":"Published"}}',
    )
    assert patched.returncode == 0, patched.stderr
    world.sync()
    assert "refs/heads/promote/web/1.2.0" not in world.branches()
    merged = world.deployment.resolve("refs/heads/main")
    assert merged != main_before
    assert "Approved-Branch: promote/web/1.2.0" in git.commit_message(world.deployment, merged)
    obj = world.revision("prod-web")
    assert obj is not None
    assert (obj["spec"]["lifecycle"], obj["status"]["lifecycle"]) == ("Published", "Published")
    assert obj["spec"]["commit"] == merged
    assert ready(obj)["reason"] == "Published", ready(obj)
    applied = kube.get(API_VERSION, KIND, "web", namespace)
    assert applied is not None and applied["spec"]["version"] == "1.2.0"

    # A later pass leaves it Published (no branch, merged).
    world.sync()
    obj = world.revision("prod-web")
    assert obj is not None and obj["status"]["lifecycle"] == "Published"

    listed = cli("get", "revisions", "-n", namespace, "--kubeconfig", kubeconfig)
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert "LIFECYCLE" in header and "TARGET" in header
    row = next(line for line in lines if line.startswith("prod-web"))
    assert "Published" in row and "main" in row


def test_a_branch_pushed_by_the_cli_is_proposed_until_deleted_or_approved(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    world = World(kube, namespace, tmp_path)
    opened = cli(
        "promote", world.catalog_url, "web@1.2.0", "--to", world.deployment_url, "--forge", "none"
    )
    assert opened.returncode == 0, opened.stderr
    world.sync()
    obj = world.revision("deploy.web.v1.2.0")
    assert obj is not None, "the open branch shows up as a PackageRevision"
    assert obj["spec"]["lifecycle"] == "Proposed"
    assert obj["spec"]["tag"] == "web/v1.2.0" and obj["spec"]["target"] == "main"
    assert obj["status"]["author"] == "Ada <ada@example.test>"
    assert kube.get(GITOPS_API_VERSION, "PackageRevisionResources", "deploy.web.v1.2.0", namespace)

    # Abandoned: the branch is deleted, and the revision goes with it.
    assert world.deployment.delete_ref("refs/heads/promote/web/1.2.0")
    world.sync()
    assert world.revision("deploy.web.v1.2.0") is None

    # Merged with the CLI's approve: Published for this deployment repository.
    opened = cli(
        "promote", world.catalog_url, "web@1.3.0", "--to", world.deployment_url, "--forge", "none"
    )
    assert opened.returncode == 0, opened.stderr
    world.sync()
    assert world.revision("deploy.web.v1.3.0") is not None
    approved = cli("approve", world.deployment_url, "promote/web/1.3.0")
    assert approved.returncode == 0, approved.stderr
    world.sync()
    obj = world.revision("deploy.web.v1.3.0")
    assert obj is not None
    assert (obj["spec"]["lifecycle"], obj["status"]["lifecycle"]) == ("Published", "Published")


ROLES = REPO / "deploy" / "promotion-roles.yaml"


def bind(kube: Kube, namespace: str, user: str, role: str) -> None:
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{user}-{role}", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }
    )


def test_the_proposer_role_proposes_but_cannot_publish(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    for doc in yaml.safe_load_all(ROLES.read_text()):
        kube.apply(doc)
    bind(kube, namespace, "alice", "gitops-kubepkg-proposer")
    bind(kube, namespace, "bob", "gitops-kubepkg-approver")
    world = World(kube, namespace, tmp_path)

    created = kubectl(kubeconfig, "--as=alice", "create", "-f", "-", stdin=proposal(namespace))
    assert created.returncode == 0, created.stderr
    world.sync()
    assert "refs/heads/promote/web/1.2.0" in world.branches()

    publish = ("patch", "packagerevision", "prod-web", "-n", namespace, "--type=merge")
    patch = ("-p", '{"spec":{"lifecycle":"Published"}}')
    refused = kubectl(kubeconfig, "--as=alice", *publish, *patch)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    # Nor by creating a revision already Published: that merges nothing.
    sneaky = (
        proposal(namespace, "sneaky").replace("Proposed", "Published").replace("1.2.0", "1.3.0")
    )
    assert kubectl(kubeconfig, "--as=alice", "create", "-f", "-", stdin=sneaky).returncode == 0
    world.sync()
    sneaky_obj = world.revision("sneaky")
    assert sneaky_obj is not None and ready(sneaky_obj)["reason"] == "Refused"
    main_before = world.deployment.resolve("refs/heads/main")
    assert "refs/heads/promote/web/1.2.0" in world.branches(), "nothing merged"

    allowed = kubectl(kubeconfig, "--as=bob", *publish, *patch)
    assert allowed.returncode == 0, allowed.stderr
    world.sync()
    assert world.deployment.resolve("refs/heads/main") != main_before
    obj = world.revision("prod-web")
    assert obj is not None and obj["status"]["lifecycle"] == "Published"


def test_a_draft_is_pushed_not_proposed_until_set_to_proposed(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    world = World(kube, namespace, tmp_path)
    # The CLI pushes a draft: a Draft revision.
    pushed = cli("promote", world.catalog_url, "web@1.2.0", "--to", world.deployment_url, "--draft")
    assert pushed.returncode == 0, pushed.stderr
    assert world.branches() == {"refs/heads/main", "refs/heads/draft/web/1.2.0"}
    world.sync()
    obj = world.revision("deploy.web.v1.2.0")
    assert obj is not None
    assert (obj["spec"]["lifecycle"], obj["status"]["lifecycle"]) == ("Draft", "Draft")
    assert obj["status"]["branch"] == "draft/web/1.2.0"
    draft_commit = world.deployment.resolve("refs/heads/draft/web/1.2.0")

    # Set to Proposed: the controller proposes it (the same commit on promote/, draft deleted).
    patched = kubectl(
        kubeconfig, "patch", "packagerevision", "deploy.web.v1.2.0", "-n", namespace,
        "--type=merge", "-p", '{"spec":{"lifecycle":"Proposed"}}',
    )  # fmt: skip
    assert patched.returncode == 0, patched.stderr
    world.sync()
    assert world.branches() == {"refs/heads/main", "refs/heads/promote/web/1.2.0"}
    assert world.deployment.resolve("refs/heads/promote/web/1.2.0") == draft_commit
    obj = world.revision("deploy.web.v1.2.0")
    assert obj is not None
    assert (obj["spec"]["lifecycle"], obj["status"]["lifecycle"]) == ("Proposed", "Proposed")
    assert ready(obj)["reason"] == "Proposed", ready(obj)

    # Created in Draft through the API: the controller pushes the draft branch only.
    asked = proposal(namespace, "api-draft").replace("Proposed", "Draft").replace("1.2.0", "1.3.0")
    assert kubectl(kubeconfig, "create", "-f", "-", stdin=asked).returncode == 0
    world.sync()
    assert "refs/heads/draft/web/1.3.0" in world.branches()
    obj = world.revision("api-draft")
    assert obj is not None and obj["status"]["lifecycle"] == "Draft", obj.get("status")
