"""Catalog pass: read the mirror's tags, decide with ``sources.catalog``, write PackageRevisions.

Runs after the mirror poll for a catalog Repository. The thin I/O around the pure discovery: peel
tags, read the KubePkg files of revisions not recorded yet, list and apply/delete PackageRevision
objects, and report a moved tag as a condition on its PackageRevision and a Kubernetes Event.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from gitops_kubepkg import git
from gitops_kubepkg.clock import SYSTEM, timestamp
from gitops_kubepkg.controller.repository import RepositorySpec
from gitops_kubepkg.conventions import condition, event
from gitops_kubepkg.errors import (
    GitopsKubepkgError,
    InputError,
    KubeError,
    NotFound,
    Problem,
    SignatureError,
)
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.sources import catalog, verify
from gitops_kubepkg.sources.catalog import MovedTag
from gitops_kubepkg.sources.mirror import Mirror
from gitops_kubepkg.sources.verify import VerifyPolicy
from gitops_kubepkg.spec import FILE_NAMES, KubeObject, parse_kubepkgs
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from gitops_kubepkg.spec.document import too_big
from gitops_kubepkg.spec.record import check_record


@dataclass
class CatalogResult:
    revisions: int
    packages: int
    problems: list[Problem] = field(default_factory=list)
    moved: list[MovedTag] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    unverified: list[Problem] = field(default_factory=list)
    """Tags left unpublished because their signature (or their commit's) does not verify."""


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
    kube: Kube,
    spec: RepositorySpec,
    mirror: Mirror,
    refs: dict[str, str],
    policy: VerifyPolicy | None = None,
) -> CatalogResult:
    """One catalog pass; raises (and deletes nothing) when the mirror or the API fails.

    With ``policy``, a tag whose signature does not verify is left out, as if it were not there
    (no PackageRevision, and one published before is withdrawn), and reported."""
    repo = mirror.repository()
    unverified: list[Problem] = []
    found = []
    for c in catalog.candidates(refs, spec.directory):
        target = refs[catalog.TAG_PREFIX + c.tag]
        if policy is not None:
            try:
                verify.verify_tag(repo, target, policy, c.tag)
            except SignatureError as e:
                unverified.append(Problem("", "", str(e)))
                continue
        found.append((c, repo.peel(target)))
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
        tag = obj["spec"]["tag"]
        moved = moved_by_tag.get(tag)
        consistent = consistency(contents[tag], tag) if tag in contents else None
        _write_revision_status(kube, obj, live.get(name), moved, consistent)
        if moved is not None:
            _record_event(kube, spec, obj, moved)
    return CatalogResult(
        revisions=len(found_.revisions),
        packages=len(found_.packages),
        problems=found_.problems,
        moved=found_.moved,
        changes=changes,
        unverified=unverified,
    )


def consistency(files: Mapping[str, bytes], tag: str) -> dict[str, str] | None:
    """The ``Consistent`` condition of a revision whose files were read this pass: False when
    an image is not pinned by digest (the KubePkg's own check, ``spec.record``); None when the
    file does not read (discovery reports that)."""
    for name, data in files.items():
        try:
            pkgs = parse_kubepkgs(data, f"{tag}:{name}")
        except GitopsKubepkgError:
            return None
        if len(pkgs) != 1:
            return None
        findings = check_record(pkgs[0].version, pkgs[0].images, "")
        if findings:
            reason, message = findings[0].reason, "; ".join(f.message for f in findings)
            return {"type": "Consistent", "status": "False", "reason": reason, "message": message}
        message = "every image is pinned by digest"
        return {"type": "Consistent", "status": "True", "reason": "Consistent", "message": message}
    return None


def _write_revision_status(
    kube: Kube,
    obj: KubeObject,
    live: KubeObject | None,
    moved: MovedTag | None,
    consistent: dict[str, str] | None = None,
) -> None:
    """Ready (Published), for a tag that moved TagMoved, and Consistent; written only when it
    differs. Consistent is computed when the revision's files are read (once: its content never
    changes) and kept from the live object on later passes."""
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
    if consistent is None:
        consistent = next((c for c in have if c["type"] == "Consistent"), None)
    if consistent is not None:
        conditions.append(consistent)
    if have == conditions:
        return
    now = timestamp(SYSTEM.now())
    previous = ((live or {}).get("status") or {}).get("conditions") or []
    written = [
        condition(
            c["type"], c["status"] == "True", c["reason"], c["message"], now=now, previous=previous
        )
        for c in conditions
    ]
    meta = obj["metadata"]
    with contextlib.suppress(NotFound):  # deleted meanwhile: nothing to report on
        kube.patch(
            GITOPS_API_VERSION,
            catalog.KIND,
            meta["name"],
            meta["namespace"],
            {"status": {"conditions": written}},
            subresource="status",
        )


def _record_event(kube: Kube, spec: RepositorySpec, obj: KubeObject, moved: MovedTag) -> None:
    """A Warning Event on the PackageRevision, once per (tag, new commit)."""
    meta = obj["metadata"]
    digest = hashlib.sha256(f"{moved.tag}\0{moved.now}".encode()).hexdigest()[:10]
    body = event(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": catalog.KIND,
            "name": meta["name"],
            "namespace": spec.namespace,
            "uid": meta.get("uid", ""),
        },
        "Warning",
        "TagMoved",
        f"Repository {spec.key}: {moved}",
        now=timestamp(SYSTEM.now()),
        name=f"{meta['name']}.{digest}",
    )
    try:
        kube.create(body)
    except KubeError as e:
        if getattr(e, "status", 0) != 409:
            raise
