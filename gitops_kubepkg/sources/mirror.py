"""The mirror cache: one bare repository per remote URL, kept in step with the remote cheaply.

First step of every sync. ``Mirror.poll`` lists the remote's refs and fetches only when they differ
from the mirror's own (an idle poll costs one ref listing and writes nothing); everything after it
(catalog discovery, deployment sync, airgap bundle import) reads commits out of the mirror, never the
network. A mirror marked airgapped is never fetched: ``airgap import`` writes into it.

Refs are mirrored one to one (``refs/heads/*`` and ``refs/tags/*``, forced, pruned), so a tag that
moved upstream moves here too and the catalog can see it moved; the commit a revision was first
recorded at is kept reachable under ``refs/pinned/`` so it can still be read.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gitops_kubepkg import git
from gitops_kubepkg.conventions import redact_url
from gitops_kubepkg.errors import SourceError

MIRRORED = ("refs/heads/", "refs/tags/")
PINNED = "refs/pinned/"
REFSPECS = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]


def mirror_dir(state_dir: Path, url: str) -> Path:
    """Where the bare mirror of ``url`` lives: ``<state_dir>/mirrors/<slug>-<hash>.git``.

    The slug keeps the directory readable (host and path); the hash of the URL keeps two URLs
    that slug alike apart. Credentials are not part of a repository's identity: they never reach
    the file system, and an airgap export (which names URLs without them) finds the same mirror.
    """
    clean = redact_url(url.strip())
    without_scheme = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", clean)
    without_user = without_scheme.split("@", 1)[-1] if "@" in without_scheme else without_scheme
    slug = re.sub(r"[^a-zA-Z0-9._]+", "-", without_user).strip("-.").lower()
    slug = re.sub(r"\.git$", "", slug)[-60:].strip("-.") or "repo"
    digest = hashlib.sha256(clean.encode()).hexdigest()[:12]
    return state_dir / "mirrors" / f"{slug}-{digest}.git"


@dataclass(frozen=True)
class PollResult:
    """What one poll saw: the mirror's refs after it, and whether it fetched."""

    refs: Mapping[str, str]
    fetched: bool
    changed: bool


def mirrored_refs(refs: Mapping[str, str]) -> dict[str, str]:
    """Only the refs a mirror keeps (branches and tags; no HEAD, no peeled ``^{}`` entries)."""
    return {
        name: oid
        for name, oid in refs.items()
        if name.startswith(MIRRORED) and not name.endswith("^{}")
    }


class Mirror:
    """One remote's bare mirror. Thread-safe: one fetch at a time per mirror."""

    def __init__(
        self,
        state_dir: Path,
        url: str,
        credentials: git.Credentials | None = None,
        *,
        airgap: bool = False,
        created: float | None = None,
    ) -> None:
        self.url = url
        self.path = mirror_dir(state_dir, url)
        self.credentials = credentials
        self.airgap = airgap
        self.fetches = 0
        self.listings = 0
        self.created = time.monotonic() if created is None else created
        """When this process made it (the owner's monotonic clock: ``Syncer.forget``)."""
        self._lock = threading.Lock()

    def repository(self) -> git.Repository:
        """The bare mirror, created empty the first time."""
        if self.airgap and not self.path.exists():
            raise SourceError(
                f"{redact_url(self.url)}: airgapped and never imported "
                f"(run `gitops-kubepkg airgap import`); no mirror at {self.path}"
            )
        return git.open_or_init_bare(self.path)

    def local_refs(self) -> dict[str, str]:
        return mirrored_refs(self.repository().refs())

    def poll(self, credentials: git.Credentials | None = None) -> PollResult:
        """Bring the mirror level with the remote; fetch only when the remote's refs differ.

        ``credentials`` override the mirror's own for this poll (two Repository objects may share
        one URL with different secrets).
        """
        credentials = credentials or self.credentials
        with self._lock:
            repo = self.repository()
            local = mirrored_refs(repo.refs())
            if self.airgap:
                return PollResult(local, fetched=False, changed=False)
            self.listings += 1
            remote = mirrored_refs(repo.list_remote_refs(self.url, credentials))
            if remote == local:
                return PollResult(local, fetched=False, changed=False)
            self.fetches += 1
            repo.fetch(self.url, REFSPECS, credentials, prune=True)
            after = mirrored_refs(repo.refs())
            return PollResult(after, fetched=True, changed=after != local)

    def remove(self) -> None:
        """Delete the mirror from disk (its Repository is gone); waits for a poll in flight."""
        with self._lock:
            shutil.rmtree(self.path, ignore_errors=True)

    def pin(self, name: str, commit: str) -> None:
        """Keep ``commit`` reachable as ``refs/pinned/<name>`` (the revision as first recorded)."""
        with self._lock:
            self.repository().set_ref(PINNED + name, commit)
