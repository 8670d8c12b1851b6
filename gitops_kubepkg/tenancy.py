"""Tenancy: as whom a KubePkg is applied, and where the operator lets a namespace reach. Pure.

Read once when the controller starts (``controller --multi-tenant``, ``--default-service-account``,
``--tenancy-policy FILE``, ``--local-sources``) and handed to the parts that decide:

- ``reconcile.kubepkg``: every KubePkg is applied, diffed and pruned as a ServiceAccount of its own
  namespace (``service_account``: the KubePkg's ``gitops.kubepkg.dev/service-account``
  annotation, else the controller's default), and a cluster-scoped kind is applied only where the
  policy grants that kind to the KubePkg's namespace (``allows_kind``);
- ``controller.deployment``: a deployment Repository writes KubePkgs only into its own namespace,
  or into namespaces the policy grants it (``allows_namespace``);
- ``controller.sync``: ``file://`` and local-path Repositories only with ``local_sources``.

The policy is a file the operator owns (deploy/ mounts it from a ConfigMap in the controller's
namespace, which tenants cannot write)::

    grants:
      - namespace: platform          # whose KubePkgs and Repositories ("*": every namespace)
        kinds: [ClusterRole, rbac.authorization.k8s.io/ClusterRoleBinding]   # cluster-scoped
        namespaces: [platform-*]     # where its deployment Repositories may write KubePkgs

Without ``--multi-tenant`` (single-tenant: what the controller's own RBAC allows, today's
behaviour) nothing of this is enforced except that local sources follow ``--local-sources``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gitops_kubepkg.errors import InputError

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
ANNOTATION_SERVICE_ACCOUNT = "gitops.kubepkg.dev/service-account"
"""On a KubePkg: the ServiceAccount of its namespace it is applied as (multi-tenant mode)."""


@dataclass(frozen=True)
class Grant:
    """What the operator allows the KubePkgs and Repositories of ``namespace`` beyond it."""

    namespace: str
    kinds: frozenset[str] = frozenset()
    """Cluster-scoped kinds, as ``Kind`` (any group) or ``group/Kind`` (``""`` group: core)."""
    namespaces: frozenset[str] = frozenset()
    """Other namespaces (glob patterns) its deployment Repositories may write KubePkgs into."""

    def covers(self, namespace: str) -> bool:
        return self.namespace in ("*", namespace)


@dataclass(frozen=True)
class Tenancy:
    multi_tenant: bool = False
    default_service_account: str = ""
    grants: tuple[Grant, ...] = field(default_factory=tuple)
    local_sources: bool = True
    """Whether ``file://`` URLs and local paths may be Repository URLs."""

    def service_account(self, annotations: Any) -> str:
        """The ServiceAccount a KubePkg with these annotations is applied as ("" for none)."""
        named = (annotations or {}).get(ANNOTATION_SERVICE_ACCOUNT) if annotations else None
        return str(named or self.default_service_account)

    def allows_kind(self, namespace: str, api_version: str, kind: str) -> bool:
        """Whether a KubePkg of ``namespace`` may apply this cluster-scoped kind."""
        if not self.multi_tenant:
            return True
        group = api_version.rpartition("/")[0]
        names = {kind, f"{group}/{kind}"}
        return any(g.covers(namespace) and names & g.kinds for g in self.grants)

    def allows_namespace(self, source: str, target: str) -> bool:
        """Whether a deployment Repository of ``source`` may write a KubePkg into ``target``."""
        if not self.multi_tenant or source == target:
            return True
        return any(
            g.covers(source) and any(fnmatch.fnmatchcase(target, p) for p in g.namespaces)
            for g in self.grants
        )

    def describe_grants(self, namespace: str) -> str:
        """What the policy grants ``namespace``, for a refusal's message."""
        mine = [g for g in self.grants if g.covers(namespace)]
        if not mine:
            return "the tenancy policy grants it nothing beyond its namespace"
        kinds = sorted({k for g in mine for k in g.kinds})
        spaces = sorted({n for g in mine for n in g.namespaces})
        return (
            f"the tenancy policy grants it kinds [{', '.join(kinds)}] "
            f"and namespaces [{', '.join(spaces)}]"
        )


def _strings(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InputError(f"{where}: want a list of names")
    return frozenset(value)


def parse_policy(text: str, where: str) -> tuple[Grant, ...]:
    """The grants of a policy document; errors name the file and the field."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"{where}: not YAML: {e}") from e
    if doc is None:
        return ()
    if not isinstance(doc, dict) or set(doc) - {"grants"}:
        raise InputError(f"{where}: want a mapping with one key, grants")
    items = doc.get("grants")
    items = [] if items is None else items
    if not isinstance(items, list):
        raise InputError(f"{where}: grants: want a list")
    grants = []
    for i, item in enumerate(items):
        at = f"{where}: grants[{i}]"
        if not isinstance(item, dict):
            raise InputError(f"{at}: want a mapping")
        unknown = set(item) - {"namespace", "kinds", "namespaces"}
        if unknown:
            raise InputError(f"{at}.{sorted(unknown)[0]}: unknown field")
        namespace = item.get("namespace")
        if not isinstance(namespace, str) or not namespace:
            raise InputError(f"{at}.namespace: required (a namespace, or * for every namespace)")
        grants.append(
            Grant(
                namespace,
                _strings(item.get("kinds"), f"{at}.kinds"),
                _strings(item.get("namespaces"), f"{at}.namespaces"),
            )
        )
    return tuple(grants)


def load_policy(path: Path) -> tuple[Grant, ...]:
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"tenancy policy {path}: {e.strerror or e}") from e
    return parse_policy(text, f"tenancy policy {path}")


TENANTS = "tenants"


def tenant_state_dir(state_dir: Path, namespace: str) -> Path:
    """Where a multi-tenant controller keeps one namespace's mirrors (``<state>/tenants/<ns>``):
    a Repository reads only what was fetched or imported for its own namespace."""
    if not _NAMESPACE.fullmatch(namespace):
        raise InputError(f"namespace {namespace[:80]!r}: not a Kubernetes namespace name")
    return state_dir / TENANTS / namespace


def is_local_url(url: str) -> bool:
    """A ``file://`` URL or a plain path: what reads the controller's own file system."""
    text = url.strip()
    if text.lower().startswith("file:"):
        return True
    return "://" not in text and not _scp_like(text)


def _scp_like(text: str) -> bool:
    """``git@host:path``: git's scp-like SSH syntax (a colon before any slash)."""
    head, colon, _ = text.partition(":")
    return bool(colon) and "/" not in head and len(head) > 1
