"""Promotion against a real Gitea (built from the Go module, sqlite, started and stopped here).

``promote --forge gitea`` pushes the branch and the AGit ref ``refs/for/main``: Gitea opens a real
pull request and prints its URL. The controller sees the branch as a Proposed PackageRevision;
patching it to Published runs ``approve``, whose merge Gitea records as the pull request merged.
A PackageRevision created Proposed through the API opens its pull request the same way (the
Repository's Secret holds the credentials, ``spec.forge: gitea``), and the CLI's ``approve``
merges that one.
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
from tests.integration import gitea
from tests.integration.controllers import wait_until
from tests.integration.test_lifecycle import kubectl, web

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GITOPS_KUBEPKG_GIT_USERNAME": gitea.USER,
        "GITOPS_KUBEPKG_GIT_PASSWORD": gitea.PASSWORD,
    }
    return subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def package(name: str, version: str) -> dict[str, Any]:
    obj = web(version)
    obj["metadata"]["name"] = name
    obj["spec"]["manifests"]["cm"]["metadata"]["name"] = name
    return obj


def pull(forge: gitea.GiteaServer, title: str) -> dict[str, Any] | None:
    return next((p for p in forge.pulls("deploy") if p["title"] == title), None)


def test_promotion_opens_and_merges_real_gitea_pull_requests(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    catalog = git.init_bare(tmp_path / "catalog.git")
    catalog_url = f"file://{tmp_path}/catalog.git"
    for name, version in (("web", "1.2.0"), ("api", "1.0.0")):
        commit = catalog.commit_files(
            "main", {f"{name}/kubepkg.json": json.dumps(package(name, version)).encode()}, name
        )
        catalog.tag(f"{name}/v{version}", commit, message=f"{name} {version}")

    with gitea.gitea_server(tmp_path / "gitea") as forge:
        url = forge.create_repository("deploy")
        credentials = git.Credentials(username=gitea.USER, password=gitea.PASSWORD)
        seed = git.init_bare(tmp_path / "seed.git")
        start = seed.commit_files("main", {"README.md": b"deploy\n"}, "start")
        git.push_with_lease(seed, url, [git.RefUpdate("refs/heads/main", start, None)], credentials)
        forge.wait_pushed("deploy")

        # The CLI opens a real pull request through AGit.
        opened = cli("promote", catalog_url, "web@1.2.0", "--to", url, "--forge", "gitea")
        assert opened.returncode == 0, opened.stderr
        assert f"{forge.url}/{gitea.USER}/deploy/pulls/" in opened.stdout, opened.stdout
        web_pull = pull(forge, "Promote web 1.2.0")
        assert web_pull is not None and web_pull["state"] == "open", forge.pulls("deploy")
        assert web_pull["base"]["ref"] == "main"

        # The controller: credentials from the Repository's Secret, the forge named on it.
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "gitea", "namespace": namespace},
                "stringData": {"username": gitea.USER, "password": gitea.PASSWORD},
            }
        )
        for name, repo_url, kind in (
            ("catalog", catalog_url, "catalog"),
            ("deploy", url, "deployment"),
        ):
            spec: dict[str, Any] = {"url": repo_url, "type": kind}
            if kind == "deployment":
                spec |= {"secretRef": {"name": "gitea"}, "forge": "gitea"}
            kube.apply(
                {
                    "apiVersion": GITOPS_API_VERSION,
                    "kind": "Repository",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": spec,
                }
            )
        syncer = Syncer(kube, tmp_path / "state")

        def sync() -> None:
            for outcome in syncer.sync_all(namespace, force=True):
                assert outcome.ready, outcome

        sync()
        proposed = kube.get(GITOPS_API_VERSION, "PackageRevision", "deploy.web.v1.2.0", namespace)
        assert proposed is not None and proposed["status"]["lifecycle"] == "Proposed"

        # Through the API: a Proposed revision opens a pull request on Gitea too.
        asked = {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "PackageRevision",
            "metadata": {"name": "api-prod", "namespace": namespace},
            "spec": {
                "repository": "deploy",
                "catalog": "catalog",
                "packageName": "api",
                "revision": "1.0.0",
                "lifecycle": "Proposed",
            },
        }
        created = kubectl(kubeconfig, "create", "-f", "-", stdin=yaml.safe_dump(asked))
        assert created.returncode == 0, created.stderr
        sync()
        api_rev = kube.get(GITOPS_API_VERSION, "PackageRevision", "api-prod", namespace)
        assert api_rev is not None and api_rev["status"]["lifecycle"] == "Proposed", api_rev
        api_pull = pull(forge, "Promote api 1.0.0")
        assert api_pull is not None and api_pull["state"] == "open"
        assert api_rev["status"]["requestURL"] == api_pull["html_url"]

        # Published: the controller's approve merges; Gitea marks the pull request merged.
        patched = kubectl(
            kubeconfig,
            "patch",
            "packagerevision",
            "deploy.web.v1.2.0",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec":{"lifecycle":"Published"}}',
        )
        assert patched.returncode == 0, patched.stderr
        sync()
        merged = wait_until(
            lambda: (p := pull(forge, "Promote web 1.2.0")) and p["merged"] and p,
            60,
            "Gitea to record the web pull request merged",
            step=0.5,
        )
        assert merged["state"] == "closed"
        applied = kube.get(API_VERSION, KIND, "web", namespace)
        assert applied is not None and applied["spec"]["version"] == "1.2.0"

        # And the CLI's approve merges the one opened through the API.
        approved = cli("approve", url, "promote/api/1.0.0")
        assert approved.returncode == 0, approved.stderr
        wait_until(
            lambda: (p := pull(forge, "Promote api 1.0.0")) and p["merged"],
            60,
            "Gitea to record the api pull request merged",
            step=0.5,
        )
        sync()
        api_rev = kube.get(GITOPS_API_VERSION, "PackageRevision", "api-prod", namespace)
        assert api_rev is not None and api_rev["status"]["lifecycle"] == "Published"
