"""A throwaway bare repository holding what one promotion or approval reads and writes.

The I/O half of promotion: list a remote's refs, fetch exactly the tag or branch needed into its
own namespace (``refs/catalog/...``, ``refs/deployment/...``), read the catalog revision and the
deployment's KubePkg files out of it. Nothing here pushes; ``promote`` and ``approve`` do, with a
lease. The directory is removed when the workspace closes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from gitops_kubepkg import git
from gitops_kubepkg.conventions import redact_url
from gitops_kubepkg.errors import InputError, Problem, SourceError, ValidationError
from gitops_kubepkg.promotion import kubepkgfile
from gitops_kubepkg.promotion.record import Origin, origin_of
from gitops_kubepkg.sources.catalog import Candidate, check_revision
from gitops_kubepkg.sources.deployment import kubepkg_paths
from gitops_kubepkg.spec import FILE_NAMES, KubeObject, KubePkg


@dataclass(frozen=True)
class CatalogRevision:
    """The KubePkg at a catalog tag: its raw document, its file name, and where it came from."""

    candidate: Candidate
    origin: Origin
    document: KubeObject
    package: KubePkg
    file_name: str


@dataclass(frozen=True)
class Deployed:
    """One KubePkg file on the deployment branch, with the origin it records (if any)."""

    path: str
    document: KubeObject
    package: KubePkg
    origin: Origin | None
    data: bytes = b""
    """The file as it is on the branch (an upgrade rewrites it keeping its comments)."""


@dataclass(frozen=True)
class DeploymentState:
    """The deployment branch's tip and every KubePkg file on it that promotion can manage."""

    commit: str | None
    deployed: list[Deployed]
    problems: list[Problem] = field(default_factory=list)

    def find(self, package: str) -> list[Deployed]:
        """Deployed copies promoted from ``package`` (the tag's package path)."""
        return [d for d in self.deployed if d.origin is not None and d.origin.package == package]

    def at(self, path: str) -> Deployed | None:
        return next((d for d in self.deployed if d.path == path), None)


def remote_heads(
    url: str, credentials: git.Credentials | None, what: str
) -> tuple[dict[str, str], str]:
    """A remote's refs and its HEAD branch (main when it does not say), or a SourceError saying
    which remote (catalog, deployment) failed."""
    try:
        refs, head = git.list_remote_heads(url, credentials)
    except SourceError as e:
        raise type(e)(f"the {what} repository: {e}") from e
    return refs, head or "main"


def remote_refs(url: str, credentials: git.Credentials | None, what: str) -> dict[str, str]:
    return remote_heads(url, credentials, what)[0]


def default_branch(url: str, credentials: git.Credentials | None, what: str) -> str:
    """The branch the remote's HEAD points at, or main when it does not say (an empty one)."""
    return remote_heads(url, credentials, what)[1]


class Workspace:
    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="gitops-kubepkg-promote-")
        self.repo = git.init_bare(Path(self._dir.name) / "work.git")

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._dir.cleanup()

    # -- catalog --------------------------------------------------------------------------------

    def fetch_tag(self, url: str, tag: str, credentials: git.Credentials | None) -> str:
        """Fetch ``refs/tags/<tag>``; return the commit it names (annotated tags peeled)."""
        local = f"refs/catalog/tags/{tag}"
        self.repo.fetch(url, [f"+refs/tags/{tag}:{local}"], credentials, prune=False)
        oid = self.repo.refs().get(local)
        if oid is None:
            raise SourceError(f"{redact_url(url)}: tag {tag} vanished while fetching it")
        return self.repo.peel(oid)

    def catalog_revision(
        self, url: str, candidate: Candidate, credentials: git.Credentials | None
    ) -> CatalogRevision:
        """The KubePkg the tag's commit holds, checked as the catalog sync checks it."""
        commit = self.fetch_tag(url, candidate.tag, credentials)
        files = {
            name: data
            for name in FILE_NAMES
            if (data := self.repo.read(commit, f"{candidate.path}/{name}")) is not None
        }
        checked = check_revision(candidate, commit, files)
        if isinstance(checked, list):
            raise ValidationError(checked)
        name = next(n for n in FILE_NAMES if n in files)
        where = f"{candidate.path}/{name}@{candidate.tag}"
        document, package = kubepkgfile.read(files[name], where)
        origin = Origin(redact_url(url), candidate.tag, commit)
        return CatalogRevision(candidate, origin, document, package, name)

    def read_revision(
        self, origin: Origin, url: str, credentials: git.Credentials | None
    ) -> tuple[str, bytes]:
        """The KubePkg file (``path@tag``, bytes) at a recorded origin, read at its commit."""
        try:
            commit = self.fetch_tag(url, origin.tag, credentials)
        except SourceError as e:
            raise SourceError(
                f"the base of the upgrade, {origin.tag} (recorded from {origin.url}), cannot be "
                f"read from {redact_url(url)}: {e}"
            ) from e
        if commit != origin.commit:
            # Tags are immutable; the record names the commit, so read that one if it is there.
            if not self.repo.has(origin.commit):
                raise SourceError(
                    f"{origin.url}: tag {origin.tag} now points at {commit[:12]}, not the "
                    f"recorded {origin.commit[:12]}, and the recorded commit cannot be fetched"
                )
            commit = origin.commit
        for name in FILE_NAMES:
            data = self.repo.read(commit, f"{origin.package}/{name}")
            if data is not None:
                return f"{origin.package}/{name}@{origin.tag}", data
        raise InputError(
            f"{origin.url}: {origin.tag} ({commit[:12]}) holds no KubePkg file in {origin.package}/"
        )

    # -- deployment -----------------------------------------------------------------------------

    def fetch_branch(
        self, url: str, branch: str, credentials: git.Credentials | None
    ) -> str | None:
        """Fetch ``refs/heads/<branch>``; its commit, or None when the remote has no such branch."""
        local = f"refs/deployment/heads/{branch}"
        refs = remote_refs(url, credentials, "deployment")
        if f"refs/heads/{branch}" not in refs:
            return None
        self.repo.fetch(url, [f"+refs/heads/{branch}:{local}"], credentials, prune=False)
        return self.repo.resolve(local)

    def deployment(self, commit: str | None) -> DeploymentState:
        """Every single-KubePkg file at ``commit``; files that do not read are problems."""
        if commit is None:
            return DeploymentState(None, [])
        deployed: list[Deployed] = []
        problems: list[Problem] = []
        for path in kubepkg_paths(e.path for e in self.repo.walk(commit)):
            data = self.repo.read(commit, path)
            if data is None:
                continue
            try:
                document, package = kubepkgfile.read(data, path)
            except ValidationError as e:
                problems.extend(e.problems)
                continue
            except InputError as e:
                problems.append(Problem(path, "", str(e)))
                continue
            deployed.append(Deployed(path, document, package, origin_of(document), data))
        return DeploymentState(commit, deployed, problems)

    def walk_files(self, commit: str, directory: str) -> Iterator[str]:
        for entry in self.repo.walk(commit, directory):
            yield entry.path
