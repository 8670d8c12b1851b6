"""Manifests and indexes: parse, check, and list what each one references.

Every flow that walks an image graph goes through ``parse_manifest``: the exporter (which blobs to
pull), the importer (is everything a tag reaches present, are the media types known), the server
(which child of an index fits a client that does not accept indexes) and the push client. The bytes
are never re-serialised, except when ``--platform`` filters an index (``filter_index``), so digests
stay the source's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitops_kubepkg.errors import InputError, RegistryError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.digest import Digest, digest_bytes, parse_digest


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, other: Platform | None) -> bool:
        """``linux/arm64`` matches ``linux/arm64/v8``; a variant given must be equal."""
        if other is None:
            return False
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return not self.variant or self.variant == other.variant


def parse_platform(text: str) -> Platform:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InputError(f"--platform {text!r}: want os/arch[/variant], like linux/amd64")
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.platform is not None:
            p: dict[str, str] = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                p["variant"] = self.platform.variant
            out["platform"] = p
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest or index. ``children`` are manifests (index) or config + layers."""

    media_type: str
    digest: Digest
    raw: bytes
    children: tuple[Descriptor, ...]

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatype.INDEXES


def parse_descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: want a descriptor object")
    mt, dg, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(mt, str) or not mediatype.is_well_formed(mt):
        raise InputError(f"{where}.mediaType: {mt!r} is not a media type")
    if not isinstance(dg, str):
        raise InputError(f"{where}.digest: required")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InputError(f"{where}.size: want a non-negative integer, got {size!r}")
    platform = None
    p = obj.get("platform")
    if (
        isinstance(p, dict)
        and isinstance(p.get("os"), str)
        and isinstance(p.get("architecture"), str)
    ):
        platform = Platform(p["os"], p["architecture"], str(p.get("variant") or ""))
    ann = obj.get("annotations") or {}
    if not isinstance(ann, dict) or not all(isinstance(v, str) for v in ann.values()):
        raise InputError(f"{where}.annotations: want a map of strings")
    return Descriptor(mt, parse_digest(dg, where=f"{where}.digest"), size, platform, ann)


def parse_manifest(raw: bytes, media_type: str, digest: Digest, what: str) -> Manifest:
    """Check that ``raw`` is a manifest of ``media_type`` we can walk, and list its children.

    ``what`` names the source in errors (a tar entry, a repository and reference).
    """
    if media_type not in mediatype.MANIFESTS:
        raise RegistryError(
            f"{what}: unknown manifest media type {media_type!r}",
            code="MANIFEST_INVALID",
            status=400,
        )
    if len(raw) > mediatype.MAX_MANIFEST_BYTES:
        raise RegistryError(
            f"{what}: manifest of {len(raw)} bytes exceeds the {mediatype.MAX_MANIFEST_BYTES} limit",
            code="SIZE_INVALID",
            status=400,
        )
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise RegistryError(f"{what}: not JSON: {e}", code="MANIFEST_INVALID", status=400) from e
    if not isinstance(doc, dict):
        raise RegistryError(f"{what}: not a JSON object", code="MANIFEST_INVALID", status=400)
    declared = doc.get("mediaType")
    if declared is not None and declared != media_type:
        raise RegistryError(
            f"{what}: declares mediaType {declared!r} but is described as {media_type!r}",
            code="MANIFEST_INVALID",
            status=400,
        )
    try:
        if media_type in mediatype.INDEXES:
            entries = doc.get("manifests")
            if not isinstance(entries, list):
                raise InputError(f"{what}: manifests: want a list")
            children = tuple(
                parse_descriptor(e, f"{what}: manifests[{i}]") for i, e in enumerate(entries)
            )
            for i, c in enumerate(children):
                if c.media_type not in mediatype.MANIFESTS:
                    raise InputError(
                        f"{what}: manifests[{i}]: unknown manifest media type {c.media_type!r}"
                    )
        else:
            config = parse_descriptor(doc.get("config"), f"{what}: config")
            layers_doc = doc.get("layers")
            if not isinstance(layers_doc, list):
                raise InputError(f"{what}: layers: want a list")
            layers = [parse_descriptor(e, f"{what}: layers[{i}]") for i, e in enumerate(layers_doc)]
            for i, layer in enumerate(layers):
                if why := mediatype.layer_problem(config.media_type, layer.media_type):
                    raise InputError(f"{what}: layers[{i}]: {why}")
            children = (config, *layers)
    except InputError as e:
        raise RegistryError(str(e), code="MANIFEST_INVALID", status=400) from e
    return Manifest(media_type, digest, raw, children)


def sniff_media_type(raw: bytes) -> str | None:
    """The ``mediaType`` a manifest declares, or what its shape says (OCI made the field optional)."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    mt = doc.get("mediaType")
    if isinstance(mt, str):
        return mt
    if isinstance(doc.get("manifests"), list):
        return mediatype.OCI_INDEX
    if isinstance(doc.get("config"), dict):
        return mediatype.OCI_MANIFEST
    return None


def filter_index(index: Manifest, platforms: list[Platform]) -> Manifest:
    """Keep only the children for ``platforms``; unchanged (same bytes) when all are kept.

    A filtered index is re-serialised, so it gets a new digest: a tag never points at an index
    whose children are missing, and registries that check index completeness accept the push.
    """
    kept = [c for c in index.children if any(p.matches(c.platform) for p in platforms)]
    if not kept:
        have = ", ".join(sorted({str(c.platform) for c in index.children if c.platform})) or "none"
        raise InputError(
            f"{index.digest}: no manifest for platform {', '.join(map(str, platforms))} "
            f"(it has: {have})"
        )
    if len(kept) == len(index.children):
        return index
    doc = json.loads(index.raw)
    keep = {str(c.digest) for c in kept}
    doc["manifests"] = [m for m in doc["manifests"] if m.get("digest") in keep]
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return Manifest(index.media_type, digest_bytes(raw), raw, tuple(kept))


def pick_platform(index: Manifest, platform: Platform) -> Descriptor | None:
    for child in index.children:
        if platform.matches(child.platform):
            return child
    return None
