"""The OCI image layout: ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``.

The airgap tarball carries a layout after ``kubepkg.json``; the exporter builds its ``index.json``
here and the importer reads it here. Each image in ``index.json`` is named by
``org.opencontainers.image.ref.name`` (the full reference, ``docker.io/library/nginx:1.27``) and
``io.containerd.image.name``, so ``skopeo`` (``oci-archive:FILE:REF``) and ``ctr import`` find it.
``LayoutDir`` writes a layout directory (``skopeo copy oci:DIR``), used by tests and benchmarks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from gitops_kubepkg.errors import InputError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.digest import Digest, digest_bytes
from gitops_kubepkg.registry.manifest import Descriptor, parse_descriptor
from gitops_kubepkg.storage import write_atomic

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
MAX_INDEX_BYTES = mediatype.MAX_MANIFEST_BYTES


def named(descriptor: Descriptor, reference: str) -> Descriptor:
    """``descriptor`` annotated with the image reference it is known by."""
    ann = dict(descriptor.annotations)
    ann[REF_NAME] = reference
    ann[CONTAINERD_NAME] = reference
    return Descriptor(descriptor.media_type, descriptor.digest, descriptor.size, None, ann)


def index_json(descriptors: Sequence[Descriptor]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_INDEX,
        "manifests": [d.to_json() for d in descriptors],
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


def parse_index_json(raw: bytes, where: str) -> list[Descriptor]:
    """The named manifests of a layout's ``index.json``; each must be a manifest or an index."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{where}: not JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        raise InputError(f"{where}: want an OCI image index with schemaVersion 2")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise InputError(f"{where}: manifests: want a list")
    out = []
    for i, entry in enumerate(entries):
        d = parse_descriptor(entry, f"{where}: manifests[{i}]")
        if d.media_type not in mediatype.MANIFESTS:
            raise InputError(f"{where}: manifests[{i}]: unknown media type {d.media_type!r}")
        if d.size > mediatype.MAX_MANIFEST_BYTES:
            raise InputError(
                f"{where}: manifests[{i}]: {d.digest} is {d.size} bytes, over the "
                f"{mediatype.MAX_MANIFEST_BYTES}-byte manifest limit"
            )
        out.append(d)
    return out


def check_oci_layout(raw: bytes, where: str) -> None:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{where}: not JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("imageLayoutVersion") != "1.0.0":
        raise InputError(f'{where}: want {{"imageLayoutVersion": "1.0.0"}}')


def blob_name(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


class LayoutDir:
    """Write an OCI layout directory: blobs as they come, ``index.json`` on ``close``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._refs: list[Descriptor] = []

    def put(self, data: bytes) -> Digest:
        digest = digest_bytes(data)
        target = self.path / blob_name(digest)
        if not target.exists():
            write_atomic(target, data)
        return digest

    def name(self, descriptor: Descriptor, reference: str) -> None:
        self._refs.append(named(descriptor, reference))

    def close(self) -> None:
        write_atomic(self.path / "oci-layout", OCI_LAYOUT)
        write_atomic(self.path / "index.json", index_json(self._refs))
