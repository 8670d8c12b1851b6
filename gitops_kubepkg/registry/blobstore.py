"""The content-addressed blob store: ``ROOT/blobs/<alg>/<hex>``, one file per blob.

The airgap importer writes here and the registry server reads from here; each sees only the small
interface it needs (``BlobWriter`` / ``BlobReader``), as go-containerregistry does. A blob is
written to ``ROOT/tmp`` while its bytes are hashed, fsynced, then renamed into place, so a file
under ``blobs/`` is always complete and verified: a crash leaves at most a temp file, and a re-run
skips every blob already present. The layout matches the OCI image layout's ``blobs/`` directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from gitops_kubepkg.errors import BlobUnknown, RegistryError
from gitops_kubepkg.registry.digest import Digest, Verifier
from gitops_kubepkg.storage import fsync_dir

CHUNK = 1 << 20
"""Read and write in 1 MiB pieces: large enough that hashing dominates, small enough for RSS."""

ReadInto = Callable[[memoryview], int]
"""A source of bytes, like ``file.readinto``: fills the view, returns how much (0 at the end)."""


class BlobReader(Protocol):
    """What the registry server needs: look a blob up and open it."""

    def size(self, digest: Digest) -> int | None: ...

    def path(self, digest: Digest) -> Path: ...

    def read_small(self, digest: Digest, limit: int) -> bytes: ...


class BlobWriter(Protocol):
    """What the importer needs: know what is there, add verified blobs."""

    def has(self, digest: Digest) -> bool: ...

    def ingest(self, digest: Digest, size: int, source: ReadInto, what: str) -> None: ...

    def put(self, digest: Digest, data: bytes, what: str) -> bool: ...


class BlobStore:
    """Both interfaces over one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"

    def path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def size(self, digest: Digest) -> int | None:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def has(self, digest: Digest) -> bool:
        return self.path(digest).is_file()

    def read_small(self, digest: Digest, limit: int) -> bytes:
        """A manifest or config: at most ``limit`` bytes, or RegistryError."""
        try:
            with open(self.path(digest), "rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError as e:
            raise BlobUnknown(f"blob {digest} is not in the store {self.root}") from e
        if len(data) > limit:
            raise RegistryError(
                f"blob {digest} is larger than {limit} bytes", code="SIZE_INVALID", status=400
            )
        return data

    def ingest(self, digest: Digest, size: int, source: ReadInto, what: str) -> None:
        """Copy exactly ``size`` bytes from ``source`` into the store, verifying as they pass.

        Raises DigestMismatch (nothing is stored) when the bytes do not hash to ``digest``.
        """
        verifier = Verifier(digest, size, what)
        buf = bytearray(min(CHUNK, max(size, 1)))
        view = memoryview(buf)
        with self._temp_file() as (f, tmp):
            remaining = size
            while remaining > 0:
                n = source(view[: min(len(view), remaining)])
                if n <= 0:
                    break
                chunk = view[:n]
                verifier.update(chunk)
                f.write(chunk)
                remaining -= n
            verifier.check()
            self._commit(f, tmp, digest)

    def put(self, digest: Digest, data: bytes, what: str) -> bool:
        """Store bytes held in memory (manifests); False when the blob was already there."""
        if self.has(digest):
            return False
        verifier = Verifier(digest, len(data), what)
        verifier.update(data)
        verifier.check()
        with self._temp_file() as (f, tmp):
            f.write(data)
            self._commit(f, tmp, digest)
        return True

    def clean_partials(self) -> int:
        """Remove temp files left by writers that died (a crash mid-import); return how many."""
        removed = 0
        if not self._tmp.is_dir():
            return 0
        for entry in self._tmp.iterdir():
            pid_text = entry.name.split("-", 1)[0]
            if pid_text.isdigit() and _alive(int(pid_text)):
                continue
            entry.unlink(missing_ok=True)
            removed += 1
        return removed

    def digests(self) -> Iterator[Digest]:
        """Every blob present (for ``fsck``-like checks and tests)."""
        blobs = self.root / "blobs"
        if not blobs.is_dir():
            return
        for alg_dir in sorted(blobs.iterdir()):
            for f in sorted(alg_dir.iterdir()):
                yield Digest(alg_dir.name, f.name)

    @contextlib.contextmanager
    def _temp_file(self) -> Iterator[tuple[_RawFile, Path]]:
        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{os.getpid()}-{secrets.token_hex(8)}.partial"
        f = open(tmp, "xb")  # noqa: SIM115 - closed in finally; commit renames it while open
        try:
            yield f, tmp
        finally:
            f.close()
            tmp.unlink(missing_ok=True)

    def _commit(self, f: _RawFile, tmp: Path, digest: Digest) -> None:
        f.flush()
        os.fsync(f.fileno())
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
        fsync_dir(final.parent)


class _RawFile(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...

    def flush(self) -> None: ...

    def fileno(self) -> int: ...


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
