"""Container image references: parse, check and normalise ``[host/]path[:tag][@digest]``.

Used by validation (every image a package names or runs joins ``KubePkg.images``), by render (pin
``ref@digest``, rewrite to a local registry) and by the registry (repository names keep the source
host, ``docker.io/library/nginx``). The grammar is the distribution reference grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}"

_REFERENCE = re.compile(
    rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_DIGEST_RE = re.compile(r"^(?P<alg>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[a-zA-Z0-9=_-]+)$")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}

DEFAULT_DOMAIN = "docker.io"


def digest_problem(digest: str) -> str | None:
    """Why ``digest`` is not a well-formed digest, or None when it is."""
    m = _DIGEST_RE.match(digest)
    if not m:
        return f"{digest!r} is not a digest (want sha256:<64 hex>)"
    alg, hex_ = m.group("alg"), m.group("hex")
    want = _HEX_LENGTH.get(alg)
    if want is None:
        return f"{digest!r}: unsupported digest algorithm {alg!r} (want sha256 or sha512)"
    if len(hex_) != want or not re.fullmatch(r"[0-9a-f]+", hex_):
        return f"{digest!r}: {alg} wants {want} lowercase hex characters"
    return None


def mirror_repository(repository: str) -> str:
    """The name a mirror registry keeps ``host[:port]/path`` under: the port's ``:`` becomes ``-``.

    A port is not allowed in a repository path component, so ``10.0.0.5:5000/team/app`` is kept
    (and pulled, after a registry rewrite) as ``10.0.0.5-5000/team/app``. The airgap store, the
    pull-only server, ``--to-registry`` pushes and render's rewrite all use this one mapping.
    """
    host, sep, path = repository.partition("/")
    return f"{host.replace(':', '-')}{sep}{path}"


@dataclass(frozen=True)
class ImageRef:
    """A parsed reference. ``domain`` and ``path`` are normalised (docker.io/library/...)."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """``docker.io/library/nginx``: the name a registry mirror stores it under."""
        return f"{self.domain}/{self.path}"

    @property
    def mirror_repository(self) -> str:
        return mirror_repository(self.repository)

    @property
    def familiar(self) -> str:
        return str(self)

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.domain, self.path, self.tag, digest)

    def without_digest(self) -> ImageRef:
        return ImageRef(self.domain, self.path, self.tag, "")

    def without_tag(self) -> ImageRef:
        return ImageRef(self.domain, self.path, "", self.digest)

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def parse_image(reference: str) -> ImageRef:
    """Parse and normalise; raise ValueError with the reason when it does not parse."""
    if not reference or reference != reference.strip():
        raise ValueError(f"{reference!r} is not an image reference")
    m = _REFERENCE.match(reference)
    if not m:
        raise ValueError(f"{reference!r} is not an image reference ([host/]path[:tag][@digest])")
    name = m.group("name")
    domain = m.group("domain")
    first, _, rest = name.partition("/")
    # A first component is a host only when it looks like one; "library/nginx" has no host.
    if (
        domain is None
        or not rest
        or not ("." in first or ":" in first or first == "localhost" or first != first.lower())
    ):
        domain, path = DEFAULT_DOMAIN, name
    else:
        path = rest
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    digest = m.group("digest") or ""
    if digest and (why := digest_problem(digest)):
        raise ValueError(why)
    if len(name) > 255:
        raise ValueError(f"{reference!r}: repository name longer than 255 characters")
    return ImageRef(domain, path, m.group("tag") or "", digest)
