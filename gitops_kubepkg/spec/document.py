"""Read bytes into documents: JSON or (multi-document) YAML, with duplicate keys refused.

The first step of every flow that reads a KubePkg file (validate, render, sync, airgap export). It
only parses; what the documents mean is ``model.py``'s business. Errors name the file and the line.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from gitops_kubepkg.errors import InputError

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses a key given twice in one mapping (YAML allows it silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Hashable, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Hashable, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_documents(data: bytes, name: str) -> list[Any]:
    """Every document in ``data``; ``name`` is the file name used in errors and to pick JSON."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{name}: not UTF-8 text (byte {e.start})") from e
    if not text.strip():
        raise InputError(f"{name}: empty file, want a KubePkg or KubePkgList")
    if name.endswith(".json"):
        try:
            return [json.loads(text, object_pairs_hook=_refuse_duplicates)]
        except json.JSONDecodeError as e:
            raise InputError(f"{name}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
        except ValueError as e:
            raise InputError(f"{name}: invalid JSON: {e}") from e
    try:
        docs = [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise InputError(f"{where}: invalid YAML: {e.problem or e.context}") from e
    except yaml.YAMLError as e:
        raise InputError(f"{name}: invalid YAML: {e}") from e
    if not docs:
        raise InputError(f"{name}: no documents, want a KubePkg or KubePkgList")
    return docs


def read_documents(path: Path) -> list[Any]:
    """Read and parse one file; an unreadable file is an InputError naming it."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    return parse_documents(data, str(path))
