"""Three-way merge of KubePkg objects, per object and per field: upgrades that keep local edits.

The step of ``promote --upgrade`` between reading and writing. Pure: three JSON values in, one out,
plus the conflicts. ``base`` is the catalog revision the deployment was promoted from, ``theirs``
the new catalog revision, ``ours`` the deployment's current (possibly edited) copy. At every field:

- both sides agree, or only one side changed it from ``base``: take that;
- both changed it differently: a conflict, named by its field path
  (``spec.manifests["web.default.deployment"].spec.replicas``);
- mappings merge key by key (so ``spec.manifests`` merges object by object and ``spec.images``
  image by image); lists of objects that all carry a unique ``name`` (containers, ports, env,
  volumes: Kubernetes' own merge key) merge item by item; any other list is one value.

A strategy settles conflicts: ``theirs`` takes the catalog's value, ``ours`` the deployment's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Strategy(Enum):
    """How conflicts end: refused (none), the catalog wins, or the deployment wins."""

    NONE = "none"
    THEIRS = "theirs"
    OURS = "ours"


class _Missing:
    """A field absent on one side (distinct from a field set to null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldConflict:
    """Both sides changed ``path`` from ``base`` differently."""

    path: str
    base: Any
    ours: Any
    theirs: Any

    def describe(self, theirs_name: str = "the catalog", ours_name: str = "the deployment") -> str:
        """``spec.replicas: catalog 1.1.0 says 3, deployment says 5 (was 1)``."""
        was = f" (was {_show(self.base)})" if self.base is not MISSING else " (neither had it)"
        return (
            f"{self.path}: {theirs_name} says {_show(self.theirs)}, "
            f"{ours_name} says {_show(self.ours)}{was}"
        )


@dataclass(frozen=True)
class Merged:
    """The merged value and every conflict met (settled by the strategy, or left when NONE)."""

    value: Any
    conflicts: list[FieldConflict] = field(default_factory=list)


def _show(value: Any) -> str:
    if value is MISSING:
        return "nothing (removed)"
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 80 else text[:77] + "..."


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def field_path(parent: str, key: str) -> str:
    """``parent.key`` for identifiers, ``parent["a.b/c"]`` for any other key."""
    if _IDENT.match(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key)}]"


def _named(items: Any) -> dict[str, Any] | None:
    """A list of objects with unique string ``name`` fields, keyed by name; else None."""
    if not isinstance(items, list) or not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        if item["name"] in out:
            return None
        out[item["name"]] = item
    return out


_Keyed = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def _keyed_lists(base: Any, ours: Any, theirs: Any) -> _Keyed | None:
    """The three sides as name-keyed maps when each present side is a list of named objects."""
    sides: list[dict[str, Any]] = []
    for side in (base, ours, theirs):
        if side is MISSING or side == []:
            sides.append({})
            continue
        named = _named(side)
        if named is None:
            return None
        sides.append(named)
    if all(side is MISSING or side == [] for side in (base, ours, theirs)):
        return None
    return sides[0], sides[1], sides[2]


class _Merger:
    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.conflicts: list[FieldConflict] = []

    def merge(self, base: Any, ours: Any, theirs: Any, path: str) -> Any:
        if ours == theirs:
            return ours
        if ours == base:
            return theirs
        if theirs == base:
            return ours
        if isinstance(ours, dict) and isinstance(theirs, dict):
            return self.merge_maps(base if isinstance(base, dict) else {}, ours, theirs, path)
        keyed = _keyed_lists(base, ours, theirs)
        if keyed is not None and isinstance(ours, list) and isinstance(theirs, list):
            return self.merge_named(keyed, path)
        self.conflicts.append(FieldConflict(path, base, ours, theirs))
        return theirs if self.strategy is Strategy.THEIRS else ours

    def merge_maps(
        self,
        base: Mapping[str, Any],
        ours: Mapping[str, Any],
        theirs: Mapping[str, Any],
        path: str,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # Keys keep the catalog's order, then the deployment's own additions.
        for key in [*theirs, *(k for k in ours if k not in theirs)]:
            value = self.merge(
                base.get(key, MISSING),
                ours.get(key, MISSING),
                theirs.get(key, MISSING),
                field_path(path, key),
            )
            if value is not MISSING:
                out[key] = value
        return out

    def merge_named(self, keyed: _Keyed, path: str) -> list[Any]:
        base, ours, theirs = keyed
        out = []
        for name in [*theirs, *(n for n in ours if n not in theirs)]:
            value = self.merge(
                base.get(name, MISSING),
                ours.get(name, MISSING),
                theirs.get(name, MISSING),
                f"{path}[name={json.dumps(name)}]",
            )
            if value is not MISSING:
                out.append(value)
        return out


def merge3(base: Any, ours: Any, theirs: Any, strategy: Strategy = Strategy.NONE) -> Merged:
    """Merge ``ours`` and ``theirs`` against ``base``; conflicts settled as ``strategy`` says."""
    merger = _Merger(strategy)
    value = merger.merge(base, ours, theirs, "")
    return Merged(value, merger.conflicts)
