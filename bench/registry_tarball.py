"""Build a large airgap tarball for the registry benchmarks, without holding it in memory.

One image of random (incompressible) tar layers of ``layer_mb`` each, written as our exporter
writes it: ``kubepkg.json``, the manifest, the config, the layers, ``index.json``, ``oci-layout``.
Layers are generated into files first (the manifest, which comes before them, needs their
digests), then streamed into the tar.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.airgaptar import TarWriter
from gitops_kubepkg.registry.digest import digest_bytes
from gitops_kubepkg.registry.layout import OCI_LAYOUT, blob_name, index_json, named
from gitops_kubepkg.registry.manifest import Descriptor

REF = "registry.example.com/bench/image:1"
CHUNK = 1 << 20


def _layer_file(path: Path, size: int) -> tuple[str, int]:
    """A tar holding one file of ``size`` random bytes; returns (digest, size)."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        header = info.tobuf(tarfile.PAX_FORMAT)
        f.write(header)
        h.update(header)
        left = size
        while left:
            chunk = os.urandom(min(CHUNK * 4, left))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
        pad = bytes(-size % 512 + 1024)
        f.write(pad)
        h.update(pad)
    return f"sha256:{h.hexdigest()}", path.stat().st_size


def build_tarball(out: Path, total_mb: int, layer_mb: int = 64) -> Path:
    work = out.parent / f"{out.name}.layers"
    work.mkdir(parents=True, exist_ok=True)
    layers = []
    left = total_mb
    i = 0
    while left > 0:
        mb = min(layer_mb, left)
        layers.append((work / f"layer{i}", *_layer_file(work / f"layer{i}", mb << 20)))
        left -= mb
        i += 1
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_MANIFEST,
            "config": {
                "mediaType": mediatype.OCI_CONFIG,
                "digest": str(digest_bytes(config)),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}
                for _, d, s in layers
            ],
        }
    ).encode()
    mdigest = digest_bytes(manifest)
    pkg = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "bench"},
        "spec": {"version": "1.0.0", "images": {REF: str(mdigest)}, "manifests": {}},
    }
    with open(out, "wb") as f:
        tar = TarWriter(f)
        tar.add_bytes("kubepkg.json", json.dumps(pkg).encode())
        tar.add_bytes(blob_name(mdigest), manifest)
        tar.add_bytes(blob_name(digest_bytes(config)), config)
        for path, digest, size in layers:
            with (
                tar.entry(f"blobs/sha256/{digest.split(':')[1]}", size) as entry,
                open(path, "rb") as src,
            ):
                while chunk := src.read(CHUNK * 4):
                    entry.write(chunk)
            path.unlink()
        desc = Descriptor(mediatype.OCI_MANIFEST, mdigest, len(manifest))
        tar.add_bytes("index.json", index_json([named(desc, REF)]))
        tar.add_bytes("oci-layout", OCI_LAYOUT)
        tar.close()
    work.rmdir()
    return out
