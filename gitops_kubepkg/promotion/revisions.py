"""Which catalog revision a request names: ``web@1.2.0``, ``web@latest``, and what is newer.

First step of ``promote`` and of ``upgrades``, after listing the catalog's refs. Pure: the tags come
in as the ref listing; the rules for which tags are revisions are ``sources.catalog``'s own
(``<package-path>/v<semver>``), so promotion and the controller agree on what a revision is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import semver

from gitops_kubepkg.errors import InputError
from gitops_kubepkg.sources.catalog import Candidate, candidates

LATEST = "latest"


@dataclass(frozen=True)
class Request:
    """``PACKAGE@VERSION``: a package path and a version, or ``latest``."""

    package: str
    version: str


def parse_request(text: str) -> Request:
    """``web@1.2.0`` / ``apps/web@latest``; a bare ``web`` means latest."""
    package, sep, version = text.rpartition("@")
    if not sep:
        package, version = text, LATEST
    package = package.strip().strip("/")
    version = version.strip()
    if version.startswith("v") and semver.Version.is_valid(version[1:]):
        version = version[1:]
    if not package:
        raise InputError(f"{text!r}: want PACKAGE@VERSION (like web@1.2.0 or web@latest)")
    if version != LATEST and not semver.Version.is_valid(version):
        raise InputError(
            f"{text!r}: {version!r} is not a semantic version (like 1.2.0) nor 'latest'"
        )
    return Request(package, version)


def package_candidates(refs: Mapping[str, str], package: str) -> list[Candidate]:
    """The package's revision tags, lowest version first."""
    found = [c for c in candidates(refs) if c.path == package]
    return sorted(found, key=lambda c: semver.Version.parse(c.version))


def _not_semver_hint(refs: Mapping[str, str], package: str) -> str:
    odd = sorted(
        ref.removeprefix("refs/tags/")
        for ref in refs
        if ref.startswith(f"refs/tags/{package}/") and not ref.endswith("^{}")
    )
    odd = [t for t in odd if t not in {c.tag for c in package_candidates(refs, package)}]
    if not odd:
        return ""
    return f" (tags {', '.join(odd[:5])} are not <package>/v<semver> and are not revisions)"


def choose(refs: Mapping[str, str], request: Request, catalog: str) -> Candidate:
    """The candidate the request names; an InputError naming the package, version and catalog."""
    found = package_candidates(refs, request.package)
    if not found:
        packages = sorted({c.path for c in candidates(refs)})
        known = f"; it has {', '.join(packages[:20])}" if packages else "; it has no revision tags"
        raise InputError(
            f"{catalog}: no package {request.package!r} (no tag {request.package}/v<semver>)"
            f"{known}{_not_semver_hint(refs, request.package)}"
        )
    if request.version == LATEST:
        releases = [c for c in found if not semver.Version.parse(c.version).prerelease]
        if not releases:
            raise InputError(
                f"{catalog}: package {request.package!r} has only prereleases "
                f"({', '.join(c.version for c in found)}); name one explicitly"
            )
        return releases[-1]
    for c in found:
        if semver.Version.parse(c.version) == semver.Version.parse(request.version):
            return c
    raise InputError(
        f"{catalog}: package {request.package!r} has no version {request.version} "
        f"(tag {request.package}/v{request.version}); it has {', '.join(c.version for c in found)}"
    )


def newer(
    refs: Mapping[str, str], package: str, current: str, *, prereleases: bool = False
) -> list[Candidate]:
    """The package's revisions above ``current``, lowest first; prereleases only when asked."""
    now = semver.Version.parse(current)
    out = []
    for c in package_candidates(refs, package):
        v = semver.Version.parse(c.version)
        if v <= now or (v.prerelease and not prereleases):
            continue
        out.append(c)
    return out
