"""Git bundles for airgapped sites: create, verify, and fetch into a bare mirror.

``airgap export`` bundles each repository (``git bundle create``) and ``airgap import`` verifies the
bundle against the site's mirror and fetches its refs into it; from there the sources layer reads
the mirror as if it had fetched from the remote. libgit2 (pygit2) cannot read or write bundles, so
this module runs the ``git`` CLI; it never touches the network except for ``clone_mirror`` of a
remote URL on the exporting side. Failures become ``SourceError`` naming the bundle and the
repository; a bundle whose prerequisite commits the mirror lacks is refused before any ref moves.

No silent rollback: a bundle that would move a branch to a commit that does not descend from the
mirror's, or move a tag at all, is refused (``RollbackError``) before any ref moves, unless the
import says ``allow_rollback``. The check runs in ``verify_bundle`` (the bundle's commits are
fetched under a quarantine ref, compared, and the quarantine dropped), and the fetch itself is
atomic and unforced, so git refuses the same thing again should the mirror move in between. Every
ref update is written to the mirror's reflog with what imported it (``git reflog show --date=iso
refs/heads/main`` in the mirror says what was imported when).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitops_kubepkg.conventions import redact_url
from gitops_kubepkg.errors import RollbackError, SourceError

REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
FAST_FORWARD_REFSPECS = ("refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*")
QUARANTINE = "refs/gitops-kubepkg/incoming/"
_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def _git(*args: str, cwd: Path | None = None, what: str, env: dict[str, str] | None = None) -> str:
    env = {**os.environ, **_ENV, **(env or {})}
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as e:
        raise SourceError("git is not installed (needed for bundles)") from e
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SourceError(f"{what}: {' '.join(message[-3:]) or f'git exited {proc.returncode}'}")
    return proc.stdout.decode("utf-8", "replace")


@dataclass(frozen=True)
class BundleInfo:
    path: Path
    refs: dict[str, str]
    """What the bundle carries: ref name -> commit."""
    prerequisites: tuple[str, ...]
    """Commits the receiving repository must already have (an incremental bundle)."""


def local_refs(git_dir: Path) -> dict[str, str]:
    """Branches and tags of a repository (what a bundle of it carries)."""
    out = _git(
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        "refs/heads",
        "refs/tags",
        cwd=git_dir,
        what=str(git_dir),
    )
    refs = {}
    for line in out.splitlines():
        sha, _, name = line.partition(" ")
        refs[name] = sha
    return refs


def clone_mirror(url: str, dest: Path) -> Path:
    """A bare mirror of a remote, for exporting from a URL rather than a local repository."""
    _git("clone", "--quiet", "--mirror", url, str(dest), what=f"clone {redact_url(url)}")
    return dest


def create_bundle(git_dir: Path, out: Path, *, since: Iterable[str] = ()) -> BundleInfo | None:
    """Bundle every branch and tag of ``git_dir``; leave out history reachable from ``since``.

    Returns None when ``since`` already covers everything (git refuses an empty bundle).
    """
    refs = local_refs(git_dir)
    if not refs:
        raise SourceError(f"{git_dir}: no branches or tags to bundle")
    known = [c for c in since if _has_commit(git_dir, c)]
    if known and all(sha in known for sha in refs.values()):
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    args = ["bundle", "create", "--quiet", str(tmp), "--branches", "--tags"]
    args += [f"^{c}" for c in known]
    try:
        _git(*args, cwd=git_dir, what=f"bundle {git_dir}")
    except SourceError as e:
        tmp.unlink(missing_ok=True)
        if "empty bundle" in str(e):
            return None
        raise
    os.replace(tmp, out)
    return read_bundle(out)


def _has_commit(git_dir: Path, commit: str) -> bool:
    try:
        _git("cat-file", "-e", f"{commit}^{{commit}}", cwd=git_dir, what="cat-file")
    except SourceError:
        return False
    return True


def read_bundle(bundle: Path) -> BundleInfo:
    """Parse a v2/v3 bundle header: prerequisites (``-<sha>``) and refs (``<sha> <ref>``)."""
    refs: dict[str, str] = {}
    prereqs: list[str] = []
    try:
        with open(bundle, "rb") as f:
            signature = f.readline()
            if signature not in (b"# v2 git bundle\n", b"# v3 git bundle\n"):
                raise SourceError(f"{bundle}: not a git bundle")
            while (line := f.readline()) not in (b"\n", b""):
                text = line.decode("utf-8", "replace").rstrip("\n")
                if text.startswith("@"):
                    continue
                if text.startswith("-"):
                    prereqs.append(text[1:].split(" ", 1)[0])
                else:
                    sha, _, name = text.partition(" ")
                    refs[name] = sha
    except OSError as e:
        raise SourceError(f"{bundle}: {e.strerror}") from e
    return BundleInfo(bundle, refs, tuple(prereqs))


def ensure_bare(mirror: Path) -> None:
    if not (mirror / "HEAD").exists():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", str(mirror), what=f"init {mirror}")


def verify_bundle(bundle: Path, mirror: Path, *, allow_rollback: bool = False) -> BundleInfo:
    """Check the bundle is whole, the mirror has every prerequisite commit, and (unless
    ``allow_rollback``) no ref would go backwards; raise before any ref moves."""
    info = read_bundle(bundle)
    ensure_bare(mirror)
    missing = [c for c in info.prerequisites if not _has_commit(mirror, c)]
    if missing:
        raise SourceError(
            f"{bundle}: needs commits the mirror {mirror} does not have "
            f"({', '.join(c[:12] for c in missing)}); import the earlier bundle first "
            "(this one was exported with --since)"
        )
    _git("bundle", "verify", "--quiet", str(bundle.resolve()), cwd=mirror, what=f"verify {bundle}")
    if not allow_rollback:
        backwards = rollbacks(info, mirror)
        if backwards:
            raise RollbackError(
                f"{bundle}: refused, it would move refs of {mirror} backwards: "
                f"{'; '.join(backwards)} (nothing was written; --allow-rollback imports it anyway)"
            )
    return info


def rollbacks(info: BundleInfo, mirror: Path) -> list[str]:
    """What the bundle would move backwards in ``mirror``: a branch to a commit that does not
    descend from the mirror's, any tag to another object. Empty: a fast-forward import."""
    current = local_refs(mirror)
    changing = {
        ref: new
        for ref, new in info.refs.items()
        if ref.startswith(("refs/heads/", "refs/tags/")) and current.get(ref, new) != new
    }
    out = [
        f"tag {ref.removeprefix('refs/tags/')} would move from {current[ref][:12]} to {new[:12]}"
        for ref, new in sorted(changing.items())
        if ref.startswith("refs/tags/")
    ]
    branches = sorted(ref for ref in changing if ref.startswith("refs/heads/"))
    if not branches:
        return out
    quarantine = {ref: f"{QUARANTINE}{i}" for i, ref in enumerate(branches)}
    try:
        _git(
            "fetch",
            "--quiet",
            "--no-write-fetch-head",
            str(info.path.resolve()),
            *(f"+{ref}:{q}" for ref, q in quarantine.items()),
            cwd=mirror,
            what=f"fetch {info.path} into quarantine refs of {mirror}",
        )
        for ref in branches:
            if not _is_ancestor(mirror, current[ref], changing[ref]):
                out.append(
                    f"branch {ref.removeprefix('refs/heads/')} at {current[ref][:12]} would move "
                    f"to {changing[ref][:12]}, which does not descend from it"
                )
    finally:
        for q in quarantine.values():
            subprocess.run(
                ["git", "update-ref", "-d", q],
                cwd=mirror,
                capture_output=True,
                check=False,
                env={**os.environ, **_ENV},
            )
    return out


def _is_ancestor(git_dir: Path, ancestor: str, descendant: str) -> bool:
    proc = subprocess.run(
        ["git", "merge-base", "--is-ancestor", ancestor, descendant],
        cwd=git_dir,
        capture_output=True,
        check=False,
        env={**os.environ, **_ENV},
    )
    if proc.returncode not in (0, 1):
        raise SourceError(f"{git_dir}: merge-base {ancestor[:12]} {descendant[:12]} failed")
    return proc.returncode == 0


def fetch_bundle(
    bundle: Path,
    mirror: Path,
    refspecs: Sequence[str] | None = None,
    *,
    allow_rollback: bool = False,
    note: str = "airgap import",
) -> dict[str, str]:
    """Verify, then fetch the bundle's branches and tags into ``mirror``; return its refs after.

    Without ``allow_rollback`` the fetch is unforced and atomic: a ref that would not
    fast-forward fails the whole fetch and no ref moves. ``note`` goes into the reflog."""
    verify_bundle(bundle, mirror, allow_rollback=allow_rollback)
    if refspecs is None:
        refspecs = REFSPECS if allow_rollback else FAST_FORWARD_REFSPECS
    _git(
        "-c",
        "core.logAllRefUpdates=always",
        "fetch",
        "--quiet",
        "--atomic",
        "--no-write-fetch-head",
        str(bundle.resolve()),
        *refspecs,
        cwd=mirror,
        what=f"fetch {bundle} into {mirror}",
        env={"GIT_REFLOG_ACTION": note},
    )
    return local_refs(mirror)


def read_files(git_dir: Path, ref: str, names: Iterable[str]) -> list[tuple[str, bytes]]:
    """Every file at ``ref`` whose base name is in ``names`` (KubePkg files to export)."""
    wanted = set(names)
    listing = _git(
        "ls-tree", "-r", "-z", "--full-tree", ref, cwd=git_dir, what=f"{git_dir} at {ref}"
    )
    out = []
    for entry in listing.split("\0"):
        if not entry:
            continue
        meta, _, path = entry.partition("\t")
        kind = meta.split(" ")[1] if " " in meta else ""
        if (
            kind == "blob"
            and path.rsplit("/", 1)[-1] in wanted
            and not any(part.startswith(".") for part in path.split("/"))
        ):
            data = subprocess.run(
                ["git", "cat-file", "blob", f"{ref}:{path}"],
                cwd=git_dir,
                capture_output=True,
                check=False,
                env={**os.environ, **_ENV},
            )
            if data.returncode != 0:
                raise SourceError(f"{git_dir}: cannot read {path} at {ref}")
            out.append((path, data.stdout))
    return sorted(out)
