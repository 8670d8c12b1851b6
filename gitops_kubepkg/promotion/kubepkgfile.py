"""One KubePkg file as promotion reads and writes it: one document, kept in its own format.

Between git (bytes at a path) and the merge (a JSON value). Reading keeps the raw document (fields
the model does not know survive an upgrade) and also checks it with the model, so promotion never
writes a KubePkg that ``validate`` would refuse. Pure.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

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


def write(obj: KubeObject, name: str) -> bytes:
    """``obj`` as the bytes of ``name`` (JSON for ``.json``, else YAML), checked by the model."""
    data = render(obj, name)
    parse_kubepkgs(data, name)
    return data


def render(obj: Any, name: str) -> bytes:
    if name.endswith(".json"):
        return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()
    text = yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return text.encode()
