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
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from gitops_kubepkg.errors import BlobUnknown, RegistryError
from gitops_kubepkg.registry.digest import Digest, Verifier
from gitops_kubepkg.storage import fsync_dir

CHUNK = 4 << 20
"""Read and write in 4 MiB pieces: large enough that hashing dominates, small enough for RSS."""

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
        self._writer: _BackgroundWriter | None = None

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

        This thread reads and hashes; a background thread writes, fsyncs and renames, so hashing
        chunk *k+1* overlaps writing chunk *k* and the fsync of one blob overlaps the next. A blob
        is renamed into place only after it verified and was fsynced; ``sync()`` waits for every
        rename (the importer calls it before it links manifests). Raises DigestMismatch, leaving
        nothing behind, when the bytes do not hash to ``digest``.
        """
        w = self._background()
        w.raise_error()
        verifier = Verifier(digest, size, what)
        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{os.getpid()}-{secrets.token_hex(8)}.partial"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        committed = False
        try:
            remaining = size
            while remaining > 0:
                i = w.free.get()
                view = memoryview(w.buffers[i])
                try:
                    n = source(view[: min(len(view), remaining)])
                    if n > 0:
                        verifier.update(view[:n])
                except BaseException:
                    w.free.put(i)
                    raise
                if n <= 0:
                    w.free.put(i)
                    break
                w.tasks.put(("write", fd, i, n))
                remaining -= n
            verifier.check()
            w.tasks.put(("commit", fd, tmp, self.path(digest)))
            committed = True
        finally:
            if not committed:
                w.tasks.put(("abort", fd, tmp, None))
                w.tasks.join()

    def sync(self) -> None:
        """Wait until every blob ``ingest`` accepted is fsynced and renamed into place."""
        if self._writer is not None:
            self._writer.tasks.join()
            self._writer.raise_error()

    def _background(self) -> _BackgroundWriter:
        if self._writer is None:
            self._writer = _BackgroundWriter()
        return self._writer

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


class _BackgroundWriter:
    """One daemon thread that writes chunks, then fsyncs and renames whole blobs, in order.

    Buffers cycle between the reading thread and this one through ``free``, so memory stays at
    ``BUFFERS * CHUNK`` however large the blob. The first error stops all later writes (their
    temp files are removed) and is raised on the reading thread by ``raise_error``.
    """

    BUFFERS = 4

    def __init__(self) -> None:
        self.buffers = [bytearray(CHUNK) for _ in range(self.BUFFERS)]
        self.free: queue.Queue[int] = queue.Queue()
        for i in range(self.BUFFERS):
            self.free.put(i)
        self.tasks: queue.Queue[tuple[str, int, Any, Any]] = queue.Queue()
        self.error: OSError | None = None
        threading.Thread(target=self._run, name="blobstore-writer", daemon=True).start()

    def raise_error(self) -> None:
        if self.error is not None:
            e = self.error
            raise RegistryError(f"writing the blob store: {e.strerror or e}", code="UNKNOWN") from e

    def _run(self) -> None:
        while True:
            kind, fd, a, b = self.tasks.get()
            try:
                if kind == "write":
                    try:
                        if self.error is None:
                            view = memoryview(self.buffers[a])[:b]
                            while view:
                                view = view[os.write(fd, view) :]
                    finally:
                        self.free.put(a)
                elif kind == "commit":
                    tmp, final = Path(a), Path(b)
                    if self.error is None:
                        os.fsync(fd)
                        os.close(fd)
                        os.chmod(tmp, 0o644)
                        final.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(tmp, final)
                        fsync_dir(final.parent)
                    else:
                        os.close(fd)
                        tmp.unlink(missing_ok=True)
                else:  # abort
                    os.close(fd)
                    Path(a).unlink(missing_ok=True)
            except OSError as e:
                self.error = self.error or e
                if kind == "commit":
                    Path(a).unlink(missing_ok=True)
            finally:
                self.tasks.task_done()


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
