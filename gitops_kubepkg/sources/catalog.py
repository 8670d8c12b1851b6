"""Catalog discovery: tags ``<package-path>/v<semver>`` become PackageRevision objects.

Second step for a catalog Repository, after the mirror poll. Pure: functions of refs, file bytes
and the PackageRevisions that already exist; the controller reads the mirror and the cluster and
hands the data in. The rules:

- a package is a directory holding ``kubepkg.json`` or ``kubepkg.yaml``; a revision is a tag
  ``<directory>/<package>/v<semver>`` whose commit holds that file with ``spec.version`` equal to the
  tag's version; a revision that breaks a rule is a ``Problem`` naming the file and field, and the
  other revisions go on;
- published tags are immutable: when a tag now points elsewhere than the commit its PackageRevision
  recorded, the recorded revision is kept and the move reported;
- the highest non-prerelease revision of each package carries the label ``latest: "true"``;
- a PackageRevision whose tag is gone is deleted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import semver

from gitops_kubepkg.conventions import label_value, owner_reference
from gitops_kubepkg.errors import InputError, Problem, ValidationError
from gitops_kubepkg.spec import FILE_NAMES, KubeObject, parse_kubepkgs
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION, GITOPS_GROUP

KIND = "PackageRevision"
LABEL_REPOSITORY = f"{GITOPS_GROUP}/repository"
LABEL_PACKAGE = f"{GITOPS_GROUP}/package"
LABEL_LATEST = f"{GITOPS_GROUP}/latest"
TAG_PREFIX = "refs/tags/"
_TAG = re.compile(r"^(?P<package>.+)/v(?P<version>[0-9][^/]*)$")


@dataclass(frozen=True)
class RepositoryRef:
    """The Repository object a sync works for."""

    namespace: str
    name: str
    uid: str = ""
    url: str = ""
    directory: str = ""


@dataclass(frozen=True)
class Candidate:
    """A tag that names a revision: ``web/v1.2.0`` -> package ``web``, version ``1.2.0``."""

    tag: str
    package: str
    version: str
    path: str
    """The package directory from the repository root."""


@dataclass(frozen=True)
class Revision:
    """A revision that holds: what its PackageRevision says."""

    package: str
    version: str
    tag: str
    commit: str

    @property
    def semver(self) -> semver.Version:
        return semver.Version.parse(self.version)


@dataclass(frozen=True)
class MovedTag:
    tag: str
    recorded: str
    now: str

    def __str__(self) -> str:
        return (
            f"tag {self.tag} moved from {self.recorded[:12]} to {self.now[:12]}; published tags "
            f"are immutable, keeping {self.recorded[:12]} (tag a new version instead)"
        )


@dataclass(frozen=True)
class Discovery:
    """Everything one catalog pass found."""

    revisions: list[Revision]
    problems: list[Problem] = field(default_factory=list)
    moved: list[MovedTag] = field(default_factory=list)

    @property
    def packages(self) -> set[str]:
        return {r.package for r in self.revisions}


def candidates(refs: Mapping[str, str], directory: str = "") -> list[Candidate]:
    """Every tag under ``directory`` shaped ``<package>/v<semver>``, sorted by tag."""
    prefix = directory.strip("/")
    out = []
    for ref in sorted(refs):
        if not ref.startswith(TAG_PREFIX) or ref.endswith("^{}"):
            continue
        tag = ref[len(TAG_PREFIX) :]
        m = _TAG.match(tag)
        if not m or not semver.Version.is_valid(m.group("version")):
            continue
        path = m.group("package")
        if prefix:
            if not path.startswith(prefix + "/"):
                continue
            package = path[len(prefix) + 1 :]
        else:
            package = path
        out.append(Candidate(tag, package, m.group("version"), path))
    return out


def check_revision(
    candidate: Candidate, commit: str, files: Mapping[str, bytes]
) -> Revision | list[Problem]:
    """The revision when the tag's commit holds a KubePkg of the tag's version, else why not.

    ``files`` maps the KubePkg file names present in the package directory to their bytes.
    """
    where = f"{candidate.path}/@{candidate.tag}"
    present = [n for n in FILE_NAMES if n in files]
    if not present:
        return [
            Problem(
                where,
                "",
                f"tag {candidate.tag}: no {' or '.join(FILE_NAMES[:2])} in {candidate.path}/ "
                f"at {commit[:12]}",
            )
        ]
    name = present[0]
    file = f"{candidate.path}/{name}@{candidate.tag}"
    if len(present) > 1:
        return [Problem(file, "", f"{candidate.path}/ holds both {' and '.join(present)}")]
    try:
        pkgs = parse_kubepkgs(files[name], file)
    except ValidationError as e:
        return list(e.problems)
    except InputError as e:
        return [Problem("", "", str(e))]
    if len(pkgs) != 1:
        return [Problem(file, "", f"a catalog package holds one KubePkg, found {len(pkgs)}")]
    if pkgs[0].version != candidate.version:
        return [
            Problem(
                file,
                "spec.version",
                f"{pkgs[0].version!r} differs from the tag's version {candidate.version!r}",
            )
        ]
    return Revision(candidate.package, candidate.version, candidate.tag, commit)


def recorded_commits(existing: Iterable[KubeObject]) -> dict[str, KubeObject]:
    """Existing PackageRevisions by tag."""
    return {str(obj.get("spec", {}).get("tag", "")): obj for obj in existing}


def discover(
    found: Sequence[tuple[Candidate, str]],
    recorded: Mapping[str, KubeObject],
    contents: Mapping[str, Mapping[str, bytes]],
    *,
    refused: Mapping[str, str] | None = None,
) -> Discovery:
    """Decide every revision.

    ``found`` pairs each candidate with the commit its tag points at now; ``recorded`` is the
    existing PackageRevisions by tag; ``contents`` holds, for each tag not yet recorded, the KubePkg
    files of its package directory (see ``needs_content``); ``refused``: tags whose files were not
    read at all (tag -> why, e.g. too big), each a problem of its own.
    """
    revisions: list[Revision] = []
    problems: list[Problem] = []
    moved: list[MovedTag] = []
    for candidate, commit in found:
        existing = recorded.get(candidate.tag)
        if existing is not None:
            spec = existing.get("spec", {})
            was = str(spec.get("commit", ""))
            if was and was != commit:
                moved.append(MovedTag(candidate.tag, was, commit))
            revisions.append(
                Revision(candidate.package, candidate.version, candidate.tag, was or commit)
            )
            continue
        if refused and candidate.tag in refused:
            problems.append(Problem("", "", refused[candidate.tag]))
            continue
        result = check_revision(candidate, commit, contents.get(candidate.tag, {}))
        if isinstance(result, Revision):
            revisions.append(result)
        else:
            problems.extend(result)
    return Discovery(revisions, problems, moved)


def needs_content(found: Sequence[tuple[Candidate, str]], recorded: Mapping[str, Any]) -> list[str]:
    """Tags whose files must be read: those with no PackageRevision yet."""
    return [c.tag for c, _ in found if c.tag not in recorded]


def latest(revisions: Iterable[Revision]) -> dict[str, str]:
    """Package -> its highest non-prerelease version (packages with only prereleases are absent)."""
    best: dict[str, Revision] = {}
    for r in revisions:
        v = r.semver
        if v.prerelease:
            continue
        if r.package not in best or v > best[r.package].semver:
            best[r.package] = r
    return {p: r.version for p, r in best.items()}


def _dns_name(text: str, limit: int) -> str:
    """``text`` as a DNS-1123 subdomain; a hash suffix when anything had to change."""
    clean = re.sub(r"[^a-z0-9.-]+", "-", text.lower())
    clean = re.sub(r"\.{2,}", ".", clean)
    clean = ".".join(part.strip("-") or "x" for part in clean.split(".")).strip(".")
    if clean == text and len(clean) <= limit:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{clean[: limit - 9].rstrip('.-')}-{digest}"


def revision_name(repository: str, package: str, version: str) -> str:
    """``<repository>.<package with / as .>.v<version>``, e.g. ``catalog.web.v1.2.0``."""
    return _dns_name(f"{repository}.{package.replace('/', '.')}.v{version}", 253)


def repository_selector(repository: RepositoryRef) -> str:
    return f"{LABEL_REPOSITORY}={label_value(repository.name)}"


def render(repository: RepositoryRef, revisions: Iterable[Revision]) -> list[KubeObject]:
    """One PackageRevision object per revision, ``latest`` on each package's highest release."""
    revisions = list(revisions)
    top = latest(revisions)
    out = []
    for r in sorted(revisions, key=lambda r: (r.package, r.semver)):
        labels = {
            LABEL_REPOSITORY: label_value(repository.name),
            LABEL_PACKAGE: label_value(r.package.replace("/", ".")),
        }
        if top.get(r.package) == r.version:
            labels[LABEL_LATEST] = "true"
        metadata: dict[str, Any] = {
            "name": revision_name(repository.name, r.package, r.version),
            "namespace": repository.namespace,
            "labels": labels,
        }
        if repository.uid:
            metadata["ownerReferences"] = [
                owner_reference(GITOPS_API_VERSION, "Repository", repository.name, repository.uid)
            ]
        spec = {
            "repository": repository.name,
            "packageName": r.package,
            "revision": r.version,
            "lifecycle": "Published",
            "commit": r.commit,
            "tag": r.tag,
        }
        if repository.url:
            spec["url"] = repository.url
        out.append(
            {"apiVersion": GITOPS_API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
        )
    return out


@dataclass(frozen=True)
class CatalogPlan:
    """What to send: objects to apply (only those that differ) and names to delete."""

    apply: list[KubeObject]
    delete: list[str]
    unchanged: int


def _differs(desired: KubeObject, live: KubeObject) -> bool:
    if live.get("spec") != desired["spec"]:
        return True
    live_meta = live.get("metadata", {})
    want_meta = desired["metadata"]
    if (live_meta.get("labels") or {}) != want_meta["labels"]:
        return True
    want_owners = [o["uid"] for o in want_meta.get("ownerReferences", [])]
    live_owners = [o.get("uid") for o in live_meta.get("ownerReferences") or []]
    return want_owners != live_owners


def plan(desired: Sequence[KubeObject], existing: Sequence[KubeObject]) -> CatalogPlan:
    """Apply what is new or changed; delete what has no revision any more."""
    live = {obj["metadata"]["name"]: obj for obj in existing}
    want = {obj["metadata"]["name"] for obj in desired}
    apply = [obj for obj in desired if obj["metadata"]["name"] not in live]
    apply += [
        obj
        for obj in desired
        if obj["metadata"]["name"] in live and _differs(obj, live[obj["metadata"]["name"]])
    ]
    delete = sorted(name for name in live if name not in want)
    return CatalogPlan(apply, delete, len(desired) - len(apply))
