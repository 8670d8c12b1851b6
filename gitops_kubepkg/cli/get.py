"""``gitops-kubepkg get repositories|revisions|kubepkgs [NAME]``: what the controller did, as tables.

Reads the objects from the cluster and prints them like ``kubectl get``: one row per object,
``-o wide`` for more columns, ``-o json|yaml`` for the objects themselves (a ``List``), ``-A`` for
every namespace. The columns come from status: Ready and its message, the fetched commit, the
applied version, the source commit, the number of objects applied.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gitops_kubepkg.cli._cluster import add_cluster_flags, connect
from gitops_kubepkg.cli.controller import DEFAULT_LEASE_NAMESPACE
from gitops_kubepkg.cli.output import dump, table
from gitops_kubepkg.controller.shards import shard_of, shard_owners
from gitops_kubepkg.errors import InputError
from gitops_kubepkg.reconcile.status import inventory_of

Obj = Mapping[str, Any]
Column = tuple[str, Callable[[Obj], str]]


def _field(obj: Obj, *path: str) -> Any:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _text(obj: Obj, *path: str) -> str:
    value = _field(obj, *path)
    return "" if value is None else str(value)


def _condition(obj: Obj, kind: str = "Ready") -> Mapping[str, Any]:
    for c in _field(obj, "status", "conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == kind:
            return c
    return {}


def age(created: str, now: datetime | None = None) -> str:
    """A short age as kubectl prints it: 90s, 12m, 47h, 3d (``<unknown>`` without a time)."""
    try:
        then = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _ready(obj: Obj) -> str:
    return str(_condition(obj).get("status") or "Unknown")


def _message(obj: Obj) -> str:
    c = _condition(obj)
    message = str(c.get("message") or c.get("reason") or "")
    return message if len(message) <= 80 else message[:77] + "..."


def _age(obj: Obj) -> str:
    return age(_text(obj, "metadata", "creationTimestamp"))


def _short(commit: str) -> str:
    return commit[:12]


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    columns: Sequence[Column]
    wide: Sequence[Column]


def _kinds() -> dict[str, Kind]:
    from gitops_kubepkg.controller.repository import API_VERSION as REPOSITORY_API
    from gitops_kubepkg.sources.catalog import KIND as REVISION_KIND
    from gitops_kubepkg.sources.catalog import LABEL_LATEST
    from gitops_kubepkg.spec import API_VERSION as KUBEPKG_API
    from gitops_kubepkg.spec import KIND as KUBEPKG_KIND

    repositories = Kind(
        REPOSITORY_API,
        "Repository",
        [
            ("TYPE", lambda o: _text(o, "spec", "type")),
            ("REVISION", lambda o: _short(_text(o, "status", "lastFetchedCommit"))),
            ("PACKAGES", lambda o: _text(o, "status", "packageCount")),
            ("READY", _ready),
            ("MESSAGE", _message),
            ("AGE", _age),
        ],
        [
            ("URL", lambda o: _text(o, "spec", "url")),
            ("BRANCH", lambda o: _text(o, "spec", "branch")),
            ("INTERVAL", lambda o: _text(o, "spec", "interval")),
            ("SUSPENDED", lambda o: str(bool(_field(o, "spec", "suspend"))).lower()),
            ("LAST SYNC", lambda o: _text(o, "status", "lastSyncTime")),
        ],
    )
    revisions = Kind(
        REPOSITORY_API,
        REVISION_KIND,
        [
            ("PACKAGE", lambda o: _text(o, "spec", "packageName")),
            ("REVISION", lambda o: _text(o, "spec", "revision")),
            (
                "LATEST",
                lambda o: "true" if _field(o, "metadata", "labels", LABEL_LATEST) else "",
            ),
            ("REPOSITORY", lambda o: _text(o, "spec", "repository")),
            ("LIFECYCLE", lambda o: _text(o, "spec", "lifecycle")),
            ("TARGET", lambda o: _text(o, "spec", "target")),
            ("AGE", _age),
        ],
        [
            ("TAG", lambda o: _text(o, "spec", "tag")),
            ("REQUEST", lambda o: _text(o, "status", "requestURL") or _text(o, "status", "branch")),
            ("AUTHOR", lambda o: _text(o, "status", "author")),
            ("COMMIT", lambda o: _short(_text(o, "spec", "commit"))),
            ("READY", _ready),
        ],
    )
    kubepkgs = Kind(
        KUBEPKG_API,
        KUBEPKG_KIND,
        [
            ("VERSION", lambda o: _text(o, "spec", "version")),
            ("READY", _ready),
            ("STATUS", _message),
            ("AGE", _age),
        ],
        [
            ("OBJECTS", lambda o: str(len(inventory_of(o.get("status") or {})))),
            ("REPOSITORY", lambda o: _text(o, "status", "source", "repository")),
            ("COMMIT", lambda o: _short(_text(o, "status", "source", "commit"))),
            ("PATH", lambda o: _text(o, "status", "source", "path")),
            ("UPGRADE", lambda o: _text(o, "status", "upgrade", "version")),
        ],
    )
    return {
        **dict.fromkeys(("repositories", "repository", "repo", "repos", "gitrepo"), repositories),
        **dict.fromkeys(
            ("revisions", "revision", "packagerevisions", "packagerevision", "pkgrev"), revisions
        ),
        **dict.fromkeys(("kubepkgs", "kubepkg", "kpkg"), kubepkgs),
    }


RESOURCES = ("repositories", "revisions", "kubepkgs")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "get",
        help="list Repositories, PackageRevisions or KubePkgs (like kubectl get)",
        description="List Repositories, PackageRevisions or KubePkgs with their status.",
    )
    p.add_argument("resource", metavar="RESOURCE", help=" | ".join(RESOURCES))
    p.add_argument("name", nargs="?", default="", metavar="NAME", help="only this object")
    p.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list across every namespace"
    )
    p.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table")
    p.add_argument(
        "--controller-namespace",
        default=os.environ.get("POD_NAMESPACE") or DEFAULT_LEASE_NAMESPACE,
        metavar="NS",
        help="where the controller's Leases are (-o wide shows each object's owning replica "
        "when the controller is sharded)",
    )
    p.add_argument("--leader-election-id", default="gitops-kubepkg-controller", metavar="NAME")
    add_cluster_flags(p)
    p.set_defaults(run=run)


def rows(kind: Kind, objects: Sequence[Obj], *, wide: bool, namespaces: bool) -> list[list[str]]:
    columns = [*kind.columns, *(kind.wide if wide else ())]
    out = []
    for obj in objects:
        row = [_text(obj, "metadata", "namespace")] if namespaces else []
        row.append(_text(obj, "metadata", "name"))
        row += [value(obj) for _, value in columns]
        out.append(row)
    return out


def header(kind: Kind, *, wide: bool, namespaces: bool) -> list[str]:
    columns = [*kind.columns, *(kind.wide if wide else ())]
    return [*(["NAMESPACE"] if namespaces else []), "NAME", *(name for name, _ in columns)]


def run(args: argparse.Namespace) -> int:
    kinds = _kinds()
    kind = kinds.get(args.resource.lower())
    if kind is None:
        raise InputError(f"unknown resource {args.resource!r}: want one of {', '.join(RESOURCES)}")
    if args.name and args.all_namespaces:
        raise InputError("NAME and -A do not go together: give -n NAMESPACE")
    namespace = "" if args.all_namespaces else args.namespace
    kube = connect(args)
    try:
        if args.name:
            one = kube.get(kind.api_version, kind.kind, args.name, namespace)
            if one is None:
                raise InputError(f"{kind.kind} {namespace}/{args.name} not found")
            objects = [one]
        else:
            objects = kube.list(kind.api_version, kind.kind, namespace)
        owners = (
            shard_owners(kube, args.controller_namespace, args.leader_election_id)
            if args.output == "wide" and kind.kind in ("Repository", "KubePkg")
            else {}
        )
    finally:
        kube.close()
    if owners:  # sharded: the replica holding each object's shard Lease
        shards = max(owners) + 1

        def owner(o: Obj) -> str:
            meta = o.get("metadata") or {}
            shard = shard_of(str(meta.get("namespace", "")), str(meta.get("name", "")), shards)
            return f"{owners.get(shard, '(none)')} (shard {shard})"

        kind = Kind(kind.api_version, kind.kind, kind.columns, [*kind.wide, ("OWNER", owner)])
    objects.sort(key=lambda o: (_text(o, "metadata", "namespace"), _text(o, "metadata", "name")))
    if args.output in ("json", "yaml"):
        if args.name:
            dump(objects[0], args.output)
        else:
            dump({"apiVersion": "v1", "kind": "List", "items": objects}, args.output)
        return 0
    if not objects:
        where = "any namespace" if args.all_namespaces else f"{namespace} namespace"
        print(f"No {kind.kind} objects found in {where}.", file=sys.stderr)
        return 0
    wide = args.output == "wide"
    namespaces = bool(args.all_namespaces)
    table(
        rows(kind, objects, wide=wide, namespaces=namespaces),
        header(kind, wide=wide, namespaces=namespaces),
    )
    return 0
