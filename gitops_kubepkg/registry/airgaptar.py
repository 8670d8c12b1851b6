"""The airgap tarball, read and written as a stream in one pass.

``kubepkg.airgap.tar`` is a plain (uncompressed) tar: ``kubepkg.json`` first, then
``blobs/<alg>/<hex>``, ``index.json`` and ``oci-layout`` (seed 000). The exporter writes it with
``TarWriter`` straight from the registries it pulls from; the importer reads it with ``TarReader``
straight into the blob store, so nothing is unpacked to disk first and each byte is read once.
Upstream's gen 1/2 archives (``kubepkg.tgz``, crpe's ``<name>@<version>.tgz``) are the same tar
gzipped: ``open_archive`` tells them apart by their first bytes (never the file name) and
decompresses them as a stream, so they too are read once with no decompressed copy on disk.

The reader is our own header loop (``tarfile.TarInfo.frombuf`` decodes each 512-byte header)
rather than ``tarfile`` in ``r|`` mode, because it must refuse links, devices and sparse files
before any byte is used, name the entry in every error, notice truncation, and hand entry data to
the caller with ``readinto`` into one reused buffer (``tarfile``'s stream reads 10 KiB at a time).
"""

from __future__ import annotations

import contextlib
import gzip
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from gitops_kubepkg.errors import InputError

BLOCK = 512
_MAX_PAX = 1 << 20
_REGULAR = {tarfile.REGTYPE, tarfile.AREGTYPE}
_REFUSED = {
    tarfile.LNKTYPE: "a hard link",
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
    tarfile.GNUTYPE_LONGLINK: "a link",
}


class TarError(InputError):
    """The tarball itself is malformed or holds an entry we refuse; names the tar and entry."""


@dataclass(frozen=True)
class TarEntry:
    name: str
    size: int
    is_dir: bool
    offset: int
    """Byte offset of the entry's data in the tarball (for error messages)."""


class _Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class TarReader:
    """Entries one after another; the current entry's data through ``readinto``/``read_all``.

    Unread data of an entry is skipped by ``next()``. ``source`` names the tarball in errors.
    """

    def __init__(self, stream: _Readable, source: str) -> None:
        self._stream = stream
        self.source = source
        self.position = 0
        self._remaining = 0
        self._padding = 0
        self._entry: TarEntry | None = None
        self._ended = False
        self._block = bytearray(BLOCK)
        self._skip = bytearray(1 << 16)

    def _fill(self, view: memoryview) -> int:
        """Read until ``view`` is full or the stream ends; return how much was read."""
        got = 0
        while got < len(view):
            n = self._stream.readinto(view[got:])
            if not n:
                break
            got += n
        self.position += got
        return got

    def _discard(self, count: int, what: str) -> None:
        skip = memoryview(self._skip)
        while count > 0:
            n = self._fill(skip[: min(len(skip), count)])
            if n == 0:
                raise TarError(f"{self.source}: truncated in {what}")
            count -= n

    def _header(self, after: str) -> tarfile.TarInfo | None:
        view = memoryview(self._block)
        n = self._fill(view)
        if n == 0:
            raise TarError(f"{self.source}: truncated after {after} (no end-of-archive marker)")
        if n < BLOCK:
            raise TarError(f"{self.source}: truncated in the header after {after}")
        if not any(self._block):
            return None
        try:
            return tarfile.TarInfo.frombuf(bytes(self._block), "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise TarError(
                f"{self.source}: bad tar header at byte {self.position - BLOCK} after {after}: {e}"
            ) from e

    def next(self) -> TarEntry | None:
        """The next entry, or None at the end-of-archive marker."""
        if self._ended:
            return None
        after = repr(self._entry.name) if self._entry else "the start"
        if self._entry is not None:
            self._discard(self._remaining + self._padding, self._entry.name)
            self._remaining = self._padding = 0
        pax: dict[str, str] = {}
        long_name: str | None = None
        while True:
            info = self._header(after)
            if info is None:
                self._ended = True
                self._entry = None
                return None
            if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME):
                what = f"extended header for the entry after {after}"
                if info.size > _MAX_PAX:
                    raise TarError(f"{self.source}: {what} is {info.size} bytes, too large")
                data = self._read_exact(info.size, what)
                self._discard(_padding(info.size), what)
                if info.type == tarfile.GNUTYPE_LONGNAME:
                    long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                elif info.type == tarfile.XHDTYPE:
                    pax.update(_parse_pax(data, self.source, what))
                continue
            break
        name = pax.get("path", long_name if long_name is not None else info.name)
        size = info.size
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError as e:
                raise TarError(f"{self.source}: {name}: bad pax size {pax['size']!r}") from e
        if info.type in _REFUSED:
            raise TarError(
                f"{self.source}: {name}: is {_REFUSED[info.type]}; "
                "an airgap tarball holds only regular files and directories"
            )
        is_dir = info.type == tarfile.DIRTYPE
        if not is_dir and info.type not in _REGULAR:
            raise TarError(f"{self.source}: {name}: unsupported tar entry type {info.type!r}")
        if size < 0:
            raise TarError(f"{self.source}: {name}: negative size")
        self._remaining = 0 if is_dir else size
        self._padding = 0 if is_dir else _padding(size)
        self._entry = TarEntry(name, size, is_dir, self.position)
        return self._entry

    def readinto(self, view: memoryview) -> int:
        """Data of the current entry; 0 at its end. Raises TarError when the tar stops early."""
        if self._remaining <= 0 or self._entry is None:
            return 0
        want = min(len(view), self._remaining)
        n = self._stream.readinto(view[:want]) or 0
        if n == 0:
            raise TarError(
                f"{self.source}: truncated in {self._entry.name} "
                f"({self._remaining} of {self._entry.size} bytes missing)"
            )
        self.position += n
        self._remaining -= n
        return n

    def read_all(self, limit: int) -> bytes:
        """The whole current entry, refusing entries larger than ``limit``."""
        assert self._entry is not None
        if self._entry.size > limit:
            raise TarError(
                f"{self.source}: {self._entry.name}: {self._entry.size} bytes exceeds "
                f"the {limit}-byte limit for this entry"
            )
        return self._read_exact(self._remaining, self._entry.name, current=True)

    def _read_exact(self, size: int, what: str, *, current: bool = False) -> bytes:
        buf = bytearray(size)
        n = self._fill(memoryview(buf))
        if current:
            self._remaining -= n
        if n < size:
            raise TarError(f"{self.source}: truncated in {what} ({size - n} bytes missing)")
        return bytes(buf)


GZIP_MAGIC = b"\x1f\x8b"


class _Peeked:
    """``stream`` with its first bytes, already read to sniff the format, handed back first."""

    def __init__(self, stream: _Readable, head: bytes) -> None:
        self._stream = stream
        self._head = head

    def readinto(self, view: memoryview, /) -> int:
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._stream.readinto(view) or 0

    def read(self, size: int = -1) -> bytes:
        """What ``gzip.GzipFile`` calls; ``size`` < 0 is never asked for."""
        buf = bytearray(max(size, 0))
        n = self.readinto(memoryview(buf))
        return bytes(buf[:n])


class GzipStream:
    """The decompressed bytes of a gzip stream, read on demand; every failure is a TarError.

    ``compressed`` counts the bytes taken from the file (progress against its size).
    """

    def __init__(self, stream: _Peeked, source: str) -> None:
        self._raw = stream
        self.source = source
        self._gz = gzip.GzipFile(fileobj=self, mode="rb")  # type: ignore[call-overload]
        self.compressed = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.compressed += len(data)
        return data

    def readinto(self, view: memoryview, /) -> int:
        try:
            return int(self._gz.readinto(view))
        except EOFError as e:
            raise TarError(
                f"{self.source}: truncated gzip stream ({self.compressed} compressed bytes read): {e}"
            ) from e
        except (gzip.BadGzipFile, zlib.error, OSError) as e:
            raise TarError(
                f"{self.source}: corrupt gzip stream near compressed byte {self.compressed}: {e}"
            ) from e

    def drain(self) -> None:
        """Read to the end so the gzip trailer (CRC-32 and length) is checked."""
        buf = memoryview(bytearray(1 << 16))
        while self.readinto(buf):
            pass


def open_archive(stream: _Readable, source: str) -> tuple[_Readable, GzipStream | None]:
    """The tar bytes of ``stream`` and, when it is gzip (by its magic bytes), the decompressor."""
    head = bytearray(2)
    got = 0
    while got < 2:
        n = stream.readinto(memoryview(head)[got:])
        if not n:
            break
        got += n
    peeked = _Peeked(stream, bytes(head[:got]))
    if bytes(head[:got]) == GZIP_MAGIC:
        gz = GzipStream(peeked, source)
        return gz, gz
    return peeked, None


def _padding(size: int) -> int:
    return -size % BLOCK


def _parse_pax(data: bytes, source: str, what: str) -> dict[str, str]:
    """``<len> <key>=<value>\\n`` records (POSIX pax); keys we do not use are kept and ignored."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise TarError(f"{source}: malformed pax record in {what}")
        try:
            length = int(data[pos:space])
        except ValueError as e:
            raise TarError(f"{source}: malformed pax record in {what}") from e
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise TarError(f"{source}: malformed pax record in {what}")
        key, _, value = record[:-1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class TarWriter:
    """Write entries in order; each entry's size is known before its bytes (a tar needs it)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.written = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self.written += len(data)

    def _header(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        info.mtime = 0
        info.uname = info.gname = ""
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._header(name, len(data))
        self._write(data)
        self._write(bytes(_padding(len(data))))

    @contextlib.contextmanager
    def entry(self, name: str, size: int) -> Iterator[_EntryWriter]:
        """Write exactly ``size`` bytes through the yielded writer."""
        self._header(name, size)
        w = _EntryWriter(self, name, size)
        yield w
        if w.left != 0:
            raise TarError(f"{name}: wrote {size - w.left} of {size} bytes")
        self._write(bytes(_padding(size)))

    def close(self) -> None:
        """The end-of-archive marker: two zero blocks."""
        self._write(bytes(2 * BLOCK))


class _EntryWriter:
    def __init__(self, tar: TarWriter, name: str, size: int) -> None:
        self._tar = tar
        self.name = name
        self.left = size

    def write(self, chunk: bytes | memoryview) -> None:
        if len(chunk) > self.left:
            raise TarError(f"{self.name}: more bytes than the {self.left} announced")
        self._tar._write(chunk)
        self.left -= len(chunk)


def scan_names(stream: _Readable, source: str) -> Iterator[TarEntry]:
    """Every entry of a tarball, data skipped (``--since`` only needs the names)."""
    reader = TarReader(stream, source)
    while (entry := reader.next()) is not None:
        yield entry
