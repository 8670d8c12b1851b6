"""``status.digests`` and ``status.images``: the lock a KubePkg archive carries in ``kubepkg.json``.

Upstream's tools (octohelm/kubepkg ``digestresolver.go``, crpe ``kubepkg.dart``) resolve every
image of a package and write what the archive holds into the package's status: ``status.images``
maps each image reference to the digest shipped, and ``status.digests`` lists every blob as a
DigestMeta ``{type: manifest|blob, digest, name, size, tag, platform}``, ``name`` being the
repository it belongs to. Upstream's importers read nothing else to place a blob (a blob the list
does not name is silently dropped), so our export writes both, and our importer uses them to know
each blob's kind, size and repository before its bytes arrive, in whatever order the writer chose.

The KubePkg model (``gitops_kubepkg.spec``) does not keep ``status``; this module reads it from
the same ``kubepkg.json`` document the model validated, and writes it for the exporter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gitops_kubepkg.errors import InputError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.digest import Digest, parse_digest
from gitops_kubepkg.spec import LIST_KIND, parse_image

MANIFEST = "manifest"
BLOB = "blob"


@dataclass(frozen=True)
class DigestMeta:
    type: str
    """``manifest`` (a manifest or an index) or ``blob`` (a config or a layer)."""
    digest: Digest
    name: str
    """The repository, normalised (``docker.io/library/nginx``)."""
    size: int
    tag: str = ""
    platform: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "digest": str(self.digest),
            "name": self.name,
            "size": self.size,
        }
        if self.tag:
            out["tag"] = self.tag
        if self.platform:
            out["platform"] = self.platform
        return out


@dataclass(frozen=True)
class Lock:
    """One package's ``status``: ``images`` {reference: digest} and ``digests``."""

    package: str
    images: dict[str, Digest]
    digests: list[DigestMeta]


def kind_of(media_type: str) -> str:
    return MANIFEST if media_type in mediatype.MANIFESTS else BLOB


def read_locks(data: bytes, where: str) -> list[Lock]:
    """The ``status`` of every package in ``kubepkg.json`` (a KubePkg or a KubePkgList), in order.

    ``data`` has already passed ``parse_kubepkgs``; this reads only ``status`` and refuses a
    DigestMeta or an image digest it cannot use, naming the field.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{where}: not JSON: {e}") from e
    if isinstance(doc, dict) and doc.get("kind") == LIST_KIND:
        items = doc.get("items") or []
        docs = [(f"items[{i}].", item) for i, item in enumerate(items)]
    else:
        docs = [("", doc)]
    return [_read_lock(item, f"{where}: {prefix}status") for prefix, item in docs]


def _read_lock(doc: Any, where: str) -> Lock:
    name = str(((doc or {}).get("metadata") or {}).get("name", ""))
    status = doc.get("status") if isinstance(doc, dict) else None
    if status is None:
        return Lock(name, {}, [])
    if not isinstance(status, dict):
        raise InputError(f"{where}: want an object")
    images: dict[str, Digest] = {}
    raw_images = status.get("images") or {}
    if not isinstance(raw_images, dict):
        raise InputError(f"{where}.images: want a map of reference to digest")
    for ref, value in raw_images.items():
        if value in ("", None):
            continue
        if not isinstance(value, str):
            raise InputError(f"{where}.images[{ref!r}]: want a digest string")
        images[str(ref)] = parse_digest(value, where=f"{where}.images[{ref!r}]")
    raw_digests = status.get("digests") or []
    if not isinstance(raw_digests, list):
        raise InputError(f"{where}.digests: want a list of DigestMeta")
    metas = [_read_meta(m, f"{where}.digests[{i}]") for i, m in enumerate(raw_digests)]
    return Lock(name, images, metas)


def _read_meta(obj: Any, where: str) -> DigestMeta:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: want a DigestMeta object")
    kind = obj.get("type")
    if kind not in (MANIFEST, BLOB):
        raise InputError(f"{where}.type: want 'manifest' or 'blob', got {kind!r}")
    digest = obj.get("digest")
    if not isinstance(digest, str):
        raise InputError(f"{where}.digest: required")
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InputError(f"{where}.size: want a non-negative integer, got {size!r}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name: required (the repository the blob belongs to)")
    try:
        repository = parse_image(name).repository
    except ValueError as e:
        raise InputError(f"{where}.name: {e}") from e
    tag, platform = obj.get("tag") or "", obj.get("platform") or ""
    if not isinstance(tag, str) or not isinstance(platform, str):
        raise InputError(f"{where}: tag and platform must be strings")
    return DigestMeta(
        kind, parse_digest(digest, where=f"{where}.digest"), repository, size, tag, platform
    )
