"""Test-side writers laying out each upstream KubePkg archive exactly as upstream writes it.

Place in the flow: test infrastructure only; nothing here is used by gitops_kubepkg. Each writer
follows one upstream writer (named in its docstring) entry by entry: names, order, modes, JSON
encoding and tar headers. Upstream's writers read images from a registry; these take the same
content as ``SampleImage`` objects (``registry_peers.build_image``), so the blobs are real images.

Tar headers: Go's ``archive/tar`` writes USTAR for these entries (mode 0644, uid/gid 0, mtime 0,
empty user and group names, and devmajor/devminor as octal zeros where Python writes NULs). This
was checked byte for byte against Go 1.x's ``archive/tar`` output once (the test suite does not
need Go). Go's ``compress/gzip`` header is ``1f8b 0800 00000000 00ff`` (no name, mtime 0, OS
unknown); ``go_gzip`` writes that header (Python's says OS 3); the deflate bytes differ (another
compressor), which no reader depends on.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.digest import Digest
from tests.integration.registry_peers import SampleImage

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")


def go_header(name: str, size: int) -> bytes:
    """The 512-byte header Go's ``archive/tar`` writes for ``tar.Header{Name, Size, Mode: 0644}``."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uname = info.gname = ""
    block = bytearray(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
    block[329:337] = b"0000000\0"  # devmajor
    block[337:345] = b"0000000\0"  # devminor
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


class TarOut:
    """Entries appended in order, as ``tar.Writer`` writes them; ``close`` adds the end marker."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def add(self, name: str, data: bytes) -> None:
        self.buf.write(go_header(name, len(data)))
        self.buf.write(data)
        self.buf.write(bytes(-len(data) % 512))

    def close(self) -> bytes:
        self.buf.write(bytes(1024))
        return self.buf.getvalue()


def go_gzip(data: bytes) -> bytes:
    """gzip with Go's ``compress/gzip`` header (level 6: XFL 0; mtime 0; OS byte 0xff)."""
    out = gzip.compress(data, compresslevel=6, mtime=0)
    return out[:9] + b"\xff" + out[10:]


def go_json(value: Any) -> bytes:
    """``json.NewEncoder(buf).Encode(v)``: compact, map keys sorted, a trailing newline."""
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode() + b"\n"


@dataclass
class Image:
    """An image as a KubePkg names it: repository (normalised), tag and content."""

    name: str
    tag: str
    content: SampleImage

    def blobs(self) -> dict[Digest, bytes]:
        out = {self.content.digest: self.content.raw, **self.content.all_blobs()}
        return out


def _platform_of(image: SampleImage) -> str:
    """The platform read from an image's config, as the resolvers do (arm64/v8 is arm64)."""
    config = json.loads(next(iter(image.blobs.values())))
    variant = config.get("variant", "")
    if config.get("architecture") == "arm64" and variant == "v8":
        variant = ""
    return "/".join(p for p in (config.get("os", ""), config.get("architecture", ""), variant) if p)


def kubepkg_digest_metas(
    image: Image, platforms: tuple[str, ...] = DEFAULT_PLATFORMS
) -> list[dict[str, Any]]:
    """``status.digests`` as octohelm/kubepkg ``pkg/kubepkg/digestresolver.go`` (v0.5.4) lists
    one image: for an index, each needed platform's manifest (its config and layers, then the
    manifest), then the index; every entry carries the tag, platform entries their platform."""
    out: list[dict[str, Any]] = []

    def meta(kind: str, digest: Digest, size: int, platform: str) -> dict[str, Any]:
        m: dict[str, Any] = {
            "type": kind,
            "digest": str(digest),
            "name": image.name,
            "size": size,
            "tag": image.tag,
        }
        if platform:
            m["platform"] = platform
        return m

    def resolve(content: SampleImage, platform: str) -> None:
        doc = json.loads(content.raw)
        if content.media_type in mediatype.INDEXES:
            for entry, child in zip(doc["manifests"], content.children, strict=True):
                p = entry["platform"]
                pp = "/".join(x for x in (p["os"], p["architecture"], p.get("variant", "")) if x)
                if pp in platforms:
                    resolve(child, pp)
        else:
            platform = _platform_of(content)
            for d in [doc["config"], *doc["layers"]]:
                out.append(meta("blob", Digest(*d["digest"].split(":")), d["size"], platform))
        out.append(meta("manifest", content.digest, len(content.raw), platform))

    resolve(image.content, "")
    return out


def _index_entry(meta: dict[str, Any], media_type: str) -> dict[str, Any]:
    """One ``index.json`` descriptor as packer.go builds it."""
    ann = {"io.containerd.image.name": meta["name"]}
    if meta.get("tag"):
        ann["org.opencontainers.image.ref.name"] = meta["tag"]
        ann["io.containerd.image.name"] = f"{meta['name']}:{meta['tag']}"
    d: dict[str, Any] = {
        "mediaType": media_type,
        "digest": meta["digest"],
        "size": meta["size"],
        "annotations": dict(sorted(ann.items())),
    }
    if meta.get("platform"):
        os_, arch, *variant = meta["platform"].split("/")
        d["platform"] = {
            "architecture": arch,
            "os": os_,
            **({"variant": variant[0]} if variant else {}),
        }
    return d


def _content_by_digest(images: list[Image]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for img in images:
        for d, data in img.blobs().items():
            out[str(d)] = data
    return out


def kubepkg_packer(pkgs: list[tuple[dict[str, Any], list[Image]]], *, generation: int) -> bytes:
    """An archive as octohelm/kubepkg ``pkg/kubepkg/packer.go`` writes it.

    generation 1: v0.1.3 ``KubeTgzTo`` (gzip; one KubePkg; ``kubepkg.json`` written inside
    ``writeToKubeTar``; ``index.json`` names Docker schema2 manifests only). generation 2: v0.5.3
    ``KubeTgzTo`` (gzip; a KubePkgList for several packages; then per package its blobs,
    ``index.json`` (Docker and OCI image manifests) and ``oci-layout``). generation 3: v0.5.4
    ``KubeTarTo`` (no gzip; as gen 2 plus Docker ``manifest.json`` after each ``index.json``).
    Each package's ``status.digests`` (already in its document) drives the blob order; a blob
    listed twice is written twice, as the packer does.
    """
    content = _content_by_digest([img for _, imgs in pkgs for img in imgs])
    tar = TarOut()
    docs = [doc for doc, _ in pkgs]
    if generation == 1:
        assert len(docs) == 1
    elif len(docs) == 1:
        tar.add("kubepkg.json", go_json(docs[0]))
    else:
        kind = {"apiVersion": "octohelm.tech/v1alpha1", "kind": "KubePkgList"}
        tar.add("kubepkg.json", go_json({**kind, "metadata": {}, "items": docs}))
    for doc in docs:
        if generation == 1:
            tar.add("kubepkg.json", go_json(doc))
        manifests: list[dict[str, Any]] = []
        docker: list[dict[str, Any]] = []
        for meta in doc["status"]["digests"]:
            data = content[meta["digest"]]
            tar.add("blobs/" + meta["digest"].replace(":", "/"), data)
            if meta["type"] != "manifest":
                continue
            mt = json.loads(data).get("mediaType", "")
            image_types = (
                {mediatype.DOCKER_MANIFEST}
                if generation == 1
                else {mediatype.DOCKER_MANIFEST, mediatype.OCI_MANIFEST}
            )
            if mt == mediatype.DOCKER_MANIFEST and generation == 3:
                m = json.loads(data)
                tags = [f"{meta['name']}:{meta['tag']}"] if meta.get("tag") else None
                docker.append(
                    {
                        "Config": "blobs/" + m["config"]["digest"].replace(":", "/"),
                        "RepoTags": tags,
                        "Layers": ["blobs/" + x["digest"].replace(":", "/") for x in m["layers"]],
                    }
                )
            if mt in image_types:
                manifests.append(_index_entry(meta, mt))
        tar.add("index.json", go_json({"schemaVersion": 2, "manifests": manifests}))
        if docker:
            tar.add("manifest.json", go_json(docker))
        tar.add("oci-layout", go_json({"imageLayoutVersion": "1.0.0"}))
    raw = tar.close()
    return raw if generation == 3 else go_gzip(raw)


def crpe_digest_metas(
    image: Image, platforms: tuple[str, ...] = DEFAULT_PLATFORMS
) -> list[dict[str, Any]]:
    """``status.digests`` as crpe ``packages/crpe/lib/src/kubepkg/kubepkg.dart`` (cd31ed6)
    ``_resolveManifestDigest`` lists one image: the top manifest first (tagged, no platform),
    then each needed platform's manifest (untagged) followed by its config and layers; a digest
    seen before keeps its place. freezed's JSON writes every field, absent ones as null."""
    state: dict[str, dict[str, Any]] = {}

    def put(kind: str, digest: Digest, size: int, tag: str | None, platform: str | None) -> None:
        state.setdefault(str(digest), {})
        state[str(digest)] = {
            "digest": str(digest),
            "type": kind,
            "name": image.name,
            "size": size,
            "tag": tag,
            "platform": platform,
        }

    def resolve(content: SampleImage, tag: str | None, platform: str | None) -> None:
        put("manifest", content.digest, len(content.raw), tag, platform)
        doc = json.loads(content.raw)
        if content.media_type in mediatype.INDEXES:
            for entry, child in zip(doc["manifests"], content.children, strict=True):
                p = entry["platform"]
                pp = "/".join(x for x in (p["os"], p["architecture"], p.get("variant", "")) if x)
                if pp in platforms:
                    resolve(child, None, pp)
        else:
            for d in [doc["config"], *doc["layers"]]:
                put("blob", Digest(*d["digest"].split(":")), d["size"], None, None)

    resolve(image.content, image.tag, None)
    return list(state.values())


def crpe_tgz(doc: dict[str, Any], images: list[Image]) -> bytes:
    """``KubePkg.tgz$`` of crpe ``packages/crpe/lib/src/kubepkg/kubepkg.dart`` (cd31ed6):
    ``kubepkg.json`` (``JsonEncoder.withIndent("  ")``), then ``blobs/<alg>/<hash>`` for each
    ``status.digests`` entry in order (a name already added is not added again), mode 0644, no
    index.json or oci-layout, gzip. [inferred] The Dart ``tar`` package's header layout is taken
    to be the same USTAR block Go writes (``TarHeader`` defaults: mtime 0, uid/gid 0)."""
    content = _content_by_digest(images)
    tar = TarOut()
    tar.add("kubepkg.json", json.dumps(doc, indent=2).encode())
    added: set[str] = set()
    for meta in doc["status"]["digests"]:
        name = "blobs/" + meta["digest"].replace(":", "/")
        if name not in added:
            added.add(name)
            tar.add(name, content[meta["digest"]])
    return go_gzip(tar.close())
