"""Read bytes into documents: JSON or (multi-document) YAML, with duplicate keys refused.

The first step of every flow that reads a KubePkg file (validate, render, sync, airgap export). It
only parses; what the documents mean is ``model.py``'s business. Errors name the file and the line.

Hostile input is bounded before it can cost much: a file is at most ``MAX_FILE_BYTES`` (checked
with ``stat`` before a file is read; the controller's git reads check a blob's size in its object
header the same way, ``git.Repository.blob_size``), a YAML document may hold at most ``MAX_NODES``
nodes counting every expansion of its aliases (a "billion laughs" file is refused right after
composing, before anything walks the expansion), and nesting is at most ``MAX_DEPTH`` levels in
YAML and JSON alike. The check costs a fraction of composing; composing is linear in the file,
so the size cap bounds the time. Integers past Python's digit limit, recursive aliases and deep
nesting all give one line naming the file, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from gitops_kubepkg.errors import InputError

MAX_FILE_BYTES = 4 * 1024 * 1024
"""The largest KubePkg file we read (from disk or git); upstream's biggest fixtures are ~100 KiB."""
MAX_NODES = 1_000_000
"""YAML nodes a document may hold once every alias is expanded."""
MAX_DEPTH = 200
"""Nesting levels of mappings and lists a document may have."""

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


def too_big(size: int, name: str) -> InputError | None:
    """The error for a file of ``size`` bytes over ``MAX_FILE_BYTES``, or None."""
    if size <= MAX_FILE_BYTES:
        return None
    return InputError(
        f"{name}: {size} bytes, over the {MAX_FILE_BYTES // (1024 * 1024)} MiB limit "
        "for a KubePkg file; not read"
    )


def _where(name: str, node: yaml.Node) -> str:
    mark = node.start_mark
    return f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _too_many(name: str, node: yaml.Node) -> InputError:
    return InputError(
        f"{_where(name, node)}: invalid YAML: more than {MAX_NODES} nodes, counting every "
        "expansion of an alias"
    )


def _too_deep(name: str, node: yaml.Node) -> InputError:
    return InputError(
        f"{_where(name, node)}: invalid YAML: nested more than {MAX_DEPTH} levels deep"
    )


def _check_expansion(root: yaml.Node, name: str) -> None:
    """Refuse a node graph whose alias expansion is too big or too deep, or that is recursive.

    A first pass visits every distinct node once, counting nodes and depth; a document without
    aliases (no node reached twice) is done then. With aliases a second pass remembers each
    node's expanded size and depth, so a document of aliases to aliases costs the size of the
    file, not of its expansion.
    """
    mapping, sequence = yaml.MappingNode, yaml.SequenceNode
    seen: set[int] = set()
    shared = False
    level: list[yaml.Node] = [root]
    depth = 0
    while level:  # breadth first, one level of nesting at a time
        depth += 1
        if depth > MAX_DEPTH:
            raise _too_deep(name, level[0])
        below: list[yaml.Node] = []
        for node in level:
            if id(node) in seen:
                shared = True
                continue
            seen.add(id(node))
            kind = type(node)
            if kind is mapping:
                for pair in node.value:
                    below.extend(pair)
            elif kind is sequence:
                below.extend(node.value)
        if len(seen) > MAX_NODES:
            raise _too_many(name, root)
        level = below
    if shared:
        _check_aliases(root, name)


def _check_aliases(root: yaml.Node, name: str) -> None:
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            size = 1 + sum(sizes[id(c)] for c in children)
            depth = 1 + max((depths[id(c)] for c in children), default=0)
            active.discard(key)
            if size > MAX_NODES:
                raise _too_many(name, node)
            if depth > MAX_DEPTH:
                raise _too_deep(name, node)
            sizes[key], depths[key] = size, depth
            continue
        if key in sizes:
            continue
        if key in active:
            raise InputError(f"{_where(name, node)}: invalid YAML: an alias refers to itself")
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)


def _check_depth(doc: Any, name: str) -> None:
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"{name}: invalid JSON: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _load_yaml(text: str, name: str) -> list[Any]:
    loader = _StrictLoader(text)
    try:
        docs = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _check_expansion(node, name)
            doc = loader.construct_document(node)
            if doc is not None:
                docs.append(doc)
        return docs
    finally:
        loader.dispose()


def _int_limit(e: ValueError) -> bool:
    return "digits" in str(e) and "int" in str(e)


def parse_documents(data: bytes, name: str) -> list[Any]:
    """Every document in ``data``; ``name`` is the file name used in errors and to pick JSON."""
    if error := too_big(len(data), name):
        raise error
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{name}: not UTF-8 text (byte {e.start})") from e
    if not text.strip():
        raise InputError(f"{name}: empty file, want a KubePkg or KubePkgList")
    if name.endswith(".json"):
        try:
            doc = json.loads(text, object_pairs_hook=_refuse_duplicates)
        except json.JSONDecodeError as e:
            raise InputError(f"{name}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
        except RecursionError:
            raise InputError(
                f"{name}: invalid JSON: nested more than {MAX_DEPTH} levels deep"
            ) from None
        except ValueError as e:
            if _int_limit(e):
                raise InputError(f"{name}: invalid JSON: an integer with too many digits") from None
            raise InputError(f"{name}: invalid JSON: {e}") from e
        _check_depth(doc, name)
        return [doc]
    try:
        docs = _load_yaml(text, name)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise InputError(f"{where}: invalid YAML: {e.problem or e.context}") from e
    except yaml.YAMLError as e:
        raise InputError(f"{name}: invalid YAML: {e}") from e
    except RecursionError:
        raise InputError(f"{name}: invalid YAML: nested too deep") from None
    except ValueError as e:
        if _int_limit(e):
            raise InputError(f"{name}: invalid YAML: an integer with too many digits") from None
        raise InputError(f"{name}: invalid YAML: {e}") from e
    if not docs:
        raise InputError(f"{name}: no documents, want a KubePkg or KubePkgList")
    return docs


def read_documents(path: Path) -> list[Any]:
    """Read and parse one file: its size is checked before it is read; an unreadable or too
    big file is an InputError naming it."""
    try:
        size = path.stat().st_size
        if error := too_big(size, str(path)):
            raise error
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # it may have grown since the stat
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    return parse_documents(data, str(path))
