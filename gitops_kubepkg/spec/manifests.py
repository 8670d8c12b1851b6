"""``spec.manifests`` as every upstream generation wrote it, walked into a flat list of objects.

Gen 1 (the seed) writes a flat map ``{key: object}`` with keys like ``web.default.deployment``;
later generations nest objects in maps and lists at any depth (``{services: {web: {...}}}``,
Jsonnet output with ``null`` for a false condition). Upstream's extractor walks the tree with map
keys sorted and takes any map carrying ``apiVersion`` and ``kind`` as an object, keyed by its
dotted path (``services.web``, ``items[0]``). We walk the same way; the model validates what the
walk yields and render converts it. Pure.

Where upstream silently dropped a leaf that is neither an object nor a group of objects, we
report it (``Leaf.problem``) so validation can name it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

OBJECT_KEYS = ("apiVersion", "kind")
"""A map holding either key is an object (checked as one), not a group to walk into."""


@dataclass(frozen=True)
class Leaf:
    """One entry the walk found: an object at ``key`` (dotted path) or a problem there."""

    key: str
    path: str
    """The field path for errors: ``spec.manifests["a"]["b"][0]``."""
    value: Any
    problem: str = ""


def _child_key(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def walk(value: Any, path: str, key: str = "") -> Iterator[Leaf]:
    """Every object below ``value``, map keys sorted, nulls skipped; non-object leaves reported."""
    if value is None:
        return
    if isinstance(value, dict):
        if key and any(k in value for k in OBJECT_KEYS):
            yield Leaf(key, path, value)
            return
        for name in sorted(value, key=str):
            yield from walk(value[name], f'{path}["{name}"]', _child_key(key, str(name)))
        return
    if isinstance(value, list) and key:
        for i, item in enumerate(value):
            yield from walk(item, f"{path}[{i}]", f"{key}[{i}]")
        return
    if key:
        yield Leaf(key, path, value, "must be a Kubernetes object or a map or list of them")
    else:
        yield Leaf(key, path, value, "must be a map of Kubernetes objects")
