"""Digests: the one place in gitops-kubepkg that hashes bytes.

Everything that names content by digest (the blob store, the airgap tar reader, the registry client
and the exporter) parses digests and verifies bytes through here, so the algorithms we accept and
the way a mismatch is reported live in one module. Verification happens while bytes stream: a
``Verifier`` is fed every chunk and checked once at the end, never after a second read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from gitops_kubepkg.errors import DigestMismatch, InputError

ALGORITHMS: Final = {"sha256": 64, "sha512": 128}
"""Accepted algorithms and the length of their lowercase hex encoding."""

_DIGEST = re.compile(r"^(?P<alg>[a-z0-9]+):(?P<hex>[0-9a-f]+)$")


@dataclass(frozen=True, order=True)
class Digest:
    """A checked ``<alg>:<hex>``; ``str(d)`` gives it back."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_digest(text: str, *, where: str = "") -> Digest:
    """Parse ``sha256:<64 hex>`` (or sha512); raise InputError naming ``where`` otherwise."""
    m = _DIGEST.match(text)
    prefix = f"{where}: " if where else ""
    if not m:
        raise InputError(f"{prefix}{text!r} is not a digest (want sha256:<64 lowercase hex>)")
    alg, hex_ = m.group("alg"), m.group("hex")
    want = ALGORITHMS.get(alg)
    if want is None:
        raise InputError(f"{prefix}{text!r}: unsupported digest algorithm {alg!r}")
    if len(hex_) != want:
        raise InputError(f"{prefix}{text!r}: {alg} wants {want} hex characters, got {len(hex_)}")
    return Digest(alg, hex_)


def is_digest(text: str) -> bool:
    m = _DIGEST.match(text)
    return m is not None and ALGORITHMS.get(m.group("alg")) == len(m.group("hex"))


def digest_bytes(data: bytes | memoryview, algorithm: str = "sha256") -> Digest:
    return Digest(algorithm, hashlib.new(algorithm, data).hexdigest())


class Verifier:
    """Feed it every chunk of a blob; ``check()`` raises DigestMismatch naming ``what``.

    ``size`` is checked as chunks arrive, so a stream that is longer than promised fails at the
    first extra byte instead of after it has been written somewhere.
    """

    __slots__ = ("_hash", "expected", "received", "size", "what")

    def __init__(self, expected: Digest, size: int, what: str) -> None:
        self.expected = expected
        self.size = size
        self.what = what
        self.received = 0
        self._hash = hashlib.new(expected.algorithm)

    def update(self, chunk: bytes | memoryview) -> None:
        self.received += len(chunk)
        if self.size >= 0 and self.received > self.size:
            raise DigestMismatch(
                f"{self.what}: more than the {self.size} bytes its descriptor promises"
            )
        self._hash.update(chunk)

    def check(self) -> None:
        if self.size >= 0 and self.received != self.size:
            raise DigestMismatch(
                f"{self.what}: size {self.received} bytes, want {self.size} (truncated or padded)"
            )
        got = self._hash.hexdigest()
        if got != self.expected.hex:
            raise DigestMismatch(
                f"{self.what}: content hashes to {self.expected.algorithm}:{got}, "
                f"want {self.expected}"
            )


class Hasher:
    """Digest a stream whose digest is not known yet (a manifest we just serialised, a tarball)."""

    __slots__ = ("_hash", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self.size = 0
        self._hash = hashlib.new(algorithm)

    def update(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        self._hash.update(chunk)

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._hash.hexdigest())
