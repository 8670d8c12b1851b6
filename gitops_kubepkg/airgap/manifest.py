"""``airgap.json``: what an export holds, with the sha256 and size of every file in it.

Written last by ``airgap export`` and read first by ``airgap import``, which refuses to touch the
store or a mirror until every file it names hashes as recorded (a copy across the air gap that lost
or flipped a byte fails here, before anything else reads it). It also records, per repository,
the URL Repository objects use, the refs the bundle carries and its prerequisite commits, so
``export --since`` can bundle only newer history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitops_kubepkg.errors import DigestMismatch, InputError
from gitops_kubepkg.registry.digest import Digest, Hasher, Verifier
from gitops_kubepkg.storage import write_atomic

MANIFEST_NAME = "airgap.json"
TARBALL_NAME = "kubepkg.airgap.tar"
KIND = "KubePkgAirgapExport"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileSum:
    """A file of the export, relative to its directory."""

    path: str
    sha256: str
    size: int

    @classmethod
    def of(cls, path: Path, base: Path) -> FileSum:
        h = Hasher()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return cls(str(path.relative_to(base)), h.digest().hex, h.size)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}

    def verify(self, base: Path) -> Path:
        """Hash the file; raise InputError naming it when it is missing or differs."""
        path = base / self.path
        if ".." in Path(self.path).parts or Path(self.path).is_absolute():
            raise InputError(f"{MANIFEST_NAME}: file path {self.path!r} leaves the directory")
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below; open errors are the point
        except OSError as e:
            raise InputError(f"{path}: {e.strerror} (named in {MANIFEST_NAME})") from e
        verifier = Verifier(Digest("sha256", self.sha256), self.size, str(path))
        with f:
            while chunk := f.read(_CHUNK):
                verifier.update(chunk)
        try:
            verifier.check()
        except DigestMismatch as e:
            raise InputError(f"{e} (checksum from {MANIFEST_NAME}; the copy is damaged)") from e
        return path


@dataclass(frozen=True)
class RepositoryBundle:
    url: str
    bundle: FileSum | None
    refs: Mapping[str, str]
    prerequisites: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "bundle": self.bundle.to_json() if self.bundle else None,
            "refs": dict(self.refs),
            "prerequisites": list(self.prerequisites),
        }


@dataclass(frozen=True)
class AirgapManifest:
    created: str
    tarball: FileSum
    repositories: list[RepositoryBundle] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    entries: dict[str, str] = field(default_factory=dict)
    """sha256 of the tar entries that are not content-addressed (``kubepkg.json``, ``index.json``),
    so an import verifies every byte it uses in its one pass, without re-hashing the tarball."""

    def repository(self, url: str) -> RepositoryBundle | None:
        return next((r for r in self.repositories if r.url == url), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": 1,
            "created": self.created,
            "tarball": {**self.tarball.to_json(), "entries": self.entries},
            "repositories": [r.to_json() for r in self.repositories],
            "images": self.images,
        }

    def write(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_json(), indent=2).encode() + b"\n")


def _file_sum(obj: Any, where: str) -> FileSum:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: want an object with path, sha256 and size")
    path, sha, size = obj.get("path"), obj.get("sha256"), obj.get("size")
    if not isinstance(path, str) or not isinstance(sha, str) or len(sha) != 64:
        raise InputError(f"{where}: want path and a 64-character sha256")
    if not isinstance(size, int) or size < 0:
        raise InputError(f"{where}.size: want a non-negative integer")
    return FileSum(path, sha, size)


def read_manifest(path: Path, data: bytes | None = None) -> AirgapManifest:
    """``airgap.json`` at ``path``; ``data`` is its bytes when the caller already read (and
    verified) them, so what is checked is what is used."""
    try:
        doc = json.loads(path.read_bytes() if data is None else data)
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from e
    except ValueError as e:
        raise InputError(f"{path}: not JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise InputError(f"{path}: not an airgap export manifest (kind {KIND})")
    repos = []
    for i, r in enumerate(doc.get("repositories") or []):
        where = f"{path}: repositories[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("url"), str):
            raise InputError(f"{where}.url: required")
        bundle = _file_sum(r["bundle"], f"{where}.bundle") if r.get("bundle") else None
        refs = r.get("refs") or {}
        if not isinstance(refs, dict):
            raise InputError(f"{where}.refs: want a map")
        repos.append(
            RepositoryBundle(
                r["url"],
                bundle,
                {str(k): str(v) for k, v in refs.items()},
                tuple(str(p) for p in r.get("prerequisites") or ()),
            )
        )
    images = doc.get("images") or {}
    entries = (doc.get("tarball") or {}).get("entries") or {}
    if not isinstance(entries, dict):
        raise InputError(f"{path}: tarball.entries: want a map of sha256 sums")
    return AirgapManifest(
        entries={str(k): str(v) for k, v in entries.items()},
        created=str(doc.get("created", "")),
        tarball=_file_sum(doc.get("tarball"), f"{path}: tarball"),
        repositories=repos,
        images={str(k): str(v) for k, v in images.items()} if isinstance(images, dict) else {},
    )
