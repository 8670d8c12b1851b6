"""Lifecycle pass of a deployment Repository: promotion branches <-> PackageRevisions.

Runs in every pass over a deployment Repository, right after the mirror poll and before the
deployment pass (so a promotion merged here is applied in the same pass). ``sources.lifecycle``
decides; this module reads the cluster and the mirror, carries out what was asked through the API
with the CLI's own code (``promotion.promote.promote`` for Proposed, ``promotion.approve.approve``
for Published: the same checks, leases, retries and forge calls), credentials from the
Repositories' Secrets, and writes what happened into each PackageRevision's status. An idle pass
costs one LIST of the namespace's PackageRevisions and no writes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gitops_kubepkg import git
from gitops_kubepkg.clock import SYSTEM, timestamp
from gitops_kubepkg.controller import repository
from gitops_kubepkg.controller.repository import RepositorySpec
from gitops_kubepkg.conventions import condition, find_condition, redact_url
from gitops_kubepkg.errors import GitopsKubepkgError, InputError, KubeError, NotFound
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.promotion.approve import approve
from gitops_kubepkg.promotion.forge import Forge
from gitops_kubepkg.promotion.promote import Options, default_author, promote, propose
from gitops_kubepkg.promotion.record import TRAILER_TAG, trailers
from gitops_kubepkg.promotion.revisions import Request
from gitops_kubepkg.sources import lifecycle
from gitops_kubepkg.sources.catalog import KIND
from gitops_kubepkg.sources.lifecycle import DRAFT, PROPOSED, PUBLISHED, Branch
from gitops_kubepkg.sources.mirror import Mirror
from gitops_kubepkg.spec import KubeObject
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION

log = logging.getLogger(__name__)

Credentials = Callable[[RepositorySpec], git.Credentials | None]


@dataclass
class LifecycleResult:
    pushed: bool = False
    """A promotion was opened or merged: the remote's refs moved, poll again."""
    changes: list[str] = field(default_factory=list)


def author_of(repo: git.Repository, commit: str) -> str:
    name, email = git.commit_author(repo, commit)
    return f"{name} <{email}>"


def catalog_tag(repo: git.Repository, commit: str) -> str:
    """The catalog tag a promotion commit records in its trailers ("" when it records none)."""
    return trailers(git.commit_message(repo, commit)).get(TRAILER_TAG, "")


def _target(spec: RepositorySpec, obj: KubeObject) -> str:
    return str((obj.get("spec") or {}).get("target") or spec.branch)


def _where(obj: KubeObject) -> str:
    meta = obj.get("metadata") or {}
    return f"PackageRevision {meta.get('namespace', '')}/{meta.get('name', '')}"


class _Writer:
    """Spec and status writes on one revision; every spec write records its own generation."""

    def __init__(self, kube: Kube, changes: list[str]) -> None:
        self.kube = kube
        self.changes = changes

    def spec(self, obj: KubeObject, patch: Mapping[str, Any]) -> int:
        """Merge ``patch`` into the spec when it changes something; the generation after it."""
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        if all(spec.get(k) == v for k, v in patch.items()):
            return int(meta.get("generation") or 0)
        out = self.kube.patch(
            GITOPS_API_VERSION, KIND, meta["name"], meta["namespace"], {"spec": dict(patch)}
        )
        return int(out["metadata"].get("generation") or 0)

    def status(
        self,
        obj: KubeObject,
        generation: int,
        ready: bool,
        reason: str,
        message: str,
        **fields: str,
    ) -> None:
        meta = obj["metadata"]
        live = obj.get("status") or {}
        have = _ready(obj)
        want = condition(
            "Ready", ready, reason, message, now=timestamp(SYSTEM.now()), previous=[have]
        )
        if (
            have == want
            and live.get("observedGeneration") == generation
            and all(live.get(k) == v for k, v in fields.items())
        ):
            return
        with contextlib.suppress(NotFound):
            self.kube.patch(
                GITOPS_API_VERSION,
                KIND,
                meta["name"],
                meta["namespace"],
                {
                    "status": {
                        "observedGeneration": generation,
                        "conditions": [want],
                        **fields,
                    }
                },
                subresource="status",
            )
        self.changes.append(f"PackageRevision {meta['name']}: {reason}")


def sync_lifecycle(
    kube: Kube,
    spec: RepositorySpec,
    mirror: Mirror,
    refs: Mapping[str, str],
    credentials: Credentials,
    repoll: Callable[[], Mapping[str, str]],
) -> LifecycleResult:
    """Carry out the promotions and approvals asked for, then make the revisions say what git
    says. ``repoll`` polls the mirror again (after a push) and returns its refs."""
    result = LifecycleResult()
    writer = _Writer(kube, result.changes)
    decided = _plan(kube, spec, mirror, refs)
    for obj in decided.promote:
        result.pushed |= _promote(kube, spec, obj, credentials, writer)
    for obj, draft in decided.propose:
        result.pushed |= _propose(spec, obj, draft, credentials, writer)
    for obj, branch in decided.publish:
        result.pushed |= _publish(spec, obj, branch, credentials, writer)
    for obj, reason in decided.refused:
        generation = int(obj["metadata"].get("generation") or 0)
        writer.status(obj, generation, False, "Refused", reason)
    if result.pushed:
        refs = repoll()
        decided = _plan(kube, spec, mirror, refs)
    _observe(kube, spec, mirror, decided, writer)
    return result


def _plan(
    kube: Kube, spec: RepositorySpec, mirror: Mirror, refs: Mapping[str, str]
) -> lifecycle.Plan:
    revisions = lifecycle.of_repository(
        kube.list(GITOPS_API_VERSION, KIND, spec.namespace), spec.name
    )
    repo = mirror.repository()

    def merged(obj: KubeObject) -> bool:
        commit = str((obj.get("spec") or {}).get("commit", ""))
        tip = refs.get(f"refs/heads/{_target(spec, obj)}")
        if not commit or not tip or not repo.has(commit):
            return False
        return commit == tip or git.is_ancestor(repo, commit, tip)

    return lifecycle.plan(
        revisions, lifecycle.promotion_branches(refs), merged, lifecycle.draft_branches(refs)
    )


def _catalog(kube: Kube, spec: RepositorySpec, obj: KubeObject) -> RepositorySpec:
    name = str((obj.get("spec") or {}).get("catalog") or "")
    if not name:
        raise InputError(
            f"{_where(obj)}: spec.catalog: required to promote (the catalog Repository in "
            f"namespace {spec.namespace})"
        )
    found = kube.get(repository.API_VERSION, repository.KIND, name, spec.namespace)
    if found is None:
        raise InputError(
            f"{_where(obj)}: spec.catalog: Repository {spec.namespace}/{name} not found"
        )
    catalog = repository.parse(found)
    if catalog.type != "catalog":
        raise InputError(f"{_where(obj)}: spec.catalog: Repository {catalog.key} is not a catalog")
    return catalog


def _token(credentials: git.Credentials | None) -> str:
    return (credentials.bearer_token or credentials.password) if credentials else ""


def _promote(
    kube: Kube, spec: RepositorySpec, obj: KubeObject, credentials: Credentials, writer: _Writer
) -> bool:
    generation = int(obj["metadata"].get("generation") or 0)
    package, version = lifecycle.key(obj)
    draft = (obj.get("spec") or {}).get("lifecycle") == DRAFT
    try:
        catalog = _catalog(kube, spec, obj)
        done = promote(
            replace(
                _options(spec, obj, credentials),
                catalog_url=catalog.url,
                request=Request(package, version),
                catalog_credentials=credentials(catalog),
                path=str((obj.get("spec") or {}).get("path") or ""),
                upgrade=bool((obj.get("spec") or {}).get("upgrade")),
                draft=draft,
            )
        )
    except GitopsKubepkgError as e:
        message = redact_url(str(e))
        log.warning("%s: promote: %s", _where(obj), message)
        writer.status(obj, generation, False, "PromoteFailed", message)
        return False
    generation = writer.spec(
        obj, {"commit": done.commit, "tag": done.origin.tag, "target": done.target}
    )
    name, email = default_author()
    stage = DRAFT if draft else PROPOSED
    writer.status(
        obj,
        generation,
        True,
        stage,
        f"{'pushed' if draft else 'opened'} {done.branch} -> {done.target} at {done.commit[:12]}",
        lifecycle=stage,
        branch=done.branch,
        author=f"{name} <{email}>",
        requestURL=done.request_url,
    )
    return True


def _options(spec: RepositorySpec, obj: KubeObject, credentials: Credentials) -> Options:
    """What ``promote``/``propose`` need of the deployment Repository and the revision."""
    deployment_credentials = credentials(spec)
    return Options(
        catalog_url="",
        request=Request(*lifecycle.key(obj)),
        deployment_url=spec.url,
        target=_target(spec, obj),
        forge=None if spec.forge == "auto" else Forge(spec.forge),
        deployment_credentials=deployment_credentials,
        github_token=_token(deployment_credentials),
        author=default_author(),
    )


def _propose(
    spec: RepositorySpec, obj: KubeObject, draft: Branch, credentials: Credentials, writer: _Writer
) -> bool:
    generation = int(obj["metadata"].get("generation") or 0)
    try:
        done = propose(_options(spec, obj, credentials), draft.name)
    except GitopsKubepkgError as e:
        message = redact_url(str(e))
        log.warning("%s: propose: %s", _where(obj), message)
        writer.status(obj, generation, False, "ProposeFailed", message)
        return False
    generation = writer.spec(obj, {"commit": done.commit, "target": done.target})
    kept = "" if done.draft_deleted else f"; {draft.name} kept (new commits on it)"
    writer.status(
        obj,
        generation,
        True,
        PROPOSED,
        f"proposed {draft.name} as {done.branch} -> {done.target} at {done.commit[:12]}{kept}",
        lifecycle=PROPOSED,
        branch=done.branch,
        requestURL=done.request_url,
    )
    return True


def _publish(
    spec: RepositorySpec,
    obj: KubeObject,
    branch: Branch,
    credentials: Credentials,
    writer: _Writer,
) -> bool:
    generation = int(obj["metadata"].get("generation") or 0)
    target = _target(spec, obj)
    try:
        done = approve(spec.url, branch.name, target, credentials(spec), author=default_author())
    except GitopsKubepkgError as e:
        message = redact_url(str(e))
        log.warning("%s: approve: %s", _where(obj), message)
        writer.status(
            obj,
            generation,
            False,
            "PublishFailed",
            f"{message} (set spec.lifecycle to Proposed and back to Published to try again)",
        )
        return False
    generation = writer.spec(obj, {"commit": done.target_commit, "target": target})
    how = "already merged" if done.already_merged else f"merged (attempt {done.attempts})"
    notes = f"; {'; '.join(done.notes)}" if done.notes else ""
    writer.status(
        obj,
        generation,
        True,
        PUBLISHED,
        f"{branch.name} {how} into {target} at {done.target_commit[:12]}{notes}",
        lifecycle=PUBLISHED,
    )
    return True


def _observe(
    kube: Kube, spec: RepositorySpec, mirror: Mirror, decided: lifecycle.Plan, writer: _Writer
) -> None:
    repo = mirror.repository()
    for obj, branch, note in decided.observe:
        want: dict[str, Any] = {
            "commit": branch.commit,
            "target": _target(spec, obj),
        }
        tag = catalog_tag(repo, branch.commit)
        if tag:
            want["tag"] = tag
        asked = (obj.get("spec") or {}).get("lifecycle")
        stage = DRAFT if branch.draft else PROPOSED
        # A failed request stays asked for (and its failure shown) until the spec changes.
        failed = not note and asked != stage and _ready_reason(obj) in _FAILED
        if asked != stage and not failed:
            want["lifecycle"] = stage
        generation = writer.spec(obj, want)
        fields = {
            "lifecycle": stage,
            "branch": branch.name,
            "author": author_of(repo, branch.commit),
        }
        if note:
            writer.status(obj, generation, False, "Refused", note, **fields)
        elif failed:
            message = str(_ready(obj).get("message", ""))
            writer.status(obj, generation, False, _ready_reason(obj), message, **fields)
        else:
            message = f"{branch.name} -> {want['target']} at {branch.commit[:12]}"
            writer.status(obj, generation, True, stage, message, **fields)
    for branch in decided.create:
        tag = catalog_tag(repo, branch.commit)
        try:
            created = kube.create(lifecycle.new_revision(spec.ref, branch, spec.branch, tag))
        except KubeError as e:
            log.warning("Repository %s: recording %s: %s", spec.key, branch.name, e)
            continue
        writer.changes.append(f"created PackageRevision {created['metadata']['name']}")
        stage = DRAFT if branch.draft else PROPOSED
        writer.status(
            created,
            int(created["metadata"].get("generation") or 0),
            True,
            stage,
            f"{branch.name} -> {spec.branch} at {branch.commit[:12]}",
            lifecycle=stage,
            branch=branch.name,
            author=author_of(repo, branch.commit),
        )
    for obj in decided.merged:
        generation = writer.spec(obj, {"lifecycle": PUBLISHED})
        was = str((obj.get("status") or {}).get("branch", ""))
        writer.status(
            obj,
            generation,
            True,
            PUBLISHED,
            f"{was} was merged into {_target(spec, obj)}",
            lifecycle=PUBLISHED,
        )
    for obj in decided.gone:
        meta = obj["metadata"]
        if kube.delete(GITOPS_API_VERSION, KIND, meta["name"], meta["namespace"]):
            writer.changes.append(f"deleted PackageRevision {meta['name']} (branch abandoned)")


_FAILED = ("PublishFailed", "ProposeFailed")


def _ready(obj: KubeObject) -> Mapping[str, Any]:
    return find_condition((obj.get("status") or {}).get("conditions"), "Ready")


def _ready_reason(obj: KubeObject) -> str:
    return str(_ready(obj).get("reason", ""))
