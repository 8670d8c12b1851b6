"""``airgap export``: KubePkgs in, ``kubepkg.airgap.tar`` + git bundles + ``airgap.json`` out.

First half of the airgap flow, run where the internet is. Each image a KubePkg lists is resolved
to a digest and its manifests pulled (``registry.client``); then the tarball is written in one
pass: ``kubepkg.json`` (every image pinned to the digest shipped, and the lock upstream's tools
read: ``status.images`` and ``status.digests`` in upstream's order, see ``airgap.lock``), every
manifest and index (parents before children), every config and layer streamed from its registry
straight into the tar while its digest is checked, then ``index.json`` (each image named by its
full reference), Docker's ``manifest.json`` for Docker-typed image manifests, and ``oci-layout``.
Listing manifests before the blobs they reference lets even an importer without the lock check
media types and sizes while it streams; the lock and the two indexes make the same tar readable by
upstream's importer, ``docker load``, ``ctr images import`` and skopeo.

``--platform`` keeps only those children of an index resolved from a tag (the index is rewritten,
so it gets a new digest and nothing it names is missing); an image pinned by digest is exported
whole, because a digest must keep naming the same bytes. ``--since`` leaves out configs and layers
the previous tarball carried, and bundles only git history newer than the previous export.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gitops_kubepkg.airgap.lock import BLOB, MANIFEST, DigestMeta
from gitops_kubepkg.airgap.manifest import (
    MANIFEST_NAME,
    TARBALL_NAME,
    AirgapManifest,
    FileSum,
    RepositoryBundle,
    read_manifest,
)
from gitops_kubepkg.airgap.progress import Progress, Silent
from gitops_kubepkg.clock import SYSTEM, timestamp
from gitops_kubepkg.conventions import redact_url
from gitops_kubepkg.errors import InputError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.airgaptar import TarWriter, scan_names
from gitops_kubepkg.registry.client import RegistryClient, endpoint_for
from gitops_kubepkg.registry.digest import (
    Digest,
    Hasher,
    Verifier,
    digest_bytes,
    is_digest,
    parse_digest,
)
from gitops_kubepkg.registry.layout import (
    DOCKER_MANIFEST_JSON,
    OCI_LAYOUT,
    DockerImage,
    blob_name,
    docker_manifest_json,
    index_json,
    named,
)
from gitops_kubepkg.registry.manifest import (
    Descriptor,
    Manifest,
    Platform,
    filter_index,
    parse_manifest,
)
from gitops_kubepkg.sources import bundle as git_bundle
from gitops_kubepkg.spec import API_VERSION, LIST_KIND, ImageRef, KubePkg

CHUNK = 1 << 20


@dataclass(frozen=True)
class SourceRepository:
    """A git repository to bundle: ``url`` is what Repository objects name; ``path`` a local clone
    to bundle from (when empty, ``url`` is cloned as a mirror)."""

    url: str
    path: Path | None = None


@dataclass(frozen=True)
class ExportOptions:
    platforms: Sequence[Platform] = ()
    mirrors: Mapping[str, str] = field(default_factory=dict)
    plain_http: frozenset[str] = frozenset()
    tls_verify: bool = True
    since: Path | None = None


@dataclass
class ResolvedImage:
    key: str
    """The ``spec.images`` key as written."""
    package: str
    """``namespace/name`` of the KubePkg listing it."""
    ref: ImageRef
    top: Manifest
    manifests: list[Manifest]
    blobs: list[Descriptor]

    @property
    def name(self) -> str:
        """The reference named in index.json: ``repo:tag`` or ``repo@digest``."""
        if self.ref.tag:
            return f"{self.ref.repository}:{self.ref.tag}"
        return f"{self.ref.repository}@{self.top.digest}"


@dataclass
class ExportResult:
    directory: Path
    tarball: FileSum
    images: dict[str, str]
    blobs_written: int
    blobs_omitted: int
    repositories: list[RepositoryBundle]

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "tarball": self.tarball.to_json(),
            "images": self.images,
            "blobsWritten": self.blobs_written,
            "blobsOmitted": self.blobs_omitted,
            "repositories": [r.to_json() for r in self.repositories],
        }


def _package_id(pkg: KubePkg) -> str:
    return f"{pkg.namespace}/{pkg.name}"


def resolve_images(
    pkgs: Sequence[KubePkg],
    client: RegistryClient,
    opts: ExportOptions,
    progress: Progress,
) -> list[ResolvedImage]:
    """Pull every manifest each image reaches; the blob lists come from them."""
    out: list[ResolvedImage] = []
    for pkg in pkgs:
        for key, ref in pkg.image_refs().items():
            ep = endpoint_for(ref.domain, mirrors=opts.mirrors, plain_http=opts.plain_http)
            pinned = bool(ref.digest)
            pulled = client.get_manifest(ep, ref.path, ref.digest or ref.tag or "latest")
            what = f"{pkg.source or pkg.name}: spec.images[{key!r}]"
            top = parse_manifest(pulled.raw, pulled.media_type, pulled.digest, what)
            if top.is_index and opts.platforms and not pinned:
                top = filter_index(top, list(opts.platforms))
            manifests = [top]
            blobs: list[Descriptor] = []
            queue = [top]
            while queue:
                m = queue.pop(0)
                for child in m.children:
                    if child.media_type in mediatype.MANIFESTS:
                        got = client.get_manifest(ep, ref.path, str(child.digest))
                        cm = parse_manifest(
                            got.raw, child.media_type, got.digest, f"{what} {child.digest}"
                        )
                        manifests.append(cm)
                        queue.append(cm)
                    else:
                        blobs.append(child)
            progress.note(f"resolved {key} -> {top.digest}")
            out.append(ResolvedImage(key, _package_id(pkg), ref, top, manifests, blobs))
    return out


def _platform(p: Platform | None) -> str:
    """Upstream's platform string: ``os/arch[/variant]``, ``arm64/v8`` written ``arm64``."""
    if p is None:
        return ""
    if p.architecture == "arm64" and p.variant == "v8":
        return f"{p.os}/{p.architecture}"
    return str(p)


def digest_metas(img: ResolvedImage) -> list[DigestMeta]:
    """Every blob of one image as upstream's resolver lists it (``digestresolver.go``): for each
    image manifest its config and layers, then the manifest; an index after its manifests.

    Each entry carries the image's tag; a platform manifest its platform, the top manifest none
    (upstream's importer tags the entry without a platform).
    """
    by_digest = {m.digest: m for m in img.manifests}
    repo, tag = img.ref.repository, img.ref.tag
    out: list[DigestMeta] = []

    def visit(m: Manifest, platform: str) -> None:
        for child in m.children:
            if child.media_type in mediatype.MANIFESTS:
                if child.digest in by_digest:
                    visit(by_digest[child.digest], _platform(child.platform))
            else:
                out.append(DigestMeta(BLOB, child.digest, repo, child.size, tag, platform))
        out.append(DigestMeta(MANIFEST, m.digest, repo, len(m.raw), tag, platform))

    visit(img.top, "")
    return out


def _status_key(key: str) -> str:
    """A ``status.images`` key: the reference without its digest, as upstream keys it."""
    return key.split("@", 1)[0]


def pinned_kubepkg_json(pkgs: Sequence[KubePkg], images: Sequence[ResolvedImage]) -> bytes:
    """``kubepkg.json``: the packages with each ``spec.images`` value set to the digest shipped,
    and ``status.images``/``status.digests`` saying what the archive carries."""
    objects = []
    for pkg in pkgs:
        mine = [img for img in images if img.package == _package_id(pkg)]
        by_key = {img.key: str(img.top.digest) for img in mine}
        obj = pkg.to_object()
        # Gen 1 entries the author wrote get their digest; the structured shapes stay as written
        # and the lock (status.images, which the model reads back as pins) carries every image.
        spec_images = (obj.get("spec") or {}).get("images")
        if isinstance(spec_images, dict):
            for key, value in spec_images.items():
                if isinstance(value, str) and key in by_key:
                    spec_images[key] = by_key[key]
        locked = {
            **pkg.status_images,
            **{_status_key(img.key): str(img.top.digest) for img in mine},
        }
        if locked:
            obj["status"] = {"images": locked}
        if mine:
            obj["status"]["digests"] = [
                meta.to_json() for img in mine for meta in digest_metas(img)
            ]
        objects.append(obj)
    doc: dict[str, Any] = (
        objects[0]
        if len(objects) == 1
        else {"apiVersion": API_VERSION, "kind": LIST_KIND, "items": objects}
    )
    return json.dumps(doc, indent=2).encode() + b"\n"


def previous_blobs(since: Path | None) -> set[Digest]:
    """Blobs a previous tarball carried (its headers only are read)."""
    if since is None:
        return set()
    tar = since / TARBALL_NAME if since.is_dir() else since
    if not tar.is_file():
        raise InputError(f"--since {since}: no {TARBALL_NAME} there")
    out = set()
    with open(tar, "rb") as f:
        for entry in scan_names(f, str(tar)):
            parts = entry.name.split("/")
            if len(parts) == 3 and parts[0] == "blobs" and is_digest(f"{parts[1]}:{parts[2]}"):
                out.add(parse_digest(f"{parts[1]}:{parts[2]}"))
    return out


class _HashingFile:
    """Counts and hashes every byte on its way to the file (the tarball's checksum, one pass)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.hasher = Hasher()

    def write(self, data: bytes | memoryview) -> int:
        self.hasher.update(data)
        return self.f.write(data)


def write_tarball(
    path: Path,
    kubepkg_json: bytes,
    images: Sequence[ResolvedImage],
    client: RegistryClient,
    opts: ExportOptions,
    omit: set[Digest],
    progress: Progress,
) -> tuple[FileSum, dict[str, str], int, int]:
    """Write the tarball atomically; return its checksum, the sha256 of its entries that are not
    content-addressed, the number of blobs written and the number omitted (``--since``)."""
    manifests: dict[Digest, Manifest] = {}
    blobs: dict[Digest, tuple[Descriptor, ResolvedImage]] = {}
    # Every image's top manifest first, then the rest: a manifest shared by two images then
    # comes after both parents, so the importer knows all its repositories when it arrives.
    for img in images:
        manifests.setdefault(img.top.digest, img.top)
    for img in images:
        for m in img.manifests:
            manifests.setdefault(m.digest, m)
        for b in img.blobs:
            if b.digest not in manifests:
                blobs.setdefault(b.digest, (b, img))
    to_pull = {d: v for d, v in blobs.items() if d not in omit}
    total = sum(len(m.raw) for m in manifests.values()) + sum(v[0].size for v in to_pull.values())
    progress.start("export", total)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb", buffering=CHUNK) as raw:
            out = _HashingFile(raw)
            tar = TarWriter(out)  # type: ignore[arg-type]
            tar.add_bytes("kubepkg.json", kubepkg_json)
            for digest, m in manifests.items():
                tar.add_bytes(blob_name(digest), m.raw)
                progress.advance(len(m.raw))
            for desc, img in to_pull.values():
                _copy_blob(tar, client, opts, img, desc, progress)
            named_refs = []
            seen: set[str] = set()
            for img in images:
                if img.name in seen:
                    continue
                seen.add(img.name)
                desc = Descriptor(img.top.media_type, img.top.digest, len(img.top.raw))
                named_refs.append(named(desc, img.name))
            index = index_json(named_refs)
            tar.add_bytes("index.json", index)
            docker = docker_images(images)
            if docker:
                tar.add_bytes(DOCKER_MANIFEST_JSON, docker_manifest_json(docker))
            tar.add_bytes("oci-layout", OCI_LAYOUT)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    progress.done()
    sha = out.hasher.digest()
    entries = {
        "kubepkg.json": digest_bytes(kubepkg_json).hex,
        "index.json": digest_bytes(index).hex,
    }
    return (
        FileSum(path.name, sha.hex, out.hasher.size),
        entries,
        len(to_pull),
        len(blobs) - len(to_pull),
    )


def docker_images(images: Sequence[ResolvedImage]) -> list[DockerImage]:
    """Docker's ``manifest.json`` entries: one per Docker-typed image manifest, named by the
    image's ``repo:tag`` (as upstream's packer writes them; a multi-arch image lists each of its
    platforms under the same tag, and ``docker load`` keeps the last)."""
    out: list[DockerImage] = []
    seen: set[tuple[Digest, str]] = set()
    for img in images:
        tags = (f"{img.ref.repository}:{img.ref.tag}",) if img.ref.tag else ()
        for m in img.manifests:
            if m.media_type != mediatype.DOCKER_MANIFEST or (m.digest, img.name) in seen:
                continue
            seen.add((m.digest, img.name))
            config, *layers = m.children
            out.append(DockerImage(config.digest, tuple(d.digest for d in layers), tags))
    return out


def _copy_blob(
    tar: TarWriter,
    client: RegistryClient,
    opts: ExportOptions,
    img: ResolvedImage,
    desc: Descriptor,
    progress: Progress,
) -> None:
    ep = endpoint_for(img.ref.domain, mirrors=opts.mirrors, plain_http=opts.plain_http)
    what = f"{img.ref.repository}@{desc.digest}"
    verifier = Verifier(desc.digest, desc.size, what)
    resp = client.open_blob(ep, img.ref.path, desc.digest)
    try:
        with tar.entry(blob_name(desc.digest), desc.size) as entry:
            left = desc.size
            while left > 0:
                chunk = resp.read(min(CHUNK, left))
                if not chunk:
                    break
                verifier.update(chunk)
                entry.write(chunk)
                left -= len(chunk)
                progress.advance(len(chunk))
            verifier.check()
    finally:
        resp.release_conn()


def bundle_repositories(
    repos: Sequence[SourceRepository],
    directory: Path,
    previous: AirgapManifest | None,
    progress: Progress,
) -> list[RepositoryBundle]:
    out = []
    used: set[str] = set()
    for repo in repos:
        url = redact_url(repo.url)  # credentials reach neither airgap.json nor a file name
        slug = _slug(url, used)
        before = previous.repository(url) if previous else None
        with tempfile.TemporaryDirectory(prefix="gitops-kubepkg-export-") as tmp:
            git_dir = repo.path or git_bundle.clone_mirror(repo.url, Path(tmp) / "mirror.git")
            target = directory / "repos" / f"{slug}.bundle"
            info = git_bundle.create_bundle(
                git_dir, target, since=before.refs.values() if before else ()
            )
            refs = git_bundle.local_refs(git_dir)
        if info is None:
            progress.note(f"{url}: unchanged since the previous export, no bundle")
            out.append(RepositoryBundle(url, None, refs, ()))
            continue
        progress.note(f"bundled {url} ({len(info.refs)} refs)")
        out.append(
            RepositoryBundle(url, FileSum.of(target, directory), info.refs, info.prerequisites)
        )
    return out


def _slug(url: str, used: set[str]) -> str:
    base = "".join(c if c.isalnum() or c in "-_." else "-" for c in url.split("://")[-1])
    base = base.rsplit("@", 1)[-1].strip("-.")[-60:] or "repo"
    slug, n = base, 1
    while slug in used:
        n += 1
        slug = f"{base}-{n}"
    used.add(slug)
    return slug


def export(
    pkgs: Sequence[KubePkg],
    directory: Path,
    repos: Iterable[SourceRepository] = (),
    *,
    opts: ExportOptions | None = None,
    client: RegistryClient | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Write ``directory/{kubepkg.airgap.tar,repos/*.bundle,airgap.json}``."""
    opts = opts or ExportOptions()
    progress = progress or Silent()
    own_client = client is None
    client = client or RegistryClient(tls_verify=opts.tls_verify)
    if not pkgs:
        raise InputError("nothing to export: no KubePkg given")
    previous = None
    if opts.since is not None and opts.since.is_dir() and (opts.since / MANIFEST_NAME).is_file():
        previous = read_manifest(opts.since / MANIFEST_NAME)
    directory = directory.absolute()  # git writes the bundles from inside each repository
    try:
        directory.mkdir(parents=True, exist_ok=True)
        images = resolve_images(pkgs, client, opts, progress)
        kubepkg_json = pinned_kubepkg_json(pkgs, images)
        omit = previous_blobs(opts.since)
        tarball, entries, written, omitted = write_tarball(
            directory / TARBALL_NAME, kubepkg_json, images, client, opts, omit, progress
        )
        bundles = bundle_repositories(list(repos), directory, previous, progress)
    finally:
        if own_client:
            client.close()
    manifest = AirgapManifest(
        created=timestamp(SYSTEM.now()),
        tarball=tarball,
        repositories=bundles,
        images={img.key: str(img.top.digest) for img in images},
        entries=entries,
    )
    manifest.write(directory / MANIFEST_NAME)
    return ExportResult(directory, tarball, manifest.images, written, omitted, bundles)
