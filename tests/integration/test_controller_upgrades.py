"""A deployed KubePkg shows on its status when the catalog it came from has a newer revision.

Real git repositories on disk, the real Syncer and kube-apiserver: a catalog with tags, a
deployment repository holding a KubePkg promoted from it, both as Repository objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.promotion.record import make_origin, stamp
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION

pytestmark = pytest.mark.integration


def web(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web"},
        "spec": {
            "version": version,
            "images": {},
            "manifests": {
                "web.default.configmap": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "web", "namespace": "default"},
                    "data": {"version": version},
                }
            },
        },
    }


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, indent=2).encode()


def publish(catalog: git.Repository, doc: dict[str, Any]) -> str:
    """Commit KubePkg ``doc`` to a catalog and tag it ``<name>/v<version>``; the commit."""
    name, version = doc["metadata"]["name"], doc["spec"]["version"]
    commit = catalog.commit_files(
        "main", {f"{name}/kubepkg.json": encode(doc)}, f"{name} {version}"
    )
    catalog.tag(f"{name}/v{version}", commit, message=f"{name} {version}")
    return commit


def deploy(deployment: git.Repository, catalog_url: str, doc: dict[str, Any], commit: str) -> str:
    """Commit ``doc`` into a deployment repository as promoted from the catalog's ``commit``."""
    name, version = doc["metadata"]["name"], doc["spec"]["version"]
    promoted = stamp(doc, make_origin(catalog_url, f"{name}/v{version}", commit))
    return deployment.commit_files(
        "main", {f"apps/{name}/kubepkg.json": encode(promoted)}, f"deploy {name} {version}"
    )


def add_repository(kube: Kube, namespace: str, name: str, url: str, type_: str) -> None:
    kube.apply(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "Repository",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"url": url, "type": type_},
        }
    )


def upgrade(kube: Kube, namespace: str) -> Any:
    obj = kube.get(API_VERSION, KIND, "web", namespace)
    assert obj is not None, "the deployment sync created the KubePkg"
    return (obj.get("status") or {}).get("upgrade")


def test_a_newer_catalog_revision_shows_on_the_kubepkg_status_until_it_is_deployed(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    catalog = git.init_bare(tmp_path / "catalog.git")
    deployment = git.init_bare(tmp_path / "deploy.git")
    catalog_url, deployment_url = f"file://{tmp_path}/catalog.git", f"file://{tmp_path}/deploy.git"
    first = publish(catalog, web("1.0.0"))
    deploy(deployment, catalog_url, web("1.0.0"), first)
    add_repository(kube, namespace, "catalog", catalog_url, "catalog")
    add_repository(kube, namespace, "prod", deployment_url, "deployment")
    syncer = Syncer(kube, tmp_path / "state")

    syncer.sync_all(namespace)
    assert upgrade(kube, namespace) is None, "1.0.0 is the newest revision"

    second = publish(catalog, web("1.1.0"))
    publish(catalog, web("1.2.0-rc.1"))
    syncer.sync_all(namespace)
    assert upgrade(kube, namespace) == {
        "version": "1.1.0",
        "tag": "web/v1.1.0",
        "repository": f"{namespace}/catalog",
    }, "the newest release, never a prerelease"

    deploy(deployment, catalog_url, web("1.1.0"), second)
    syncer.sync_all(namespace)
    assert upgrade(kube, namespace) is None, "deployed: nothing newer any more"


def test_multi_tenant_a_kubepkg_hears_only_of_catalogs_its_namespace_syncs(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """Team b's private catalog, recorded in a file of team a's: team a learns nothing of it."""
    from gitops_kubepkg.tenancy import Tenancy

    team_b = f"{namespace}-b"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": team_b}})
    try:
        catalog = git.init_bare(tmp_path / "catalog.git")
        deployment = git.init_bare(tmp_path / "deploy.git")
        catalog_url = f"file://{tmp_path}/catalog.git"
        deploy(deployment, catalog_url, web("1.0.0"), publish(catalog, web("1.0.0")))
        publish(catalog, web("1.1.0"))
        add_repository(kube, team_b, "catalog", catalog_url, "catalog")
        add_repository(kube, namespace, "prod", f"file://{tmp_path}/deploy.git", "deployment")
        tenancy = Tenancy(multi_tenant=True, local_sources=True)
        syncer = Syncer(kube, tmp_path / "state", tenancy=tenancy)
        syncer.sync_all(team_b)
        syncer.sync_all(namespace)
        assert upgrade(kube, namespace) is None, "team b's catalog is not team a's to read"

        add_repository(kube, namespace, "catalog", catalog_url, "catalog")
        syncer.sync_all(namespace)
        assert upgrade(kube, namespace) == {
            "version": "1.1.0",
            "tag": "web/v1.1.0",
            "repository": f"{namespace}/catalog",
        }, "its own namespace's catalog of that URL answers"
    finally:
        kube.delete("v1", "Namespace", team_b)
