"""One KubePkg file as promotion reads and writes it: one document, kept in its own format.

Between git (bytes at a path) and the merge (a JSON value). Reading keeps the raw document (fields
the model does not know survive an upgrade) and also checks it with the model, so promotion never
writes a KubePkg that ``validate`` would refuse. Rewriting a YAML file that is already on the
branch changes only the values that changed: comments, key order, quoting and indentation stay, as
people wrote them (ruamel.yaml's round trip; PyYAML drops comments). Pure.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from gitops_kubepkg.errors import InputError
from gitops_kubepkg.spec import KIND, KubeObject, KubePkg, parse_kubepkgs
from gitops_kubepkg.spec.document import parse_documents


def read(data: bytes, name: str) -> tuple[KubeObject, KubePkg]:
    """The single KubePkg document in ``data`` (raw) and the model's view of it."""
    pkgs = parse_kubepkgs(data, name)
    docs = parse_documents(data, name)
    if len(docs) != 1 or len(pkgs) != 1 or docs[0].get("kind") != KIND:
        raise InputError(
            f"{name}: promotion manages files that hold exactly one KubePkg; this one holds "
            f"{len(pkgs)} (in {len(docs)} document(s))"
        )
    doc: KubeObject = docs[0]
    return doc, pkgs[0]


def write(obj: KubeObject, name: str, *, keep: bytes | None = None) -> bytes:
    """``obj`` as the bytes of ``name`` (JSON for ``.json``, else YAML), checked by the model.

    ``keep``: the file as it is now; a YAML one is edited in place rather than written anew.
    """
    data = (keep is not None and _edited(keep, obj, name)) or render(obj, name)
    parse_kubepkgs(data, name)
    return data


def _edited(before: bytes, obj: KubeObject, name: str) -> bytes | None:
    """``before`` changed to hold ``obj``, comments and layout kept; None when that cannot be
    done faithfully (JSON, several documents, YAML ruamel reads differently from PyYAML)."""
    if name.endswith(".json"):
        return None
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    try:
        tree, indent, dash = load_yaml_guess_indent(before.decode(), yaml=rt)
        if not isinstance(tree, CommentedMap):
            return None
        _update(tree, obj)
        rt.indent(mapping=indent or 2, sequence=(indent or 2) + (dash or 0), offset=dash or 0)
        out = io.StringIO()
        rt.dump(tree, out)
    except (YAMLError, UnicodeDecodeError, ValueError):
        return None
    data = out.getvalue().encode()
    try:
        same = parse_documents(data, name) == [obj]
    except InputError:
        same = False
    return data if same else None


def _update(node: CommentedMap | CommentedSeq, want: Any) -> None:
    """Make ``node`` equal ``want`` in place, touching only what differs."""
    if isinstance(node, CommentedMap):
        for key in [k for k in node if k not in want]:
            del node[key]
        for key, value in want.items():
            if key in node and _same_shape(node[key], value):
                _update(node[key], value)
            elif key not in node or node[key] != value:
                node[key] = value
        return
    for i, value in enumerate(want):
        if _same_shape(node[i], value):
            _update(node[i], value)
        elif node[i] != value:
            node[i] = value


def _same_shape(node: Any, value: Any) -> bool:
    """Whether ``node`` can be edited into ``value`` (maps, or lists of one length)."""
    if isinstance(node, CommentedMap):
        return isinstance(value, Mapping)
    return isinstance(node, CommentedSeq) and isinstance(value, list) and len(node) == len(value)


def render(obj: Any, name: str) -> bytes:
    if name.endswith(".json"):
        return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()
    text = yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return text.encode()
