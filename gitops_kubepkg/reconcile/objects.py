"""Names for Kubernetes objects and the labels that mark them as ours.

Shared vocabulary of render, plan, apply and prune: an ``ObjectRef`` names one object, the
ownership labels say which KubePkg applied it, and the config digest annotation lets a pass tell
"nothing to do" from "drifted" without asking the server.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gitops_kubepkg.spec import KubeObject

DOMAIN = "gitops.kubepkg.dev"
FIELD_MANAGER = "gitops-kubepkg"
"""The server-side apply field manager of everything the reconciler writes."""
LABEL_PACKAGE = f"{DOMAIN}/package"
LABEL_PACKAGE_NAMESPACE = f"{DOMAIN}/package-namespace"
LABEL_VERSION = f"{DOMAIN}/version"
ANNOTATION_DIGEST = f"{DOMAIN}/config-digest"
ANNOTATION_PRUNE = f"{DOMAIN}/prune"
ANNOTATION_REQUESTED_AT = f"{DOMAIN}/requestedAt"
"""Set to a new value (a timestamp) on a Repository or KubePkg to ask the controller for a pass
now; the pass echoes it in ``status.lastHandledReconcileAt`` (``gitops-kubepkg reconcile``)."""
"""``gitops.kubepkg.dev/prune: disabled`` on a live object keeps it when its package drops it."""
PRUNE_DISABLED = "disabled"
ANNOTATION_ALLOW_EMPTY = f"{DOMAIN}/allow-empty"
"""``gitops.kubepkg.dev/allow-empty: "true"`` on a KubePkg: a render with no objects may prune
everything it applied before (like Argo CD's ``allowEmpty``). Without it such a pass stalls."""
ANNOTATION_DEPENDS_ON = f"{DOMAIN}/depends-on"
"""``gitops.kubepkg.dev/depends-on: "db, infra/cert-manager"`` on a KubePkg: apply it only once
those KubePkgs (``name`` in its own namespace, or ``namespace/name``) are Ready for their current
generation; it is woken by their status changes, never by a timed re-check."""
ANNOTATION_IGNORE_FIELDS = f"{DOMAIN}/ignore-fields"
"""``gitops.kubepkg.dev/ignore-fields: "Deployment/web: spec.replicas"`` on a KubePkg: fields another
manager owns (an HPA's replicas) that we never apply, so we neither revert nor fight it. Entries
``KIND/NAME: path[, path]`` separated by ``;`` or new lines; ``*`` for any kind or name; a path
is dotted (``spec.replicas``, ``metadata.annotations.x``)."""
ANNOTATION_DRIFT = f"{DOMAIN}/drift"
"""``gitops.kubepkg.dev/drift: detect`` on a KubePkg: a change another writer made to an object
it applied (a hand edit, a deletion) is only reported (the ``Drifted`` condition names the objects
and fields, and a Warning event) and not reverted, until the KubePkg's spec changes or the
annotation is removed. ``correct`` (the default) re-applies at once."""
DRIFT_DETECT, DRIFT_CORRECT = "detect", "correct"
SHRINK_WARNING = 0.5
"""``diff`` warns when a package would keep less than this fraction of what it applied."""
FINALIZER = f"{DOMAIN}/finalizer"


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One object: apiVersion, kind, namespace ("" for cluster-scoped) and name."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])

    def to_dict(self) -> dict[str, str]:
        out = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        return out

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def selector(package: str, namespace: str) -> str:
    """The label selector that finds every object a KubePkg applied."""
    return f"{LABEL_PACKAGE}={package},{LABEL_PACKAGE_NAMESPACE}={namespace}"


def config_digest(obj: Mapping[str, Any]) -> str:
    """A stable digest of what we apply (the digest annotation itself left out)."""
    meta = dict(obj.get("metadata") or {})
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k != ANNOTATION_DIGEST
    }
    meta["annotations"] = annotations
    canonical = json.dumps({**obj, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def package_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the KubePkg whose labels the object carries, or None."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(LABEL_PACKAGE), labels.get(LABEL_PACKAGE_NAMESPACE)
    return (str(namespace), str(name)) if name and namespace else None


def is_ours(live: KubeObject, package: str, namespace: str) -> bool:
    return package_of(live) == (namespace, package)


def allows_empty(kubepkg: KubeObject) -> bool:
    annotations = (kubepkg.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ANNOTATION_ALLOW_EMPTY, "")).lower() == "true"


def depends_on(kubepkg: KubeObject) -> list[tuple[str, str]]:
    """The (namespace, name) of the KubePkgs ``kubepkg`` waits for (its depends-on annotation)."""
    meta = kubepkg.get("metadata") or {}
    text = str((meta.get("annotations") or {}).get(ANNOTATION_DEPENDS_ON) or "")
    out = []
    for item in re.split(r"[\s,]+", text):
        if item:
            namespace, _, name = item.rpartition("/")
            out.append((namespace or str(meta.get("namespace") or ""), name))
    return out


def dependency_cycle(
    start: tuple[str, str], dependencies: Callable[[tuple[str, str]], list[tuple[str, str]]]
) -> list[tuple[str, str]]:
    """The shortest depends-on cycle through ``start`` as ``[start, ..., start]`` (``[a, a]``: it
    depends on itself), or [] when ``start`` is on none. ``dependencies`` gives a KubePkg's
    depends-on list ([] for one that does not exist). Breadth first, neighbours in the order the
    annotations list them, so every member of a cycle names it the same way round."""
    parents: dict[tuple[str, str], tuple[str, str]] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for dep in dependencies(node):
                if dep == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if dep not in parents:
                    parents[dep] = node
                    following.append(dep)
        frontier = following
    return []


@dataclass(frozen=True)
class IgnoredField:
    kind: str
    name: str
    path: tuple[str, ...]

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return self.kind in ("*", obj.get("kind")) and self.name in ("*", meta.get("name"))


def ignored_fields(kubepkg: Mapping[str, Any]) -> list[IgnoredField]:
    """The fields a KubePkg's ignore-fields annotation names; ValueError naming a bad entry."""
    meta = kubepkg.get("metadata") or {}
    text = str((meta.get("annotations") or {}).get(ANNOTATION_IGNORE_FIELDS) or "")
    out = []
    for entry in re.split(r"[;\n]+", text):
        if not entry.strip():
            continue
        target, sep, paths = entry.partition(":")
        kind, slash, name = target.strip().partition("/")
        parsed = [tuple(p.strip().split(".")) for p in paths.split(",") if p.strip()]
        if not sep or not slash or not kind or not name or not parsed:
            raise ValueError(
                f"annotation {ANNOTATION_IGNORE_FIELDS}: {entry.strip()!r}: want KIND/NAME: "
                'path[, path] ("*" for any kind or name), e.g. Deployment/web: spec.replicas'
            )
        if any(not all(parsed_path) for parsed_path in parsed):
            raise ValueError(
                f"annotation {ANNOTATION_IGNORE_FIELDS}: {entry.strip()!r}: an empty path element"
            )
        out += [IgnoredField(kind, name, path) for path in parsed]
    return out


def detects_drift(kubepkg: Mapping[str, Any]) -> bool:
    """Whether a KubePkg only reports drift (``drift: detect``); ValueError for a value that is
    neither ``detect`` nor ``correct``."""
    meta = kubepkg.get("metadata") or {}
    value = str((meta.get("annotations") or {}).get(ANNOTATION_DRIFT) or DRIFT_CORRECT)
    if value not in (DRIFT_DETECT, DRIFT_CORRECT):
        raise ValueError(
            f"annotation {ANNOTATION_DRIFT}: {value[:80]!r}: want {DRIFT_DETECT!r} (report a "
            f"change by another writer, never revert it) or {DRIFT_CORRECT!r} (the default)"
        )
    return value == DRIFT_DETECT


def drop_field(obj: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Remove ``path`` from ``obj``; True when it was there."""
    node: Any = obj
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return False
    if isinstance(node, dict) and path[-1] in node:
        del node[path[-1]]
        return True
    return False


def prune_disabled(live: KubeObject) -> bool:
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(ANNOTATION_PRUNE) == PRUNE_DISABLED)
