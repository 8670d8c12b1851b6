"""Deployment sync: the KubePkg files on a branch become KubePkg objects, and only those.

Second step for a deployment Repository, after the mirror poll. Pure: functions of file bytes and of
the KubePkg objects already in the cluster. Every object carries annotations naming the Repository,
the commit that last changed it and the file it came from, and labels to find them again; a commit
re-applies only the KubePkgs whose content it changed (so one push never wakes every package of
the repository); a KubePkg is deleted only when it carries this Repository's annotation and its
file is gone. A file that no longer parses keeps its objects (never delete what we could not
read), and any failure to read one file (even a parser's own limit) is that file's problem: the
other files still sync.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitops_kubepkg.conventions import label_value, redact_url
from gitops_kubepkg.errors import InputError, Problem, ValidationError
from gitops_kubepkg.sources.catalog import RepositoryRef
from gitops_kubepkg.spec import FILE_NAMES, KubeObject, parse_kubepkgs
from gitops_kubepkg.spec.crds import GITOPS_GROUP

ANNOTATION_REPOSITORY = f"{GITOPS_GROUP}/repository"
ANNOTATION_COMMIT = f"{GITOPS_GROUP}/commit"
ANNOTATION_PATH = f"{GITOPS_GROUP}/path"
ANNOTATION_URL = f"{GITOPS_GROUP}/url"
"""The deployment repository's URL, redacted (no password or token ever reaches an object)."""
ANNOTATION_BRANCH = f"{GITOPS_GROUP}/branch"
ANNOTATION_CATALOG_URL = f"{GITOPS_GROUP}/catalog-url"
ANNOTATION_CATALOG_TAG = f"{GITOPS_GROUP}/catalog-tag"
ANNOTATION_CATALOG_COMMIT = f"{GITOPS_GROUP}/catalog-commit"
"""The catalog revision a KubePkg was promoted from: written into the file by ``promote``."""
ANNOTATION_CATALOG_IMAGES = f"{GITOPS_GROUP}/catalog-images"
"""The catalog revision's ``spec.images`` as JSON, written by ``promote`` beside the tag: what the
deployed digests are checked against (the ``Consistent`` condition)."""
SOURCE_FIELDS = {
    "repository": ANNOTATION_REPOSITORY,
    "url": ANNOTATION_URL,
    "branch": ANNOTATION_BRANCH,
    "commit": ANNOTATION_COMMIT,
    "path": ANNOTATION_PATH,
    "catalogUrl": ANNOTATION_CATALOG_URL,
    "catalogTag": ANNOTATION_CATALOG_TAG,
    "catalogCommit": ANNOTATION_CATALOG_COMMIT,
}
"""``status.source`` field -> the annotation of the KubePkg object it echoes."""
ANNOTATION_SOURCE_PROBLEM = f"{GITOPS_GROUP}/source-problem"
"""Why the KubePkg's file no longer reads (``path: why``), "" when it does: the deployment pass
sets it on a KubePkg it keeps, the reconciler stalls that KubePkg with it (blast radius: the bad
file fails its own KubePkg, the others sync)."""
LABEL_REPOSITORY = f"{GITOPS_GROUP}/repository"
LABEL_REPOSITORY_NAMESPACE = f"{GITOPS_GROUP}/repository-namespace"


def repository_key(repository: RepositoryRef) -> str:
    return f"{repository.namespace}/{repository.name}"


def selector(repository: RepositoryRef) -> str:
    """The label selector that finds every KubePkg this Repository applied."""
    return (
        f"{LABEL_REPOSITORY}={label_value(repository.name)},"
        f"{LABEL_REPOSITORY_NAMESPACE}={label_value(repository.namespace)}"
    )


def source_of(obj: Mapping[str, Any]) -> dict[str, str]:
    """Where a KubePkg object came from, as ``status.source`` reports it (fields not known left
    out): the deployment repository, branch, commit and file, and the catalog revision it was
    promoted from. URLs are redacted again here: a hand-written annotation may carry a token."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    out = {}
    for key, annotation in SOURCE_FIELDS.items():
        value = annotations.get(annotation)
        if isinstance(value, str) and value:
            out[key] = redact_url(value) if key in ("url", "catalogUrl") else value
    return out


def catalog_images_of(obj: Mapping[str, Any]) -> dict[str, str] | None:
    """The catalog revision's images a promoted KubePkg records, or None when it records none
    (promoted before the record existed, written by hand) or the record does not read."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(ANNOTATION_CATALOG_IMAGES)
    if not isinstance(text, str):
        return None
    try:
        images = json.loads(text)
    except ValueError:
        return None
    if not isinstance(images, dict):
        return None
    return {str(k): str(v) for k, v in images.items()}


def kubepkg_paths(paths: Iterable[str], directory: str = "") -> list[str]:
    """The KubePkg files among ``paths`` below ``directory`` (hidden directories skipped)."""
    prefix = directory.strip("/")
    out = []
    for path in paths:
        if prefix and not path.startswith(prefix + "/"):
            continue
        parts = path.split("/")
        if parts[-1] not in FILE_NAMES or any(p.startswith(".") for p in parts[:-1]):
            continue
        out.append(path)
    return sorted(out)


@dataclass(frozen=True)
class Desired:
    """What the branch says: objects to apply, and the files that could not be read."""

    objects: list[KubeObject]
    problems: list[Problem] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)


def desired(
    repository: RepositoryRef,
    commit: str,
    files: Mapping[str, bytes],
    *,
    branch: str = "",
    refused: Mapping[str, str] | None = None,
) -> Desired:
    """Every KubePkg in ``files`` (path -> bytes) as an object annotated with where it came from:
    the Repository, its URL (redacted) and ``branch``, the commit and the file.

    ``refused``: files not read at all (path -> why, e.g. too big), unreadable like a bad one."""
    objects: dict[tuple[str, str], KubeObject] = {}
    origin: dict[tuple[str, str], str] = {}
    problems: list[Problem] = [Problem("", "", why) for why in (refused or {}).values()]
    unreadable: set[str] = set(refused or {})
    for path in sorted(files):
        try:
            pkgs = parse_kubepkgs(files[path], path)
        except ValidationError as e:
            problems.extend(e.problems)
            unreadable.add(path)
            continue
        except InputError as e:
            message = str(e)
            problems.append(Problem("" if path in message else path, "", message))
            unreadable.add(path)
            continue
        except (ValueError, RecursionError, MemoryError) as e:
            # A parser limit we did not turn into an InputError (a 5000-digit integer, nesting
            # past the interpreter's depth): this file's failure, not the Repository's.
            problems.append(Problem(path, "", f"cannot be read: {type(e).__name__}: {e}"[:300]))
            unreadable.add(path)
            continue
        for pkg in pkgs:
            obj = pkg.to_object()
            meta: dict[str, Any] = obj["metadata"]
            meta.setdefault("namespace", repository.namespace)
            ident = (meta["namespace"], meta["name"])
            if ident in objects:
                problems.append(
                    Problem(
                        path,
                        "metadata.name",
                        f"KubePkg {ident[0]}/{ident[1]} is also defined in {origin[ident]}",
                    )
                )
                continue
            meta["labels"] = {
                **meta.get("labels", {}),
                LABEL_REPOSITORY: label_value(repository.name),
                LABEL_REPOSITORY_NAMESPACE: label_value(repository.namespace),
            }
            meta["annotations"] = {
                **meta.get("annotations", {}),
                ANNOTATION_REPOSITORY: repository_key(repository),
                ANNOTATION_COMMIT: commit,
                ANNOTATION_PATH: path,
                ANNOTATION_SOURCE_PROBLEM: "",
                **({ANNOTATION_URL: redact_url(repository.url)} if repository.url else {}),
                **({ANNOTATION_BRANCH: branch} if branch else {}),
            }
            objects[ident] = obj
            origin[ident] = path
    return Desired(list(objects.values()), problems, unreadable)


def file_problems(want: Desired, path: str) -> str:
    """What is wrong with the file at ``path``, one line (for ``ANNOTATION_SOURCE_PROBLEM``)."""
    mine = [str(p) for p in want.problems if p.file == path or str(p).startswith(path)]
    text = "; ".join(mine) or f"{path}: cannot be read"
    return text if text.startswith(path) else f"{path}: {text}"


@dataclass(frozen=True)
class DeploymentPlan:
    apply: list[KubeObject]
    delete: list[tuple[str, str]]
    """(namespace, name) of KubePkgs to delete."""
    kept: list[tuple[str, str]]
    """Objects whose file could not be read: left as they are."""
    terminating: list[tuple[str, str]] = field(default_factory=list)
    """Wanted, but the live KubePkg is being deleted: created again from its file once it is gone
    (writing to it now could only be refused, or would land on an object about to vanish)."""


def _ours(obj: KubeObject, repository: RepositoryRef) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(ANNOTATION_REPOSITORY) == repository_key(repository))


def _same(desired: KubeObject, live: KubeObject) -> bool:
    """True when the live KubePkg already holds what the file says. The commit does not count:
    a push re-applies only the KubePkgs whose content changed, so each keeps the commit that last
    changed it (its ``status.source.commit``), and the Repository's status has the branch head."""
    live_meta = live.get("metadata") or {}
    want_meta = desired["metadata"]
    if live.get("spec") != desired["spec"]:
        return False
    for key in ("labels", "annotations"):
        have = live_meta.get(key) or {}
        if any(
            have.get(k) != v
            for k, v in want_meta.get(key, {}).items()
            if (key, k) != ("annotations", ANNOTATION_COMMIT)
        ):
            return False
    return True


def plan(
    repository: RepositoryRef, want: Desired, existing: Sequence[KubeObject]
) -> DeploymentPlan:
    """Apply what differs; delete our KubePkgs whose file is gone (not those whose file is broken)."""
    live = {
        (o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
        for o in existing
        if _ours(o, repository)
    }
    wanted = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in want.objects}
    apply: list[KubeObject] = []
    terminating: list[tuple[str, str]] = []
    for o in want.objects:
        key = (o["metadata"]["namespace"], o["metadata"]["name"])
        if key in live and live[key]["metadata"].get("deletionTimestamp"):
            terminating.append(key)
        elif key not in live or not _same(o, live[key]):
            apply.append(o)
    delete: list[tuple[str, str]] = []
    kept: list[tuple[str, str]] = []
    for key, obj in sorted(live.items()):
        if key in wanted:
            continue
        path = ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_PATH, "")
        if path in want.unreadable:
            kept.append(key)
        else:
            delete.append(key)
    return DeploymentPlan(apply, delete, kept, terminating)
