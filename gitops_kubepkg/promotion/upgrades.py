"""``upgrades``: every deployed package that has a newer catalog revision.

Reads the deployment branch once, then lists each catalog's refs once (no fetch: tags are enough to
know versions). A deployed KubePkg is compared with the catalog its record names (or the one given),
by semver; prereleases count only when asked. ``compare`` is pure, so the controller can put the
same answer on a KubePkg's status from the refs its mirrors already hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import semver

from gitops_kubepkg import git
from gitops_kubepkg.conventions import redact_url
from gitops_kubepkg.errors import GitopsKubepkgError, InputError, Problem
from gitops_kubepkg.promotion.revisions import newer
from gitops_kubepkg.promotion.workspace import Deployed, Workspace, default_branch, remote_refs


@dataclass(frozen=True)
class Upgrade:
    """A deployed package and the newer revisions its catalog has (lowest first)."""

    path: str
    name: str
    package: str
    current: str
    catalog: str
    newer: list[str]

    @property
    def latest(self) -> str:
        return self.newer[-1]


@dataclass(frozen=True)
class Report:
    upgrades: list[Upgrade]
    current: list[str] = field(default_factory=list)
    """Paths of deployed packages already at their newest revision."""
    untracked: list[str] = field(default_factory=list)
    """Paths of KubePkgs that record no catalog revision (not promoted, or by hand)."""
    problems: list[Problem] = field(default_factory=list)


def compare(
    deployed: Sequence[Deployed],
    refs_of: Callable[[str], Mapping[str, str]],
    *,
    prereleases: bool = False,
    catalog: str = "",
) -> Report:
    """Upgrades for ``deployed``; ``refs_of(url)`` gives a catalog's refs (it may raise)."""
    upgrades: list[Upgrade] = []
    current: list[str] = []
    untracked: list[str] = []
    problems: list[Problem] = []
    for d in deployed:
        if d.origin is None or not semver.Version.is_valid(d.origin.version):
            untracked.append(d.path)
            continue
        url = catalog or d.origin.url
        try:
            refs = refs_of(url)
        except GitopsKubepkgError as e:
            problems.append(Problem(d.path, "", str(e)))
            continue
        found = newer(refs, d.origin.package, d.origin.version, prereleases=prereleases)
        if not found:
            current.append(d.path)
            continue
        upgrades.append(
            Upgrade(
                d.path,
                d.package.name,
                d.origin.package,
                d.origin.version,
                redact_url(url),
                [c.version for c in found],
            )
        )
    return Report(upgrades, current, untracked, problems)


def credentials_for(
    url: str, named: str, credentials: git.Credentials | None
) -> git.Credentials | None:
    """The catalog credentials go only to the catalog the operator named (``--catalog``), never
    to a catalog URL recorded in a deployed file: whoever writes the deployment repository
    writes those, and could name a server of theirs."""
    return credentials if named and url == named else None


def find_upgrades(
    deployment_url: str,
    *,
    target: str = "",
    catalog_url: str = "",
    prereleases: bool = False,
    deployment_credentials: git.Credentials | None = None,
    catalog_credentials: git.Credentials | None = None,
) -> Report:
    """``compare`` over the deployment branch at ``deployment_url``, each catalog listed once."""
    cache: dict[str, Mapping[str, str]] = {}

    def refs_of(url: str) -> Mapping[str, str]:
        if url not in cache:
            cache[url] = remote_refs(
                url, credentials_for(url, catalog_url, catalog_credentials), "catalog"
            )
        return cache[url]

    target = target or default_branch(deployment_url, deployment_credentials, "deployment")
    with Workspace() as ws:
        tip = ws.fetch_branch(deployment_url, target, deployment_credentials)
        if tip is None:
            raise InputError(f"{redact_url(deployment_url)}: no branch {target}")
        state = ws.deployment(tip)
    report = compare(state.deployed, refs_of, prereleases=prereleases, catalog=catalog_url)
    return Report(
        report.upgrades, report.current, report.untracked, state.problems + report.problems
    )
