"""``rollback``: a KubePkg's recorded revision becomes a new commit on its deployment branch.

GitOps keeps Git the truth, so a rollback never writes to the cluster: it reads the KubePkg file
as it was at the commit a history entry records (``spec.record``), commits those bytes at
the file's current path on top of the branch, and pushes with a lease on the tip it built on
(the same compare-and-swap push ``promote`` and ``approve`` use). The controller then syncs and
applies it like any other change. The commit's trailers name what it rolled back from and to.
An airgapped repository is fed by bundle imports, never pushed to: the rollback is refused with
what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from gitops_kubepkg import git
from gitops_kubepkg.conventions import redact_url
from gitops_kubepkg.errors import InputError, StaleRefError
from gitops_kubepkg.promotion import kubepkgfile
from gitops_kubepkg.promotion.approve import check_merged
from gitops_kubepkg.promotion.promote import default_author, git_refused
from gitops_kubepkg.promotion.workspace import Workspace
from gitops_kubepkg.spec.record import Revision

TRAILER_FROM = "Rolled-Back-From"
TRAILER_TO = "Rolled-Back-To"
TRAILER_REVISION = "History-Revision"
TRAILER_KUBEPKG = "KubePkg"


@dataclass(frozen=True)
class Target:
    """Where the KubePkg lives in Git now (its ``status.source``) and what runs now."""

    kubepkg: str
    """namespace/name"""
    url: str
    branch: str
    path: str
    version: str
    commit: str


@dataclass(frozen=True)
class Rollback:
    commit: str
    branch: str
    path: str
    message: str


def rollback_message(target: Target, to: Revision) -> str:
    name = target.kubepkg.rsplit("/", 1)[-1]
    lines = [
        f"Roll back {name} {target.version} -> {to.version}",
        "",
        f"Restores {target.path} as it was at commit {to.commit} (history revision {to.id} "
        f"of KubePkg {target.kubepkg}, first applied {to.time}, result {to.result}).",
    ]
    if to.digests:
        lines += ["", "Images:"]
        lines += [f"  {ref} {digest}" for ref, digest in sorted(to.digests.items())]
    lines += [
        "",
        f"{TRAILER_KUBEPKG}: {target.kubepkg}",
        f"{TRAILER_FROM}: {target.version} {target.commit}",
        f"{TRAILER_TO}: {to.version} {to.commit}",
        f"{TRAILER_REVISION}: {to.id}",
    ]
    return "\n".join(lines) + "\n"


def rollback(
    target: Target,
    to: Revision,
    credentials: git.Credentials | None = None,
    *,
    author: tuple[str, str] | None = None,
) -> Rollback:
    """Commit ``to``'s content of the KubePkg file on ``target.branch`` and push it; raise
    (having pushed nothing) when it cannot be read, is what the branch holds already, or the
    branch moved meanwhile."""
    where = redact_url(target.url)
    if not to.commit or not to.path:
        raise InputError(
            f"KubePkg {target.kubepkg}: history revision {to.id} records no commit and file "
            f"(applied with gitops-kubepkg apply?), so there is nothing in Git to restore"
        )
    with Workspace() as ws:
        tip = ws.fetch_branch(target.url, target.branch, credentials)
        if tip is None:
            raise InputError(f"{where}: no branch {target.branch}")
        if not ws.repo.has(to.commit):
            raise InputError(
                f"{where}: commit {to.commit[:12]} of history revision {to.id} is not on "
                f"{target.branch} any more (was the branch rewritten?); nothing pushed"
            )
        data = ws.repo.read(to.commit, to.path)
        if data is None:
            raise InputError(f"{where}: {to.path} does not exist at commit {to.commit[:12]}")
        _, old = kubepkgfile.read(data, f"{to.path}@{to.commit[:12]}")
        name = target.kubepkg.rsplit("/", 1)[-1]
        if old.name != name:
            raise InputError(
                f"{to.path}@{to.commit[:12]} defines KubePkg {old.name}, not {name}; nothing pushed"
            )
        if ws.repo.read(tip, target.path) == data:
            raise InputError(
                f"{where}: {target.path} on {target.branch} already holds revision {to.id} "
                f"(version {to.version}); nothing to roll back"
            )
        message = rollback_message(target, to)
        ws.repo.set_ref(f"refs/heads/{target.branch}", tip)
        commit = ws.repo.commit_files(
            target.branch, {target.path: data}, message, author=author or default_author()
        )
        check_merged(ws, tip, commit, target.branch)
        ref = f"refs/heads/{target.branch}"
        try:
            result = git.push_with_lease(
                ws.repo, target.url, [git.RefUpdate(ref, commit, tip)], credentials
            )
        except StaleRefError as e:
            raise InputError(
                f"{where}: {target.branch} moved while rolling back; nothing pushed, run "
                f"rollback again ({e})"
            ) from e
        if ref in result.rejected:
            raise git_refused(target.url, ref, result.rejected[ref])
    return Rollback(commit, target.branch, target.path, message)


def refuse_airgapped(repository: str, target: Target, to: Revision) -> InputError:
    """Why an airgapped deployment repository cannot be rolled back from inside the air gap."""
    return InputError(
        f"Repository {repository} is airgapped: its commits arrive in git bundles "
        f"(airgap import) and nothing is pushed to it. Roll back where the bundle is made: "
        f"restore {target.path} from commit {to.commit[:12]} (version {to.version}) on "
        f"{target.branch}, export and import again"
    )
