"""Repository names, their manifests and their tags, beside the blob store.

``ROOT/repositories/<name>/_manifests/<alg>/<hex>`` holds a manifest's media type and says the
repository has that manifest; ``ROOT/repositories/<name>/_tags/<tag>`` holds the digest a tag
points at. Names keep the source host (``docker.io/library/nginx``) so a node can use this registry
as a mirror for the original names. The importer writes links only after every blob they reach is
in the store, and tags after links, so a tag never points at missing content. Each file is written
atomically; the server reads them through ``RefReader``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from gitops_kubepkg.errors import InputError
from gitops_kubepkg.registry.digest import Digest, is_digest, parse_digest
from gitops_kubepkg.storage import write_atomic

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]+)?"
_NAME = re.compile(rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a repository name we store, or None."""
    if len(name) > 255 or not _NAME.match(name):
        return f"{name!r} is not a repository name"
    if any(part in (".", "..") for part in name.split("/")):
        return f"{name!r} is not a repository name"
    return None


def tag_problem(tag: str) -> str | None:
    return None if _TAG.match(tag) else f"{tag!r} is not a tag"


class RefReader(Protocol):
    """What the server needs."""

    def exists(self, name: str) -> bool: ...

    def manifest_type(self, name: str, digest: Digest) -> str | None: ...

    def manifests(self, name: str) -> list[Digest]: ...

    def resolve(self, name: str, tag: str) -> Digest | None: ...

    def tags(self, name: str) -> list[str]: ...

    def names(self) -> list[str]: ...


class RefWriter(Protocol):
    """What the importer needs."""

    def link_manifest(self, name: str, digest: Digest, media_type: str) -> None: ...

    def set_tag(self, name: str, tag: str, digest: Digest) -> None: ...


class Repositories:
    """Both interfaces over ``ROOT/repositories``."""

    def __init__(self, root: Path) -> None:
        self.base = root / "repositories"

    def _dir(self, name: str) -> Path:
        if why := name_problem(name):
            raise InputError(why)
        return self.base / name

    def exists(self, name: str) -> bool:
        return name_problem(name) is None and (self.base / name / "_manifests").is_dir()

    def manifest_type(self, name: str, digest: Digest) -> str | None:
        try:
            return (self._dir(name) / "_manifests" / digest.algorithm / digest.hex).read_text()
        except (FileNotFoundError, InputError):
            return None

    def manifests(self, name: str) -> list[Digest]:
        """Every manifest linked into ``name`` (a listing of its ``_manifests``)."""
        if name_problem(name):
            return []
        out: list[Digest] = []
        base = self.base / name / "_manifests"
        try:
            algorithms = [p for p in base.iterdir() if p.is_dir()]
        except OSError:
            return []
        for algorithm in algorithms:
            for entry in algorithm.iterdir():
                text = f"{algorithm.name}:{entry.name}"
                if is_digest(text):
                    out.append(parse_digest(text))
        return out

    def resolve(self, name: str, tag: str) -> Digest | None:
        if tag_problem(tag) or name_problem(name):
            return None
        try:
            text = (self.base / name / "_tags" / tag).read_text().strip()
        except FileNotFoundError:
            return None
        return parse_digest(text) if is_digest(text) else None

    def tags(self, name: str) -> list[str]:
        if name_problem(name):
            return []
        d = self.base / name / "_tags"
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if not p.name.startswith("."))

    def names(self) -> list[str]:
        """Every repository with at least one manifest, sorted (the catalog)."""
        if not self.base.is_dir():
            return []
        return sorted(
            str(p.parent.relative_to(self.base))
            for p in self.base.rglob("_manifests")
            if p.is_dir()
        )

    def link_manifest(self, name: str, digest: Digest, media_type: str) -> None:
        path = self._dir(name) / "_manifests" / digest.algorithm / digest.hex
        if path.is_file() and path.read_text() == media_type:
            return
        write_atomic(path, media_type.encode())

    def set_tag(self, name: str, tag: str, digest: Digest) -> None:
        if why := tag_problem(tag):
            raise InputError(why)
        path = self._dir(name) / "_tags" / tag
        if path.is_file() and path.read_text().strip() == str(digest):
            return
        write_atomic(path, str(digest).encode())
