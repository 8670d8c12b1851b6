"""Catalog pass: read the mirror's tags, decide with ``sources.catalog``, write PackageRevisions.

Runs after the mirror poll for a catalog Repository. The thin I/O around the pure discovery: peel
tags, read the KubePkg files of revisions not recorded yet, list and apply/delete PackageRevision
objects, and report a moved tag as a condition on its PackageRevision and a Kubernetes Event.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from dataclasses import dataclass, field

from gitops_kubepkg import git
from gitops_kubepkg.controller.repository import RepositorySpec, timestamp
from gitops_kubepkg.errors import InputError, KubeError, NotFound, Problem
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.sources import catalog
from gitops_kubepkg.sources.catalog import MovedTag
from gitops_kubepkg.sources.mirror import Mirror
from gitops_kubepkg.spec import FILE_NAMES, KubeObject
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from gitops_kubepkg.spec.document import too_big


@dataclass
class CatalogResult:
    revisions: int
    packages: int
    problems: list[Problem] = field(default_factory=list)
    moved: list[MovedTag] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


def _too_big(where: str, size: int) -> InputError | None:
    return too_big(size, where)


def _package_files(repo: git.Repository, commit: str, path: str, tag: str) -> dict[str, bytes]:
    """The KubePkg files of a package directory; InputError naming one that is too big to read."""
    out = {}
    for name in FILE_NAMES:
        where = f"{path}/{name}@{tag}"
        data = repo.read(commit, f"{path}/{name}", refuse=functools.partial(_too_big, where))
        if data is not None:
            out[name] = data
    return out


def sync_catalog(
    kube: Kube, spec: RepositorySpec, mirror: Mirror, refs: dict[str, str]
) -> CatalogResult:
    """One catalog pass; raises (and deletes nothing) when the mirror or the API fails."""
    repo = mirror.repository()
    found = [
        (c, repo.peel(refs[catalog.TAG_PREFIX + c.tag]))
        for c in catalog.candidates(refs, spec.directory)
    ]
    existing = kube.list(
        GITOPS_API_VERSION,
        catalog.KIND,
        spec.namespace,
        label_selector=catalog.repository_selector(spec.ref),
    )
    recorded = catalog.recorded_commits(existing)
    wanted = set(catalog.needs_content(found, recorded))
    contents: dict[str, dict[str, bytes]] = {}
    refused: dict[str, str] = {}
    for c, commit in found:
        if c.tag in wanted:
            try:
                contents[c.tag] = _package_files(repo, commit, c.path, c.tag)
            except InputError as e:  # this revision fails alone
                refused[c.tag] = str(e)
    found_ = catalog.discover(found, recorded, contents, refused=refused)
    for revision in found_.revisions:
        if revision.tag in wanted:
            mirror.pin(f"tags/{revision.tag}", revision.commit)
    desired = catalog.render(spec.ref, found_.revisions)
    plan = catalog.plan(desired, existing)
    changes: list[str] = []
    for obj in plan.apply:
        kube.apply(obj)
        changes.append(f"applied PackageRevision {obj['metadata']['name']}")
    for name in plan.delete:
        if kube.delete(GITOPS_API_VERSION, catalog.KIND, name, spec.namespace):
            changes.append(f"deleted PackageRevision {name}")
    moved_by_tag = {m.tag: m for m in found_.moved}
    live = {o["metadata"]["name"]: o for o in existing}
    for obj in desired:
        name = obj["metadata"]["name"]
        moved = moved_by_tag.get(obj["spec"]["tag"])
        _write_revision_status(kube, obj, live.get(name), moved)
        if moved is not None:
            _record_event(kube, spec, obj, moved)
    return CatalogResult(
        revisions=len(found_.revisions),
        packages=len(found_.packages),
        problems=found_.problems,
        moved=found_.moved,
        changes=changes,
    )


def _write_revision_status(
    kube: Kube, obj: KubeObject, live: KubeObject | None, moved: MovedTag | None
) -> None:
    """Ready (Published) and, for a tag that moved, TagMoved; written only when it differs."""
    conditions = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Published",
            "message": f"tag {obj['spec']['tag']} at {obj['spec']['commit'][:12]}",
        }
    ]
    if moved is not None:
        conditions.append(
            {"type": "TagMoved", "status": "True", "reason": "TagMoved", "message": str(moved)}
        )
    have = [
        {k: c.get(k) for k in ("type", "status", "reason", "message")}
        for c in ((live or {}).get("status") or {}).get("conditions") or []
    ]
    if have == conditions:
        return
    now = timestamp()
    meta = obj["metadata"]
    with contextlib.suppress(NotFound):  # deleted meanwhile: nothing to report on
        kube.patch(
            GITOPS_API_VERSION,
            catalog.KIND,
            meta["name"],
            meta["namespace"],
            {"status": {"conditions": [{**c, "lastTransitionTime": now} for c in conditions]}},
            subresource="status",
        )


def _record_event(kube: Kube, spec: RepositorySpec, obj: KubeObject, moved: MovedTag) -> None:
    """A Warning Event on the PackageRevision, once per (tag, new commit)."""
    meta = obj["metadata"]
    digest = hashlib.sha256(f"{moved.tag}\0{moved.now}".encode()).hexdigest()[:10]
    now = timestamp()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{digest}", "namespace": spec.namespace},
        "involvedObject": {
            "apiVersion": GITOPS_API_VERSION,
            "kind": catalog.KIND,
            "name": meta["name"],
            "namespace": spec.namespace,
        },
        "reason": "TagMoved",
        "message": f"Repository {spec.key}: {moved}",
        "type": "Warning",
        "source": {"component": "gitops-kubepkg"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        kube.create(event)
    except KubeError as e:
        if getattr(e, "status", 0) != 409:
            raise
