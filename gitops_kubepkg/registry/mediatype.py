"""Media types the registry knows, and what each one is: index, manifest, config or layer.

The airgap importer refuses content whose media type is not listed here (a manifest we cannot
walk is content we cannot prove complete); the server uses the same lists for Accept negotiation.
"""

from __future__ import annotations

import re
from typing import Final

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"

OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
OCI_EMPTY: Final = "application/vnd.oci.empty.v1+json"

INDEXES: Final = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_MANIFESTS: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFESTS: Final = INDEXES | IMAGE_MANIFESTS
IMAGE_CONFIGS: Final = frozenset({OCI_CONFIG, DOCKER_CONFIG})

LAYERS: Final = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        OCI_EMPTY,
    }
)

MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
"""Largest manifest or index we read into memory (Distribution's limit is the same)."""

_WELL_FORMED = re.compile(r"^[A-Za-z0-9][\w!#$&^.+-]{0,126}/[A-Za-z0-9][\w!#$&^.+-]{0,126}$")


def is_well_formed(media_type: str) -> bool:
    """RFC 6838 ``type/subtype``; artifact layers may use any such type."""
    return bool(_WELL_FORMED.match(media_type))


def layer_problem(config_type: str, layer_type: str) -> str | None:
    """Why a layer's media type is refused, or None.

    Image manifests (whose config is an image config) must use a known layer type; artifacts
    (Helm charts, signatures, SBOMs) carry their own types, which only need to be well formed.
    """
    if config_type in IMAGE_CONFIGS:
        if layer_type in LAYERS:
            return None
        return f"unknown layer media type {layer_type!r}"
    if is_well_formed(layer_type):
        return None
    return f"malformed media type {layer_type!r}"


def accepts(accept_header: str, media_type: str) -> bool:
    """Whether an HTTP Accept header lets us answer with ``media_type`` (no header: anything)."""
    if not accept_header.strip():
        return True
    for part in accept_header.split(","):
        want = part.split(";", 1)[0].strip().lower()
        if want in ("*/*", media_type) or (
            want.endswith("/*") and media_type.startswith(want[:-1])
        ):
            return True
    return False
