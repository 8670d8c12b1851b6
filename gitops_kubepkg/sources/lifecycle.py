"""Deployment lifecycle: promotion branches in a deployment repository are PackageRevisions. Pure.

Next to ``sources.catalog`` (a catalog tag is a Published PackageRevision), this maps a deployment
repository's git state onto the same kind:

- an open branch ``promote/<package>/<version>`` is a PackageRevision in lifecycle ``Proposed``
  (target branch, catalog tag, commit; who wrote it and the merge request go in its status); a
  branch ``draft/<package>/<version>`` (``promote --draft``: pushed, no merge request) is
  ``Draft``, and proposing it moves its commit to the ``promote/`` branch;
- a branch that is gone and whose commit the target holds was merged: ``Published`` for that
  deployment repository; one that is gone unmerged was abandoned, and its PackageRevision goes;
- a PackageRevision asked for through the API (``spec.lifecycle: Proposed`` or ``Draft`` with no
  branch yet, ``Proposed`` patched onto a Draft, ``Published`` patched onto one the controller
  saw Proposed) is a request to ``promote``, ``propose`` or ``approve``; ``controller.lifecycle`` carries it out with the CLI's own code.

The controller tells a request from what it observed by ``status.observedGeneration``: every
write it makes to a revision's spec also records the generation that write produced, so only a
change by someone else (a ``kubectl patch``) leaves ``metadata.generation`` ahead. Publishing
needs such a change on a revision whose status says Proposed: a revision created already
``Published`` publishes nothing, so the RBAC verb ``create`` (proposer) never merges and only
``patch``/``update`` (approver) does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import semver

from gitops_kubepkg.conventions import label_value, owner_reference
from gitops_kubepkg.sources.catalog import (
    KIND,
    LABEL_PACKAGE,
    LABEL_REPOSITORY,
    RepositoryRef,
    revision_name,
)
from gitops_kubepkg.spec import KubeObject
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION

BRANCH_PREFIX = "promote/"
DRAFT_PREFIX = "draft/"
HEADS = "refs/heads/"
DRAFT, PROPOSED, PUBLISHED = "Draft", "Proposed", "Published"


def branch_name(package: str, version: str) -> str:
    """``promote/<package>/<version>``: the branch (the merge request) of one promotion."""
    return f"{BRANCH_PREFIX}{package}/{version}"


def draft_branch_name(package: str, version: str) -> str:
    """``draft/<package>/<version>``: a promotion pushed but not proposed yet."""
    return f"{DRAFT_PREFIX}{package}/{version}"


@dataclass(frozen=True)
class Branch:
    """An open promotion branch (or a draft one)."""

    package: str
    version: str
    commit: str
    draft: bool = False

    @property
    def name(self) -> str:
        name = draft_branch_name if self.draft else branch_name
        return name(self.package, self.version)


def _branches(refs: Mapping[str, str], prefix: str) -> dict[tuple[str, str], Branch]:
    out = {}
    for ref, commit in sorted(refs.items()):
        if not ref.startswith(HEADS + prefix):
            continue
        package, _, version = ref[len(HEADS + prefix) :].rpartition("/")
        if package and semver.Version.is_valid(version):
            out[(package, version)] = Branch(package, version, commit, prefix == DRAFT_PREFIX)
    return out


def promotion_branches(refs: Mapping[str, str]) -> dict[tuple[str, str], Branch]:
    """(package, version) -> its open branch; other branches are not promotions."""
    return _branches(refs, BRANCH_PREFIX)


def draft_branches(refs: Mapping[str, str]) -> dict[tuple[str, str], Branch]:
    """(package, version) -> its draft branch ``draft/<package>/<version>``."""
    return _branches(refs, DRAFT_PREFIX)


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def key(obj: Mapping[str, Any]) -> tuple[str, str]:
    spec = _spec(obj)
    return str(spec.get("packageName", "")), str(spec.get("revision", ""))


def changed_by_someone_else(obj: Mapping[str, Any]) -> bool:
    """True when the spec changed since the controller last wrote or acted on it."""
    meta = obj.get("metadata") or {}
    return _status(obj).get("observedGeneration") != meta.get("generation")


def of_repository(objects: Iterable[KubeObject], repository: str) -> list[KubeObject]:
    """The PackageRevisions naming ``repository`` (labelled or created by hand)."""
    return [o for o in objects if _spec(o).get("repository") == repository]


@dataclass
class Plan:
    """What one pass over a deployment repository's revisions does."""

    promote: list[KubeObject] = field(default_factory=list)
    """Asked for Proposed (or Draft), no branch yet: run ``promote`` (``--draft``)."""
    propose: list[tuple[KubeObject, Branch]] = field(default_factory=list)
    """Patched from Draft to Proposed while its draft branch is there: run ``propose``."""
    publish: list[tuple[KubeObject, Branch]] = field(default_factory=list)
    """Patched to Published while its branch is open: run ``approve``."""
    refused: list[tuple[KubeObject, str]] = field(default_factory=list)
    """Asked for something that cannot be done; the reason goes in its status."""
    observe: list[tuple[KubeObject, Branch, str]] = field(default_factory=list)
    """Its branch (or draft branch) is there: spec back to what git says (Proposed or Draft,
    commit, target), with a note when a request was refused."""
    create: list[Branch] = field(default_factory=list)
    """Branches nobody recorded (pushed by the CLI): a new Proposed (or Draft) revision."""
    merged: list[KubeObject] = field(default_factory=list)
    """Seen Proposed, branch gone, its commit on the target: Published."""
    gone: list[KubeObject] = field(default_factory=list)
    """Seen Proposed or Draft, branch gone unmerged: abandoned, deleted."""


def plan(
    revisions: Iterable[KubeObject],
    branches: Mapping[tuple[str, str], Branch],
    merged: Callable[[KubeObject], bool],
    drafts: Mapping[tuple[str, str], Branch] | None = None,
) -> Plan:
    """Decide every revision of one deployment repository, given its open promotion branches
    and draft branches; ``merged(obj)`` says whether its target holds the commit it records."""
    drafts = drafts or {}
    out = Plan()
    seen: set[tuple[str, str]] = set()
    for obj in revisions:
        k = key(obj)
        seen.add(k)
        want = str(_spec(obj).get("lifecycle", ""))
        was = str(_status(obj).get("lifecycle", ""))
        changed = changed_by_someone_else(obj)
        branch, draft = branches.get(k), drafts.get(k)
        if branch is not None:
            note = ""
            if want == PUBLISHED and changed:
                if was == PROPOSED:
                    out.publish.append((obj, branch))
                    continue
                note = (
                    "Published was set before the controller showed it Proposed; publish by "
                    "setting spec.lifecycle to Published now"
                )
            elif want == DRAFT and changed:
                note = f"{branch.name} is proposed already; a proposal does not go back to Draft"
            out.observe.append((obj, branch, note))
        elif draft is not None:
            if want == PROPOSED and changed:
                out.propose.append((obj, draft))
            elif want == PUBLISHED and changed:
                out.observe.append((obj, draft, "a draft is proposed before it is published"))
            else:
                out.observe.append((obj, draft, ""))
        elif want in (PROPOSED, DRAFT) and changed:
            out.promote.append(obj)
        elif was in (PROPOSED, DRAFT):
            (out.merged if was == PROPOSED and merged(obj) else out.gone).append(obj)
        elif want == PUBLISHED and changed and was != PUBLISHED:
            out.refused.append((obj, "no open promotion branch to publish; create it Proposed"))
    out.create = [b for k, b in sorted(branches.items()) if k not in seen]
    out.create += [b for k, b in sorted(drafts.items()) if k not in seen and k not in branches]
    return out


def new_revision(repository: RepositoryRef, branch: Branch, target: str, tag: str) -> KubeObject:
    """The Proposed (or, for a draft branch, Draft) PackageRevision of a branch pushed without
    one (``gitops-kubepkg promote``)."""
    metadata: dict[str, Any] = {
        "name": revision_name(repository.name, branch.package, branch.version),
        "namespace": repository.namespace,
        "labels": {
            LABEL_REPOSITORY: label_value(repository.name),
            LABEL_PACKAGE: label_value(branch.package.replace("/", ".")),
        },
    }
    if repository.uid:
        metadata["ownerReferences"] = [
            owner_reference(GITOPS_API_VERSION, "Repository", repository.name, repository.uid)
        ]
    return {
        "apiVersion": GITOPS_API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "repository": repository.name,
            "packageName": branch.package,
            "revision": branch.version,
            "lifecycle": DRAFT if branch.draft else PROPOSED,
            "commit": branch.commit,
            "target": target,
            **({"tag": tag} if tag else {}),
        },
    }
