"""The OCI image layout: ``oci-layout``, ``index.json`` and ``blobs/<alg>/<hex>``.

The airgap tarball carries a layout after ``kubepkg.json``; the exporter builds its ``index.json``
here and the importer reads it here. Each image in ``index.json`` is named by
``org.opencontainers.image.ref.name`` (the full reference, ``docker.io/library/nginx:1.27``) and
``io.containerd.image.name``, so ``skopeo`` (``oci-archive:FILE:REF``) and ``ctr import`` find it.
``LayoutDir`` writes a layout directory (``skopeo copy oci:DIR``), used by tests and benchmarks.

Beside the layout, an archive may carry Docker's ``manifest.json`` (``docker load``'s format:
``[{"Config": "blobs/..", "RepoTags": ["name:tag"], "Layers": ["blobs/.."]}]``) for its
Docker-typed image manifests, as upstream's gen 3 packer does; it is built and read here too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gitops_kubepkg.errors import InputError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.digest import Digest, digest_bytes, parse_digest
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


DOCKER_MANIFEST_JSON = "manifest.json"


@dataclass(frozen=True)
class DockerImage:
    """One entry of Docker's ``manifest.json``: an image manifest's config and layers by path."""

    config: Digest
    layers: tuple[Digest, ...]
    repo_tags: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "Config": blob_name(self.config),
            "RepoTags": list(self.repo_tags),
            "Layers": [blob_name(d) for d in self.layers],
        }


def docker_manifest_json(images: Sequence[DockerImage]) -> bytes:
    return json.dumps([i.to_json() for i in images], indent=2).encode() + b"\n"


def _blob_path(value: object, where: str) -> Digest:
    parts = value.split("/") if isinstance(value, str) else []
    if len(parts) != 3 or parts[0] != "blobs":
        raise InputError(f"{where}: {value!r} is not a blobs/<alg>/<hex> path")
    return parse_digest(f"{parts[1]}:{parts[2]}", where=where)


def parse_docker_manifest_json(raw: bytes, where: str) -> list[DockerImage]:
    """Docker's ``manifest.json`` as a list of images; every path must name a blob."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{where}: not JSON: {e}") from e
    if not isinstance(doc, list):
        raise InputError(f"{where}: want a list of {{Config, RepoTags, Layers}}")
    out = []
    for i, item in enumerate(doc):
        at = f"{where}: [{i}]"
        if not isinstance(item, dict):
            raise InputError(f"{at}: want an object with Config, RepoTags and Layers")
        layers = item.get("Layers") or []
        tags = item.get("RepoTags") or []
        if not isinstance(layers, list) or not isinstance(tags, list):
            raise InputError(f"{at}: Layers and RepoTags must be lists")
        if not all(isinstance(t, str) for t in tags):
            raise InputError(f"{at}.RepoTags: want strings")
        out.append(
            DockerImage(
                _blob_path(item.get("Config"), f"{at}.Config"),
                tuple(_blob_path(x, f"{at}.Layers[{j}]") for j, x in enumerate(layers)),
                tuple(tags),
            )
        )
    return out


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
