"""``approve``: merge a promotion branch into the target branch, as a compare-and-swap.

After ``promote``, when a human (or a pipeline) accepts the request. Each attempt reads both tips,
builds a merge commit of the branch into the target (KubePkg files git cannot merge line by line
go through the same per-field three-way merge as ``--upgrade``), and pushes the target with a lease
on the tip it merged into. If the target moved meanwhile the server refuses, and the attempt starts
again from the new tip, a bounded number of times: two approvals racing on one repository end
merged one after the other, or the loser fails cleanly; no update is ever lost. The branch is then
deleted with a lease on the commit that was merged, so commits pushed to it meanwhile are kept.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from gitops_kubepkg import git
from gitops_kubepkg.conventions import redact_url
from gitops_kubepkg.errors import InputError, MergeConflict, SourceError, StaleRefError
from gitops_kubepkg.promotion import kubepkgfile
from gitops_kubepkg.promotion.merge3 import merge3
from gitops_kubepkg.promotion.promote import default_author
from gitops_kubepkg.promotion.record import trailers
from gitops_kubepkg.promotion.workspace import Workspace, default_branch, remote_refs
from gitops_kubepkg.sources.catalog import RepositoryRef
from gitops_kubepkg.sources.deployment import desired, kubepkg_paths
from gitops_kubepkg.spec import FILE_NAMES

ATTEMPTS = 8


@dataclass(frozen=True)
class Approval:
    """What ``approve`` did."""

    branch: str
    target: str
    branch_commit: str
    target_commit: str
    """The target's tip after the approval (the merge commit, or the commit it already held)."""
    attempts: int
    already_merged: bool = False
    branch_deleted: bool = True
    notes: list[str] = field(default_factory=list)


def merge_message(branch: str, target: str, branch_message: str) -> str:
    """``Merge branch 'promote/web/1.2.0' into main``, the promotion's subject and its trailers."""
    subject = branch_message.strip().splitlines()[0] if branch_message.strip() else ""
    lines = [f"Merge branch '{branch}' into {target}", ""]
    if subject:
        lines += [subject, ""]
    lines.append(f"Approved-Branch: {branch}")
    lines += [f"{k}: {v}" for k, v in trailers(branch_message).items()]
    return "\n".join(lines) + "\n"


def resolve_kubepkgs(conflicts: list[git.ConflictedFile]) -> dict[str, bytes | None]:
    """Settle conflicted KubePkg files field by field; a MergeConflict lists what stays."""
    resolved: dict[str, bytes | None] = {}
    left: list[str] = []
    for c in conflicts:
        name = c.path.rsplit("/", 1)[-1]
        if name not in FILE_NAMES or c.base is None or c.ours is None or c.theirs is None:
            left.append(f"{c.path}: both sides changed the file (added, removed or not a KubePkg)")
            continue
        try:
            base, _ = kubepkgfile.read(c.base, c.path)
            ours, _ = kubepkgfile.read(c.ours, c.path)
            theirs, _ = kubepkgfile.read(c.theirs, c.path)
        except InputError as e:
            left.append(f"{c.path}: cannot merge field by field: {e}")
            continue
        merged = merge3(base, ours, theirs)
        if merged.conflicts:
            left += [
                f"{c.path}: " + x.describe("the promotion branch", "the target branch")
                for x in merged.conflicts
            ]
            continue
        resolved[c.path] = kubepkgfile.write(merged.value, c.path, keep=c.ours)
    if left:
        raise MergeConflict(
            "error: the promotion branch conflicts with the target branch; nothing was pushed. "
            "Promote again on top of the target (or settle it by hand):",
            left,
        )
    return resolved


def approve(
    url: str,
    branch: str,
    target: str = "",
    credentials: git.Credentials | None = None,
    *,
    author: tuple[str, str] | None = None,
    attempts: int = ATTEMPTS,
    sign: git.Signer | None = None,
) -> Approval:
    """Merge ``branch`` into ``target`` (default: the remote's HEAD branch) on the remote at
    ``url``, then delete ``branch``."""
    where = redact_url(url)
    author = author or default_author()
    target = target or default_branch(url, credentials, "deployment")
    branch_ref, target_ref = f"refs/heads/{branch}", f"refs/heads/{target}"
    if branch_ref == target_ref:
        raise InputError(f"{where}: cannot approve {branch} into itself")
    seen_branch = ""
    with Workspace() as ws:
        for attempt in range(1, attempts + 1):
            refs = remote_refs(url, credentials, "deployment")
            branch_tip, target_tip = refs.get(branch_ref), refs.get(target_ref)
            if branch_tip is None:
                if seen_branch and target_tip and _holds(ws, url, credentials, target, seen_branch):
                    # A racing approval merged the same branch first: the outcome we wanted.
                    return Approval(
                        branch,
                        target,
                        seen_branch,
                        target_tip,
                        attempt,
                        already_merged=True,
                        branch_deleted=True,
                        notes=[f"another approval merged {branch} first"],
                    )
                raise InputError(
                    f"{where}: no branch {branch} (already approved, or never promoted?)"
                )
            seen_branch = branch_tip
            specs = [f"+{branch_ref}:refs/approve/branch"]
            if target_tip is not None:
                specs.append(f"+{target_ref}:refs/approve/target")
            ws.repo.fetch(url, specs, credentials, prune=False)
            if target_tip is not None and git.is_ancestor(ws.repo, branch_tip, target_tip):
                deleted, notes = _delete_branch(ws, url, credentials, branch_ref, branch_tip)
                return Approval(
                    branch, target, branch_tip, target_tip, attempt, True, deleted, notes
                )
            if target_tip is None:
                merged = branch_tip  # a new target branch starts at the promotion
            else:
                message = merge_message(branch, target, git.commit_message(ws.repo, branch_tip))
                conflicts = git.merge_conflicts(ws.repo, target_tip, branch_tip)
                merged = git.commit_merge(
                    ws.repo,
                    target_tip,
                    branch_tip,
                    message,
                    resolved=resolve_kubepkgs(conflicts),
                    author=author,
                    sign=sign,
                )
            check_merged(ws, target_tip, merged, target)
            try:
                result = git.push_with_lease(
                    ws.repo, url, [git.RefUpdate(target_ref, merged, target_tip)], credentials
                )
            except StaleRefError:
                _pause(attempt)
                continue
            if target_ref in result.rejected:
                reason = result.rejected[target_ref]
                # Servers word a lost race differently ("failed to lock", "failed to update
                # ref", "stale info"); whether the ref moved is the fact that decides.
                now = remote_refs(url, credentials, "deployment").get(target_ref)
                if now != target_tip:
                    _pause(attempt)
                    continue
                raise SourceError(f"{where}: the server refused to update {target}: {reason}")
            deleted, notes = _delete_branch(ws, url, credentials, branch_ref, branch_tip)
            return Approval(branch, target, branch_tip, merged, attempt, False, deleted, notes)
    raise StaleRefError(
        f"{where}: {target} kept moving while approving {branch}; gave up after {attempts} "
        f"attempts, nothing merged. Run approve again.",
        ref=target_ref,
    )


def _problems(ws: Workspace, commit: str | None) -> set[str]:
    """What the controller's deployment sync would say is wrong with the KubePkgs at ``commit``."""
    if commit is None:
        return set()
    files = {
        path: data
        for path in kubepkg_paths(e.path for e in ws.repo.walk(commit))
        if (data := ws.repo.read(commit, path)) is not None
    }
    # The namespace stands in for the Repository's own; duplicates are what matter here.
    want = desired(RepositoryRef("default", "deployment"), commit, files)
    return {str(p) for p in want.problems}


def check_merged(ws: Workspace, target_tip: str | None, merged: str, target: str) -> None:
    """Refuse a merge that makes the target's KubePkgs worse (invalid, or defined twice)."""
    new = sorted(_problems(ws, merged) - _problems(ws, target_tip))
    if new:
        raise MergeConflict(
            f"error: merging into {target} would leave KubePkgs the controller cannot apply; "
            f"nothing was pushed:",
            new,
        )


def _holds(
    ws: Workspace, url: str, credentials: git.Credentials | None, target: str, commit: str
) -> bool:
    tip = ws.fetch_branch(url, target, credentials)
    return tip is not None and git.is_ancestor(ws.repo, commit, tip)


def _delete_branch(
    ws: Workspace, url: str, credentials: git.Credentials | None, ref: str, tip: str
) -> tuple[bool, list[str]]:
    """Delete the merged branch, only if it still holds what was merged."""
    try:
        result = git.push_with_lease(ws.repo, url, [git.RefUpdate(ref, None, tip)], credentials)
    except StaleRefError as e:
        if e.actual == git.ZERO_OID:
            return True, []  # someone deleted it already
        return False, [
            f"{ref.removeprefix('refs/heads/')} got new commits after {tip[:12]} was merged; "
            f"kept it (approve again to merge them)"
        ]
    if ref in result.rejected:
        return False, [f"could not delete {ref}: {result.rejected[ref]}"]
    return True, []


def _pause(attempt: int) -> None:
    # Jittered backoff so two racing approvers do not collide again in lockstep.
    time.sleep(random.uniform(0, 0.05 * 2 ** min(attempt, 5)))
