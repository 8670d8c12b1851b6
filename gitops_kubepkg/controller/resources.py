"""PackageRevisionResources: the content of each PackageRevision, readable through the API.

Runs at the end of a catalog or deployment pass that read the repository (not on idle passes).
For every PackageRevision of the Repository, one PackageRevisionResources of the same name holds
the package's KubePkg file (as committed) and the objects it renders to (``reconcile.render``,
as multi-document YAML), read from the mirror at the revision's commit: ``kubectl get
packagerevisionresources NAME -o yaml`` shows what a revision is without a clone. It is owned by
its PackageRevision (the garbage collector removes it with it) and rewritten only when the
revision's commit changes. Content is bounded (``spec.crds.RESOURCES_LIMIT``): past it the
rendered objects, then the file text, are left out and ``spec.truncated`` says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import yaml

from gitops_kubepkg import git
from gitops_kubepkg.controller.repository import RepositorySpec
from gitops_kubepkg.conventions import label_value, owner_reference
from gitops_kubepkg.errors import GitopsKubepkgError, KubeError
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.render import render
from gitops_kubepkg.sources.catalog import KIND, LABEL_PACKAGE, LABEL_REPOSITORY
from gitops_kubepkg.sources.deployment import ANNOTATION_CATALOG_TAG, kubepkg_paths
from gitops_kubepkg.sources.lifecycle import of_repository
from gitops_kubepkg.sources.mirror import Mirror
from gitops_kubepkg.spec import FILE_NAMES, KubeObject, parse_kubepkgs
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION, RESOURCES_LIMIT

log = logging.getLogger(__name__)
RESOURCES_KIND = "PackageRevisionResources"


def package_path(revision: Mapping[str, Any]) -> str:
    """The directory holding a revision's KubePkg file: ``spec.path``, else the tag's package
    path (``apps/web/v1.2.0`` -> ``apps/web``), else ``spec.packageName``."""
    spec = revision.get("spec") or {}
    if spec.get("path"):
        return str(spec["path"]).strip("/")
    tag = str(spec.get("tag") or "")
    if "/v" in tag:
        return tag.rpartition("/v")[0]
    return str(spec.get("packageName", ""))


def read_files(repo: git.Repository, commit: str, path: str) -> dict[str, str]:
    out = {}
    for name in FILE_NAMES:
        data = repo.read(commit, f"{path}/{name}")
        if data is not None:
            out[name] = data.decode("utf-8", errors="replace")
    return out


def _records_tag(data: bytes, tag: str) -> bool:
    try:
        docs = list(yaml.safe_load_all(data))
    except yaml.YAMLError:
        return False
    for doc in docs:
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        annotations = (meta or {}).get("annotations") if isinstance(meta, dict) else None
        if isinstance(annotations, dict) and annotations.get(ANNOTATION_CATALOG_TAG) == tag:
            return True
    return False


def deployed_path(repo: git.Repository, commit: str, revision: Mapping[str, Any]) -> str:
    """Where a deployment revision's KubePkg is: the directory of the file that records its
    catalog tag (an upgrade lands wherever the package was deployed), else ``package_path``."""
    tag = str((revision.get("spec") or {}).get("tag") or "")
    if tag and not (revision.get("spec") or {}).get("path"):
        for path in kubepkg_paths(e.path for e in repo.walk(commit)):
            data = repo.read(commit, path)
            if data is not None and _records_tag(data, tag):
                return path.rpartition("/")[0]
    return package_path(revision)


def content(files: Mapping[str, str], where: str, limit: int = RESOURCES_LIMIT) -> dict[str, Any]:
    """``resources``, ``rendered``, ``renderError`` and ``truncated`` for the files of one
    revision, within ``limit`` bytes."""
    out: dict[str, Any] = {"resources": dict(files)}
    docs: list[KubeObject] = []
    try:
        for name, text in files.items():
            for pkg in parse_kubepkgs(text.encode(), f"{where}/{name}"):
                docs.extend(render(pkg))
    except GitopsKubepkgError as e:
        out["renderError"] = str(e)[:4096]
    if not files:
        out["renderError"] = f"{where}: no {' or '.join(FILE_NAMES)} at this commit"
    rendered = yaml.safe_dump_all(docs, sort_keys=False) if docs else ""
    size = sum(len(t.encode()) for t in files.values())
    if size + len(rendered.encode()) <= limit:
        if rendered:
            out["rendered"] = rendered
        return out
    out["truncated"] = True
    if size > limit:
        out["resources"] = dict.fromkeys(files, "")
    return out


def resources_object(revision: KubeObject, files: Mapping[str, str], path: str) -> KubeObject:
    meta = revision["metadata"]
    spec = revision.get("spec") or {}
    where = f"{spec.get('repository', '')}:{path}@{str(spec.get('commit', ''))[:12]}"
    return {
        "apiVersion": GITOPS_API_VERSION,
        "kind": RESOURCES_KIND,
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {
                LABEL_REPOSITORY: label_value(str(spec.get("repository", ""))),
                LABEL_PACKAGE: label_value(str(spec.get("packageName", "")).replace("/", ".")),
            },
            "ownerReferences": [
                owner_reference(GITOPS_API_VERSION, KIND, meta["name"], meta["uid"])
            ],
        },
        "spec": {
            "repository": spec.get("repository", ""),
            "packageName": spec.get("packageName", ""),
            "revision": spec.get("revision", ""),
            **({"tag": spec["tag"]} if spec.get("tag") else {}),
            "commit": spec.get("commit", ""),
            "path": path,
            **content(files, where),
        },
    }


def sync_resources(kube: Kube, spec: RepositorySpec, mirror: Mirror) -> list[str]:
    """Write the PackageRevisionResources of every revision of ``spec`` whose commit they do not
    hold yet; delete those whose revision is gone."""
    revisions = [
        r
        for r in of_repository(kube.list(GITOPS_API_VERSION, KIND, spec.namespace), spec.name)
        if (r.get("spec") or {}).get("commit")
    ]
    selector = f"{LABEL_REPOSITORY}={label_value(spec.name)}"
    existing = {
        o["metadata"]["name"]: o
        for o in kube.list(
            GITOPS_API_VERSION, RESOURCES_KIND, spec.namespace, label_selector=selector
        )
    }
    repo = mirror.repository()
    changes = []
    for revision in revisions:
        name = revision["metadata"]["name"]
        commit = str(revision["spec"]["commit"])
        have = existing.get(name)
        if have is not None and (have.get("spec") or {}).get("commit") == commit:
            continue
        if not repo.has(commit):
            continue
        path = (
            package_path(revision)
            if spec.type == "catalog"
            else deployed_path(repo, commit, revision)
        )
        try:
            kube.apply(resources_object(revision, read_files(repo, commit, path), path))
        except KubeError as e:
            log.warning("PackageRevisionResources %s/%s: %s", spec.namespace, name, e)
            continue
        changes.append(f"applied PackageRevisionResources {name}")
    wanted = {r["metadata"]["name"] for r in revisions}
    for name in sorted(set(existing) - wanted):
        if kube.delete(GITOPS_API_VERSION, RESOURCES_KIND, name, spec.namespace):
            changes.append(f"deleted PackageRevisionResources {name}")
    return changes
