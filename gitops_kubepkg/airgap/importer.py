"""``airgap import``: verify an export, stream its archive into a store or registry, fetch bundles.

Second half of the airgap flow, run inside the air gap. ``import_export`` checks ``airgap.json``'s
checksums and every git bundle against its mirror before anything is written; then
``import_tarball`` reads the archive once, front to back, never unpacking it to disk (gzip, told by
its first bytes, is decompressed as a stream). Ours and every upstream KubePkg archive are read by
the same pass (docs/airgap.md lists them):

1. ``kubepkg.json`` must be the first entry. Its images (``spec.images`` pinned, ``status.images``,
   tagged top manifests of ``status.digests``) are the roots of the image graph, each tied to its
   repository; ``status.digests`` (``airgap.lock``) gives every blob's kind, size and repository
   before its bytes arrive, so upstream's order (children first) streams as well as ours.
2. ``blobs/<alg>/<hex>``: a blob must be listed in ``status.digests`` or referenced by a root or a
   manifest seen before it. Manifests are size-limited, hashed and parsed, adding their children
   to the graph; other blobs stream into the sink while hashed. A blob the sink already has is
   skipped (a re-run resumes); a blob written twice (upstream's KubePkgList) is read once.
3. ``index.json``, ``oci-layout`` and Docker's ``manifest.json`` (each may repeat; the last wins)
   are checked against the manifests that arrived; they never make tags.
4. At the end of the archive: every blob the roots and listed manifests reach must be present
   (streamed now, or imported before when the archive was made ``--since`` an earlier one). Only
   then are manifests linked into their repositories (children before parents), and tags written
   last. An index whose platforms the exporter filtered is stored as it is, with a note.

So bad input (a wrong first entry, a digest or size mismatch, a truncated tar, path traversal,
links, devices, unknown media types, oversized manifests) fails with an error naming the entry,
and leaves no tag or manifest link; the only things written are blobs whose digest was verified.

The sink is the local content-addressed store (served by ``registry serve``) or, with
``--to-registry``, another registry through the OCI API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gitops_kubepkg.airgap.lock import MANIFEST, DigestMeta, kind_of, read_locks
from gitops_kubepkg.airgap.manifest import MANIFEST_NAME, TARBALL_NAME, read_manifest
from gitops_kubepkg.airgap.progress import Progress, Silent
from gitops_kubepkg.errors import (
    BlobUnknown,
    DigestMismatch,
    GitopsKubepkgError,
    InputError,
    SourceError,
)
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.airgaptar import (
    GzipStream,
    TarEntry,
    TarError,
    TarReader,
    open_archive,
)
from gitops_kubepkg.registry.blobstore import BlobStore, ReadInto
from gitops_kubepkg.registry.client import Endpoint, RegistryClient
from gitops_kubepkg.registry.digest import (
    ALGORITHMS,
    Digest,
    Verifier,
    digest_bytes,
    parse_digest,
)
from gitops_kubepkg.registry.layout import (
    DOCKER_MANIFEST_JSON,
    REF_NAME,
    blob_name,
    check_oci_layout,
    parse_docker_manifest_json,
    parse_index_json,
)
from gitops_kubepkg.registry.manifest import Manifest, parse_manifest, sniff_media_type
from gitops_kubepkg.registry.repositories import Repositories
from gitops_kubepkg.sources import bundle as git_bundle
from gitops_kubepkg.spec import parse_image, parse_kubepkgs
from gitops_kubepkg.spec.imageref import mirror_repository

MAX_KUBEPKG_JSON = 16 << 20
_CHUNK = 1 << 20


class Sink(Protocol):
    """Where imported content goes: the local store or a remote registry."""

    def has_blob(self, digest: Digest, repos: Sequence[str]) -> bool: ...

    def write_blob(
        self, digest: Digest, size: int, source: ReadInto, repos: Sequence[str], what: str
    ) -> None: ...

    def write_manifest_blob(self, digest: Digest, raw: bytes, what: str) -> None: ...

    def ensure_blob(self, digest: Digest, repos: Sequence[str]) -> bool: ...

    def link_manifest(self, repo: str, manifest: Manifest) -> None: ...

    def set_tag(self, repo: str, tag: str, manifest: Manifest) -> None: ...

    def flush(self) -> None:
        """Every blob written so far is durable and in place (before anything links to it)."""


class StoreSink:
    """The local store: blobs into ``BlobStore``, manifest links and tags into ``Repositories``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root)
        self.refs = Repositories(root)
        self.blobs.clean_partials()

    def has_blob(self, digest: Digest, repos: Sequence[str]) -> bool:
        return self.blobs.has(digest)

    def write_blob(
        self, digest: Digest, size: int, source: ReadInto, repos: Sequence[str], what: str
    ) -> None:
        self.blobs.ingest(digest, size, source, what)

    def write_manifest_blob(self, digest: Digest, raw: bytes, what: str) -> None:
        self.blobs.put(digest, raw, what)

    def ensure_blob(self, digest: Digest, repos: Sequence[str]) -> bool:
        return self.blobs.has(digest)

    def flush(self) -> None:
        self.blobs.sync()

    def link_manifest(self, repo: str, manifest: Manifest) -> None:
        self.refs.link_manifest(mirror_repository(repo), manifest.digest, manifest.media_type)

    def set_tag(self, repo: str, tag: str, manifest: Manifest) -> None:
        self.refs.set_tag(mirror_repository(repo), tag, manifest.digest)


def target_name(repository: str, prefix: str = "") -> str:
    """The repository name in the target registry: the source name, its host's ``:`` made ``-``
    (a port is not allowed in a path component), under ``prefix`` when the URL has a path."""
    name = mirror_repository(repository)
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


class RegistrySink:
    """Another registry, through the OCI API (``--to-registry``)."""

    def __init__(self, client: RegistryClient, endpoint: Endpoint, prefix: str = "") -> None:
        self.client = client
        self.ep = endpoint
        self.prefix = prefix
        self._where: dict[Digest, set[str]] = {}

    def _name(self, repo: str) -> str:
        return target_name(repo, self.prefix)

    def _present(self, digest: Digest, name: str) -> bool:
        if name in self._where.get(digest, set()):
            return True
        if self.client.blob_size(self.ep, name, digest) is not None:
            self._where.setdefault(digest, set()).add(name)
            return True
        return False

    def has_blob(self, digest: Digest, repos: Sequence[str]) -> bool:
        names = [self._name(r) for r in repos]
        if not names or not self._present(digest, names[0]):
            return False
        self.client.stats["skipped"] += 1
        return True

    def write_blob(
        self, digest: Digest, size: int, source: ReadInto, repos: Sequence[str], what: str
    ) -> None:
        names = [self._name(r) for r in repos]
        verifier = Verifier(digest, size, what)
        self.client.upload_blob(self.ep, names[0], digest, size, source, verify=verifier)
        self._where.setdefault(digest, set()).add(names[0])
        self.ensure_blob(digest, repos)

    def write_manifest_blob(self, digest: Digest, raw: bytes, what: str) -> None:
        """Manifests are PUT at commit time, byte for byte."""

    def flush(self) -> None:
        """Every upload finished when its PUT returned."""

    def ensure_blob(self, digest: Digest, repos: Sequence[str]) -> bool:
        """Every repo in ``repos`` has the blob: HEAD, else mount from one that has it."""
        for repo in repos:
            name = self._name(repo)
            if self._present(digest, name):
                continue
            sources = sorted(self._where.get(digest, set()))
            if not sources:
                return False
            upload = self.client.mount_blob(self.ep, name, digest, sources[0])
            if upload is not None:
                self._copy_within(digest, sources[0], name, upload)
            self._where.setdefault(digest, set()).add(name)
        return True

    def _copy_within(self, digest: Digest, source: str, name: str, upload: str) -> None:
        """The registry refused the mount: pull the blob back and upload it (bounded memory)."""
        size = self.client.blob_size(self.ep, source, digest) or 0
        resp = self.client.open_blob(self.ep, source, digest)
        try:
            self.client.upload_blob(
                self.ep,
                name,
                digest,
                size,
                lambda view: resp.readinto(view),
                upload_url=upload,
                verify=Verifier(digest, size, f"{name}@{digest}"),
            )
        finally:
            resp.release_conn()

    def link_manifest(self, repo: str, manifest: Manifest) -> None:
        self.client.put_manifest(
            self.ep, self._name(repo), str(manifest.digest), manifest.media_type, manifest.raw
        )

    def set_tag(self, repo: str, tag: str, manifest: Manifest) -> None:
        self.client.put_manifest(self.ep, self._name(repo), tag, manifest.media_type, manifest.raw)


@dataclass
class _Expect:
    kind: str  # lock.MANIFEST or lock.BLOB
    media_type: str
    size: int
    repos: set[str] = field(default_factory=set)
    listed: bool = False
    """Named by ``status.digests``."""


@dataclass
class TarballImport:
    images: dict[str, str] = field(default_factory=dict)
    blobs_written: int = 0
    blobs_skipped: int = 0
    bytes_written: int = 0
    manifests: int = 0
    tags: list[str] = field(default_factory=list)
    format: str = ""
    notes: list[str] = field(default_factory=list)
    """What was imported differently from a whole image, said out loud (platforms left out)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "images": self.images,
            "blobsWritten": self.blobs_written,
            "blobsSkipped": self.blobs_skipped,
            "bytesWritten": self.bytes_written,
            "manifests": self.manifests,
            "tags": self.tags,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class _Root:
    key: str
    """Where kubepkg.json names it: a spec.images or status.images key, or status.digests[i]."""
    repo: str
    tag: str
    digest: Digest


class _Import:
    """State of one pass over one archive."""

    def __init__(
        self,
        reader: TarReader,
        sink: Sink,
        progress: Progress,
        entry_sums: dict[str, str],
        gz: GzipStream | None,
    ) -> None:
        self.reader = reader
        self.sink = sink
        self.progress = progress
        self.entry_sums = entry_sums
        self.gz = gz
        self.file = reader.source
        self.result = TarballImport()
        self._set_format("gzip KubePkg archive" if gz else "KubePkg airgap tar")
        self.expect: dict[Digest, _Expect] = {}
        self.manifests: dict[Digest, Manifest] = {}
        self.arrived: set[Digest] = set()
        self.roots: list[_Root] = []
        self.listed = False
        self.index_seen = False
        self.layout_seen = False

    def _set_format(self, label: str) -> None:
        """Every error from here on names the file and the format detected."""
        self.result.format = label
        self.src = f"{self.file}: {label}"
        self.reader.source = self.src
        if self.gz is not None:
            self.gz.source = self.src

    def fail(self, entry: str, message: str) -> InputError:
        return InputError(f"{self.src}: {entry}: {message}")

    def check_sum(self, name: str, data: bytes) -> None:
        want = self.entry_sums.get(name)
        if want and digest_bytes(data).hex != want:
            raise self.fail(name, f"sha256 differs from the one {MANIFEST_NAME} records")

    # -- 1. kubepkg.json ------------------------------------------------------------------

    def first(self) -> None:
        entry = self.reader.next()
        if entry is None:
            raise InputError(f"{self.src}: empty archive (want kubepkg.json first)")
        if _clean(entry.name) != "kubepkg.json" or entry.is_dir:
            raise self.fail(
                entry.name,
                "the first entry must be kubepkg.json (every KubePkg archive writes it first)",
            )
        data = self.reader.read_all(MAX_KUBEPKG_JSON)
        self.check_sum("kubepkg.json", data)
        where = f"{self.src}: kubepkg.json"
        pkgs = parse_kubepkgs(data, where)
        locks = read_locks(data, where)
        if len(locks) != len(pkgs):
            raise self.fail("kubepkg.json", "want one KubePkg or a KubePkgList")
        self.listed = any(lock.digests for lock in locks)
        if self.gz is not None:
            crpe = b'"tgzDigest"' in data
            self._set_format(f"gzip KubePkg archive ({'crpe' if crpe else 'gen 1/2'})")
        elif self.listed:
            self._set_format("KubePkg airgap tar (gen 3 or gitops-kubepkg, status.digests)")
        else:
            self._set_format("KubePkg airgap tar (gitops-kubepkg, no status.digests)")
        for lock in locks:
            for i, meta in enumerate(lock.digests):
                self._listed(meta, f"status.digests[{i}] of {lock.package!r}")
        for pkg, lock in zip(pkgs, locks, strict=True):
            for text, locked in lock.images.items():
                try:
                    parsed = parse_image(text)
                except ValueError as e:
                    raise self.fail("kubepkg.json", f"status.images[{text!r}]: {e}") from e
                self._root(_Root(text, parsed.repository, parsed.tag, locked))
            for key, ref in pkg.image_refs().items():
                if ref.digest:
                    digest = parse_digest(ref.digest, where=f"{where}: spec.images[{key!r}]")
                    self._root(_Root(key, ref.repository, ref.tag, digest))
        for pkg in pkgs:
            for key, ref in pkg.image_refs().items():
                tag = ref.tag or "latest"
                if not ref.digest and not any(
                    r.repo == ref.repository and r.tag == tag for r in self.roots
                ):
                    raise self.fail(
                        "kubepkg.json",
                        f"spec.images[{key!r}] is not pinned to a digest and neither "
                        "status.images nor status.digests says which one the archive carries "
                        "(make archives with `gitops-kubepkg airgap export`)",
                    )
        for root in self.roots:
            self.result.images.setdefault(root.key, str(root.digest))

    def _listed(self, meta: DigestMeta, where: str) -> None:
        exp = self.expect.get(meta.digest)
        if exp is None:
            exp = self.expect[meta.digest] = _Expect(meta.type, "", meta.size)
        elif exp.kind != meta.type or exp.size != meta.size:
            raise self.fail(
                "kubepkg.json",
                f"{where}: {meta.digest} is listed as a {meta.type} of {meta.size} bytes, "
                f"elsewhere as a {exp.kind} of {exp.size} bytes",
            )
        exp.listed = True
        exp.repos.add(meta.name)
        if meta.type == MANIFEST and meta.tag and not meta.platform:
            # The image's top manifest (crpe tags only this one; kubepkg tags the list).
            self._root(_Root(f"{meta.name}:{meta.tag}", meta.name, meta.tag, meta.digest))

    def _root(self, root: _Root) -> None:
        for r in self.roots:
            if (r.repo, r.tag, r.digest) == (root.repo, root.tag, root.digest):
                return
            if root.tag and (r.repo, r.tag) == (root.repo, root.tag):
                raise self.fail(
                    "kubepkg.json",
                    f"{root.repo}:{root.tag} is {r.digest} in {r.key!r} but {root.digest} "
                    f"in {root.key!r}",
                )
        exp = self.expect.setdefault(root.digest, _Expect(MANIFEST, "", -1))
        if exp.kind != MANIFEST:
            raise self.fail(
                "kubepkg.json",
                f"{root.key!r} names {root.digest}, which status.digests calls a blob",
            )
        exp.repos.add(root.repo)
        self.roots.append(root)

    # -- 2. blobs -------------------------------------------------------------------------

    def blob(self, entry: TarEntry, digest: Digest) -> None:
        name = entry.name
        exp = self.expect.get(digest)
        if exp is None:
            if self.listed:
                raise self.fail(
                    name,
                    f"blob {digest} is listed in neither status.digests nor any manifest "
                    "before it, so nothing says which repository it belongs to",
                )
            raise self.fail(
                name,
                "no manifest before it references this blob (an archive without status.digests "
                "lists kubepkg.json, then each manifest before the blobs it references)",
            )
        if exp.size >= 0 and entry.size != exp.size:
            raise DigestMismatch(
                f"{self.src}: {name}: {entry.size} bytes, but its descriptor says {exp.size}"
            )
        exp.size = entry.size
        if digest in self.arrived:
            return
        what = f"{self.src}: {name}"
        if exp.kind == MANIFEST:
            if entry.size > mediatype.MAX_MANIFEST_BYTES:
                raise self.fail(
                    name,
                    f"manifest of {entry.size} bytes exceeds the "
                    f"{mediatype.MAX_MANIFEST_BYTES}-byte limit",
                )
            raw = self.reader.read_all(mediatype.MAX_MANIFEST_BYTES)
            self.progress.advance(len(raw))
            v = Verifier(digest, len(raw), what)
            v.update(raw)
            v.check()
            media_type = exp.media_type or sniff_media_type(raw) or ""
            if media_type not in mediatype.MANIFESTS:
                raise self.fail(name, f"unknown manifest media type {media_type!r}")
            manifest = parse_manifest(raw, media_type, digest, what)
            exp.media_type = media_type
            self.manifests[digest] = manifest
            self._add_children(manifest, exp.repos)
            self.sink.write_manifest_blob(digest, raw, what)
        else:
            repos = sorted(exp.repos)
            if self.sink.has_blob(digest, repos):
                self.result.blobs_skipped += 1
                self.progress.advance(entry.size)
            else:
                self.sink.write_blob(digest, entry.size, self._counted, repos, what)
                self.result.blobs_written += 1
                self.result.bytes_written += entry.size
        self.arrived.add(digest)

    def _counted(self, view: memoryview) -> int:
        n = self.reader.readinto(view)
        self.progress.advance(n)
        return n

    def _add_children(self, manifest: Manifest, repos: set[str]) -> None:
        for child in manifest.children:
            kind = kind_of(child.media_type)
            exp = self.expect.get(child.digest)
            if exp is None:
                exp = self.expect[child.digest] = _Expect(kind, child.media_type, child.size)
            else:
                if exp.kind != kind:
                    raise self.fail(
                        blob_name(manifest.digest),
                        f"references {child.digest} as a {kind}, but status.digests lists "
                        f"it as a {exp.kind}",
                    )
                if exp.size < 0:
                    exp.size = child.size
                elif exp.size != child.size:
                    raise DigestMismatch(
                        f"{self.src}: {manifest.digest} says {child.digest} has {child.size} "
                        f"bytes, another descriptor or the archive says {exp.size}"
                    )
                if exp.media_type and exp.media_type != child.media_type:
                    raise self.fail(
                        blob_name(manifest.digest),
                        f"references {child.digest} as {child.media_type!r}, but it is "
                        f"{exp.media_type!r}",
                    )
                exp.media_type = child.media_type
            if not repos <= exp.repos:
                exp.repos |= repos
                if child.digest in self.manifests:
                    self._add_children(self.manifests[child.digest], exp.repos)

    # -- 3. index.json, oci-layout, manifest.json ----------------------------------------

    def index_json(self) -> None:
        """Checked against the manifests that arrived; the last one wins (upstream writes one per
        package of a KubePkgList). Names in it are not tags: kubepkg.json says those."""
        data = self.reader.read_all(mediatype.MAX_MANIFEST_BYTES)
        self.check_sum("index.json", data)
        where = f"{self.src}: index.json"
        for i, d in enumerate(parse_index_json(data, where)):
            label = d.annotations.get(REF_NAME) or str(d.digest)
            m = self.manifests.get(d.digest)
            if m is None:
                raise InputError(
                    f"{where}: manifests[{i}] ({label}) names {d.digest}, which is not a "
                    "manifest of this archive"
                )
            if m.media_type != d.media_type or len(m.raw) != d.size:
                raise InputError(
                    f"{where}: manifests[{i}] ({label}): media type or size differs from the "
                    "manifest's"
                )
        self.index_seen = True

    def docker_manifest_json(self) -> None:
        data = self.reader.read_all(mediatype.MAX_MANIFEST_BYTES)
        where = f"{self.src}: {DOCKER_MANIFEST_JSON}"
        for i, image in enumerate(parse_docker_manifest_json(data, where)):
            for digest in (image.config, *image.layers):
                if digest not in self.expect:
                    raise InputError(
                        f"{where}: [{i}] names {blob_name(digest)}, which no manifest of this "
                        "archive references"
                    )

    # -- 4. end -----------------------------------------------------------------------------

    def finish(self) -> None:
        if self.index_seen and not self.layout_seen:
            raise InputError(f"{self.src}: index.json without oci-layout")
        if self.layout_seen and not self.index_seen:
            raise InputError(f"{self.src}: oci-layout without index.json")
        if self.roots and not self.index_seen and not self.listed:
            raise InputError(
                f"{self.src}: neither index.json nor status.digests names the archive's content"
            )
        self.sink.flush()
        order: list[tuple[str, Manifest]] = []
        done: set[tuple[str, Digest]] = set()

        def walk(repo: str, digest: Digest, parent: str) -> None:
            if (repo, digest) in done:
                return
            m = self.manifests.get(digest)
            if m is None:
                raise InputError(
                    f"{self.src}: manifest {digest} ({parent}) is not in the archive; "
                    "manifests are always exported, so the archive is incomplete"
                )
            left_out = 0
            for child in m.children:
                if child.media_type in mediatype.MANIFESTS:
                    if (
                        m.is_index
                        and child.digest not in self.manifests
                        and self.listed
                        and not self.expect[child.digest].listed
                    ):
                        left_out += 1  # a platform the exporter did not keep
                        continue
                    walk(repo, child.digest, f"in {repo}@{m.digest}")
                elif not self.sink.ensure_blob(child.digest, [repo]):
                    raise BlobUnknown(
                        f"{self.src}: blob {child.digest} of {repo}@{m.digest} is neither "
                        "in the archive nor already imported (an archive made --since an "
                        "earlier one needs that one imported first)"
                    )
            if left_out:
                self.result.notes.append(
                    f"{repo}@{m.digest}: {len(m.children) - left_out} of {len(m.children)} "
                    "platforms are in the archive (the exporter kept only those)"
                )
            done.add((repo, digest))
            order.append((repo, m))

        for root in self.roots:
            walk(root.repo, root.digest, root.key)
        for digest, exp in self.expect.items():
            if exp.kind == MANIFEST and (digest in self.manifests or exp.listed):
                for repo in sorted(exp.repos):
                    walk(repo, digest, "listed in status.digests")
            elif (
                exp.listed
                and digest not in self.arrived
                and not self.sink.ensure_blob(digest, sorted(exp.repos))
            ):
                raise BlobUnknown(
                    f"{self.src}: blob {digest} is listed in status.digests but is "
                    "neither in the archive nor already imported"
                )
        for repo, m in order:
            self.sink.link_manifest(repo, m)
            self.result.manifests += 1
        for root in self.roots:
            if root.tag:
                self.sink.set_tag(root.repo, root.tag, self.manifests[root.digest])
                self.result.tags.append(f"{root.repo}:{root.tag}")


def _clean(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _blob_digest(name: str, src: str) -> Digest | None:
    """The digest a ``blobs/<alg>/<hex>`` path names; None for the ``blobs/`` directories."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs" and parts[1] in ALGORITHMS and parts[2]:
        return parse_digest(f"{parts[1]}:{parts[2]}", where=f"{src}: {name}")
    return None


def _check_path(name: str, src: str) -> str:
    clean = _clean(name).rstrip("/")
    parts = clean.split("/")
    if name.startswith("/") or "\\" in name or ".." in parts or "" in parts or "." in parts:
        raise TarError(f"{src}: {name}: path traversal or malformed path; refused")
    return clean


def import_tarball(
    stream: Any,
    source: str,
    sink: Sink,
    *,
    progress: Progress | None = None,
    total: int = 0,
    entry_sums: dict[str, str] | None = None,
) -> TarballImport:
    """Read the archive from ``stream`` (anything with ``readinto``) once, gzip or not; see the
    module docstring."""
    progress = progress or Silent()
    tar_stream, gz = open_archive(stream, source)
    reader = TarReader(tar_stream, source)
    state = _Import(reader, sink, progress, entry_sums or {}, gz)
    # A gzip archive's tar is longer than the file: its size says nothing about progress.
    progress.start("import", 0 if gz else total)
    try:
        _stream_entries(state, reader)
    except BaseException:
        # Blobs verified before the failure still land (they are good content); wait for them
        # so the store is settled when the error reaches the user.
        with contextlib.suppress(GitopsKubepkgError):
            sink.flush()
        raise
    progress.done()
    return state.result


def _stream_entries(state: _Import, reader: TarReader) -> None:
    state.first()
    while (entry := reader.next()) is not None:
        name = _check_path(entry.name, state.src)
        if entry.is_dir:
            if name not in ("blobs", *(f"blobs/{a}" for a in ALGORITHMS)):
                raise state.fail(entry.name, "unexpected directory")
            continue
        if name == "index.json":
            state.index_json()
        elif name == "oci-layout":
            check_oci_layout(reader.read_all(4096), f"{state.src}: oci-layout")
            state.layout_seen = True
        elif name == DOCKER_MANIFEST_JSON:
            state.docker_manifest_json()
        elif name.startswith("blobs/"):
            digest = _blob_digest(name, state.src)
            if digest is None:
                raise state.fail(entry.name, "unexpected entry under blobs/")
            state.blob(entry, digest)
        else:
            raise state.fail(
                entry.name,
                "unexpected entry (want blobs/<alg>/<hex>, index.json, oci-layout, manifest.json)",
            )
    if state.gz is not None:
        state.gz.drain()
    state.finish()


@dataclass
class ImportResult:
    tarball: TarballImport
    repositories: dict[str, dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {**self.tarball.to_json(), "repositories": self.repositories}


def import_export(
    directory: Path,
    sink: Sink,
    *,
    mirror_for: Callable[[str], Path] | None,
    progress: Progress | None = None,
    allow_rollback: bool = False,
    manifest_data: bytes | None = None,
) -> ImportResult:
    """Verify ``directory/airgap.json`` and everything it names, then import tarball and bundles.

    ``manifest_data``: the bytes of ``airgap.json`` the caller already read and verified (its
    signature), so a file swapped between the check and the import changes nothing.

    ``mirror_for(url)`` gives the bare mirror a repository's bundle is fetched into; None skips
    the git side (images only). A bundle that would move a branch backwards or a tag is refused
    before anything is written unless ``allow_rollback`` (see ``sources.bundle``).
    """
    progress = progress or Silent()
    manifest = read_manifest(directory / MANIFEST_NAME, manifest_data)
    tar_path = directory / manifest.tarball.path
    if manifest.tarball.path != TARBALL_NAME and "/" in manifest.tarball.path:
        raise InputError(f"{directory / MANIFEST_NAME}: tarball path {manifest.tarball.path!r}")
    try:
        size = tar_path.stat().st_size
    except OSError as e:
        raise InputError(f"{tar_path}: {e.strerror} (named in {MANIFEST_NAME})") from e
    if size != manifest.tarball.size:
        raise InputError(
            f"{tar_path}: {size} bytes, {MANIFEST_NAME} says {manifest.tarball.size} "
            "(the copy is truncated or damaged)"
        )
    pending: list[tuple[str, Path, Path]] = []
    if mirror_for is not None:
        for repo in manifest.repositories:
            if repo.bundle is None:
                continue
            path = repo.bundle.verify(directory)
            mirror = mirror_for(repo.url)
            git_bundle.verify_bundle(path, mirror, allow_rollback=allow_rollback)
            progress.note(f"verified bundle {repo.bundle.path} for {repo.url}")
            pending.append((repo.url, path, mirror))
    with open(tar_path, "rb", buffering=_CHUNK) as f:
        result = import_tarball(
            f,
            str(tar_path),
            sink,
            progress=progress,
            total=size,
            entry_sums=manifest.entries,
        )
    repos: dict[str, dict[str, str]] = {}
    for url, path, mirror in pending:
        try:
            repos[url] = git_bundle.fetch_bundle(
                path,
                mirror,
                allow_rollback=allow_rollback,
                note=f"airgap import {manifest.created}",
            )
        except SourceError as e:
            raise SourceError(f"{url}: {e}") from e
        progress.note(f"fetched {path.name} into {mirror}")
    return ImportResult(result, repos)
