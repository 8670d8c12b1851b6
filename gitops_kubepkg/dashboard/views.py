"""What the dashboard's JSON says, from cached objects. Pure.

Between the cache (``state.py``) and the HTTP answers (``server.py``): every endpoint's body is
built here from objects already read, so the shapes ``API.md`` promises are tested without a
server. Nothing here reads the cluster or the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gitops_kubepkg.conventions import redact_text, redact_url
from gitops_kubepkg.reconcile.status import CURRENT, inventory_of
from gitops_kubepkg.sources.catalog import LABEL_LATEST
from gitops_kubepkg.sources.deployment import (
    ANNOTATION_CATALOG_COMMIT,
    ANNOTATION_CATALOG_TAG,
    ANNOTATION_CATALOG_URL,
)
from gitops_kubepkg.spec.record import history_of

Obj = Mapping[str, Any]

READY, PROGRESSING, DEGRADED, STALLED, SUSPENDED, UNKNOWN = (
    "Ready",
    "Progressing",
    "Degraded",
    "Stalled",
    "Suspended",
    "Unknown",
)
HEALTHS = (READY, PROGRESSING, DEGRADED, STALLED, SUSPENDED, UNKNOWN)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
"""Kinds whose Pods the KubePkg page lists under them (by their ``spec.selector``)."""


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


def _text(obj: Any, *path: str) -> str:
    value = _get(obj, *path)
    return "" if value is None else str(value)


def condition(obj: Obj, type_: str) -> Mapping[str, Any]:
    for c in _get(obj, "status", "conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == type_:
            return c
    return {}


def key(obj: Obj) -> tuple[str, str]:
    return _text(obj, "metadata", "namespace"), _text(obj, "metadata", "name")


def conditions(obj: Obj) -> list[dict[str, str]]:
    return [
        {
            k: redact_text(str(c.get(k, "")))
            for k in ("type", "status", "reason", "message", "lastTransitionTime")
        }
        for c in _get(obj, "status", "conditions") or []
        if isinstance(c, Mapping)
    ]


# -- repositories -----------------------------------------------------------------------------


def repository_row(obj: Obj) -> dict[str, Any]:
    ready = condition(obj, "Ready")
    namespace, name = key(obj)
    return {
        "namespace": namespace,
        "name": name,
        "kind": _text(obj, "spec", "type"),
        "url": redact_url(_text(obj, "spec", "url")),
        "branch": _text(obj, "spec", "branch"),
        "ready": str(ready.get("status") or "Unknown"),
        "reason": str(ready.get("reason") or ""),
        "message": redact_text(str(ready.get("message") or "")),
        "commit": _text(obj, "status", "lastFetchedCommit"),
        "lastSync": _text(obj, "status", "lastSyncTime"),
        "suspended": bool(_get(obj, "spec", "suspend")),
        "airgap": bool(_get(obj, "spec", "airgap")),
    }


# -- KubePkgs ---------------------------------------------------------------------------------


def health(obj: Obj, suspended: bool = False) -> tuple[str, str, str]:
    """(health, reason, message) of a KubePkg from its conditions: Stalled needs a human; Ready;
    Reconciling after a failed pass (a ``...Failed`` reason, retried with backoff) is Degraded,
    otherwise Progressing; Ready False alone is Degraded; no conditions yet is Unknown. A KubePkg
    whose deployment Repository is suspended is Suspended whatever it last reported."""
    ready = condition(obj, "Ready")
    stalled = condition(obj, "Stalled")
    reconciling = condition(obj, "Reconciling")
    reason = str(ready.get("reason") or "")
    message = redact_text(str(ready.get("message") or ""))
    if suspended:
        return SUSPENDED, "RepositorySuspended", "its deployment Repository is suspended"
    if stalled.get("status") == "True":
        return STALLED, str(stalled.get("reason") or reason), message
    if ready.get("status") == "True":
        return READY, reason, message
    if reconciling.get("status") == "True":
        why = str(reconciling.get("reason") or reason)
        return (DEGRADED if why.endswith("Failed") else PROGRESSING), why, message
    if ready.get("status") == "False":
        return DEGRADED, reason, message
    return UNKNOWN, reason, message


def upgrade_of(obj: Obj) -> dict[str, str] | None:
    upgrade = _get(obj, "status", "upgrade")
    if not isinstance(upgrade, Mapping) or not upgrade.get("version"):
        return None
    return {k: str(upgrade.get(k, "")) for k in ("version", "tag", "repository")}


def kubepkg_row(
    obj: Obj, suspended: bool = False, owner: tuple[str, int | None] = ("", None)
) -> dict[str, Any]:
    namespace, name = key(obj)
    state, reason, message = health(obj, suspended)
    return {
        "namespace": namespace,
        "name": name,
        "version": _text(obj, "spec", "version"),
        "appliedVersion": _text(obj, "status", "lastAppliedVersion"),
        "health": state,
        "reason": reason,
        "message": message,
        "repository": _text(obj, "status", "source", "repository"),
        "commit": _text(obj, "status", "source", "commit"),
        "path": _text(obj, "status", "source", "path"),
        "objects": len(inventory_of(_get(obj, "status") or {})),
        "owner": owner[0],
        "shard": owner[1],
        "upgrade": upgrade_of(obj),
    }


def suspended_repositories(repositories: Iterable[Obj]) -> set[str]:
    """``namespace/name`` of every suspended Repository."""
    return {"/".join(key(r)) for r in repositories if _get(r, "spec", "suspend")}


def overview(
    repositories: Sequence[Obj],
    kubepkgs: Sequence[Obj],
    owner: Callable[[str, str], tuple[str, int | None]] = lambda ns, n: ("", None),
) -> dict[str, Any]:
    suspended = suspended_repositories(repositories)
    repo_rows = sorted(
        (repository_row(r) for r in repositories), key=lambda r: (r["namespace"], r["name"])
    )
    pkg_rows = sorted(
        (
            kubepkg_row(
                k,
                _text(k, "status", "source", "repository") in suspended,
                owner(*key(k)),
            )
            for k in kubepkgs
        ),
        key=lambda r: (r["namespace"], r["name"]),
    )
    upgrades = [
        {
            "namespace": r["namespace"],
            "name": r["name"],
            "version": r["appliedVersion"] or r["version"],
            "available": r["upgrade"]["version"],
            "tag": r["upgrade"]["tag"],
            "repository": r["upgrade"]["repository"],
        }
        for r in pkg_rows
        if r["upgrade"]
    ]
    repo_counts = {"Ready": 0, "NotReady": 0, "Suspended": 0}
    for r in repo_rows:
        repo_counts[
            "Suspended" if r["suspended"] else "Ready" if r["ready"] == "True" else "NotReady"
        ] += 1
    pkg_counts = dict.fromkeys(HEALTHS, 0)
    for p in pkg_rows:
        pkg_counts[p["health"]] += 1
    return {
        "repositories": repo_rows,
        "kubepkgs": pkg_rows,
        "upgrades": upgrades,
        "counts": {"repositories": repo_counts, "kubepkgs": pkg_counts},
    }


def event_row(event: Obj) -> dict[str, Any]:
    involved = _get(event, "involvedObject") or {}
    return {
        "type": _text(event, "type"),
        "reason": _text(event, "reason"),
        "message": redact_text(_text(event, "message")),
        "object": {k: str(involved.get(k, "")) for k in ("kind", "namespace", "name")},
        "count": int(_get(event, "count") or 1),
        "firstSeen": _text(event, "firstTimestamp") or _text(event, "eventTime"),
        "lastSeen": _text(event, "lastTimestamp")
        or _text(event, "eventTime")
        or _text(event, "firstTimestamp"),
    }


def events_for(kubepkg: Obj, events: Iterable[Obj], limit: int = 100) -> list[dict[str, Any]]:
    """Events of the KubePkg and of the objects its inventory names, newest first."""
    namespace, name = key(kubepkg)
    wanted = {("KubePkg", namespace, name)}
    wanted |= {(r.kind, r.namespace, r.name) for r in inventory_of(_get(kubepkg, "status") or {})}
    rows = []
    for e in events:
        involved = _get(e, "involvedObject") or {}
        ident = (
            str(involved.get("kind", "")),
            str(involved.get("namespace", "") or ""),
            str(involved.get("name", "")),
        )
        if ident in wanted:
            rows.append(event_row(e))
    rows.sort(key=lambda r: r["lastSeen"], reverse=True)
    return rows[:limit]


def inventory_tree(kubepkg: Obj, health_state: str, message: str) -> dict[str, Any]:
    """The KubePkg and its objects, each with the health its last pass recorded
    (``status.resources`` lists what was not plainly Current)."""
    status = _get(kubepkg, "status") or {}
    recorded: dict[tuple[str, str, str, str], Mapping[str, Any]] = {}
    for r in status.get("resources") or []:
        if isinstance(r, Mapping):
            recorded[
                (
                    str(r.get("apiVersion", "")),
                    str(r.get("kind", "")),
                    str(r.get("namespace", "") or ""),
                    str(r.get("name", "")),
                )
            ] = r
    children = []
    for ref in sorted(inventory_of(status)):
        found = recorded.get((ref.api_version, ref.kind, ref.namespace, ref.name)) or {}
        children.append(
            {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "namespace": ref.namespace,
                "name": ref.name,
                "health": str(found.get("state") or CURRENT),
                "message": redact_text(str(found.get("message") or "")),
                "children": [],
            }
        )
    namespace, name = key(kubepkg)
    return {
        "kind": "KubePkg",
        "namespace": namespace,
        "name": name,
        "health": health_state,
        "message": message,
        "children": children,
    }


def kubepkg_detail(
    kubepkg: Obj, repository: Obj | None, events: Iterable[Obj], suspended: bool = False
) -> dict[str, Any]:
    namespace, name = key(kubepkg)
    state, reason, message = health(kubepkg, suspended)
    status = _get(kubepkg, "status") or {}
    source = status.get("source") or {}
    annotations = _get(kubepkg, "metadata", "annotations") or {}
    return {
        "namespace": namespace,
        "name": name,
        "version": _text(kubepkg, "spec", "version"),
        "appliedVersion": str(status.get("lastAppliedVersion") or ""),
        "health": state,
        "reason": reason,
        "message": message,
        "source": {
            "repository": str(source.get("repository", "")),
            "url": redact_url(_text(repository, "spec", "url")) if repository else "",
            "branch": str(source.get("branch", "") or _text(repository, "spec", "branch")),
            "path": str(source.get("path", "")),
            "commit": str(source.get("commit", "")),
        },
        "catalog": {
            "url": redact_url(str(annotations.get(ANNOTATION_CATALOG_URL, ""))),
            "tag": str(annotations.get(ANNOTATION_CATALOG_TAG, "")),
            "commit": str(annotations.get(ANNOTATION_CATALOG_COMMIT, "")),
        },
        "upgrade": upgrade_of(kubepkg),
        "images": {str(k): str(v) for k, v in (status.get("images") or {}).items()},
        "history": [r.to_dict() for r in history_of(status)],
        "conditions": conditions(kubepkg),
        "events": events_for(kubepkg, events),
        "inventory": inventory_tree(kubepkg, state, message),
    }


# -- the catalog ------------------------------------------------------------------------------


def catalog(revisions: Sequence[Obj]) -> dict[str, Any]:
    """Packages of every catalog Repository, each with its revisions (newest first), the latest
    release, and a warning per tag that moved after it was published."""
    packages: dict[tuple[str, str], dict[str, Any]] = {}
    warnings = []
    for rev in revisions:
        namespace, name = key(rev)
        package = _text(rev, "spec", "packageName")
        repository = f"{namespace}/{_text(rev, 'spec', 'repository')}"
        moved = condition(rev, "TagMoved")
        moved_message = (
            redact_text(str(moved.get("message") or "")) if moved.get("status") == "True" else ""
        )
        latest = bool(_get(rev, "metadata", "labels", LABEL_LATEST))
        row = {
            "name": name,
            "namespace": namespace,
            "version": _text(rev, "spec", "revision"),
            "tag": _text(rev, "spec", "tag"),
            "commit": _text(rev, "spec", "commit"),
            "created": _text(rev, "metadata", "creationTimestamp"),
            "lifecycle": _text(rev, "spec", "lifecycle"),
            "latest": latest,
            "ready": str(condition(rev, "Ready").get("status") or "Unknown"),
            "movedTag": moved_message,
        }
        entry = packages.setdefault(
            (repository, package),
            {"name": package, "repository": repository, "latest": "", "revisions": []},
        )
        entry["revisions"].append(row)
        if latest:
            entry["latest"] = row["version"]
        if moved_message:
            warnings.append(
                {
                    "repository": repository,
                    "package": package,
                    "tag": row["tag"],
                    "message": moved_message,
                }
            )
    for entry in packages.values():
        entry["revisions"].sort(key=lambda r: (r["created"], r["version"]), reverse=True)
    return {
        "packages": [packages[k] for k in sorted(packages)],
        "warnings": sorted(warnings, key=lambda w: (w["repository"], w["tag"])),
    }
