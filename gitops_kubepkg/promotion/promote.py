"""``promote``: a catalog revision becomes a merge-request branch in the deployment repository.

The flow: choose the revision (``revisions``), read it at its tag (``workspace``), place it in the
deployment branch's tree (a new file, or for ``--upgrade`` a three-way merge with the deployed copy,
``merge3``), stamp where it came from (``record``), commit on ``promote/<package>/<version>`` and
push that branch with a lease that says it must not exist yet; then ask the forge to open the
request (``forge``). Every check runs before the push, so bad input pushes nothing; a forge that
refuses the request gets the branch deleted again (with a lease on the commit we pushed).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace
from typing import Any

from gitops_kubepkg import git
from gitops_kubepkg.conventions import redact_url
from gitops_kubepkg.errors import (
    AuthError,
    GitopsKubepkgError,
    InputError,
    MergeConflict,
    SourceError,
    StaleRefError,
)
from gitops_kubepkg.promotion import kubepkgfile
from gitops_kubepkg.promotion.forge import (
    GITHUB_API,
    Forge,
    agit_ref,
    detect,
    github_repository,
    open_github_pull,
    push_options,
    request_url,
)
from gitops_kubepkg.promotion.forge import Request as ForgeRequest
from gitops_kubepkg.promotion.merge3 import Strategy, merge3
from gitops_kubepkg.promotion.record import (
    Origin,
    commit_message,
    stamp,
    unpinned_images,
    unstamp,
)
from gitops_kubepkg.promotion.revisions import Request, choose
from gitops_kubepkg.promotion.workspace import (
    CatalogRevision,
    Deployed,
    DeploymentState,
    Workspace,
    remote_heads,
    remote_refs,
)
from gitops_kubepkg.sources.lifecycle import DRAFT_PREFIX, branch_name, draft_branch_name
from gitops_kubepkg.spec import FILE_NAMES


def default_author() -> tuple[str, str]:
    """The commit author: git's own environment variables when set, else gitops-kubepkg."""
    return (
        os.environ.get("GIT_AUTHOR_NAME") or "gitops-kubepkg",
        os.environ.get("GIT_AUTHOR_EMAIL") or "gitops-kubepkg@localhost",
    )


@dataclass(frozen=True)
class Options:
    catalog_url: str
    request: Request
    deployment_url: str
    target: str = ""
    """The branch the request targets; "" for the deployment repository's HEAD branch."""
    path: str = ""
    """The directory in the deployment repository; default: the package path."""
    upgrade: bool = False
    strategy: Strategy = Strategy.NONE
    forge: Forge | None = None
    """None: detect from the deployment URL."""
    catalog_credentials: git.Credentials | None = None
    deployment_credentials: git.Credentials | None = None
    github_token: str = ""
    github_api: str = GITHUB_API
    author: tuple[str, str] = field(default_factory=default_author)
    sign: git.Signer | None = None
    """Signs the promotion commit (``--sign-key``), for a Repository that verifies HEAD."""
    draft: bool = False
    """Push ``draft/<package>/<version>`` and ask no forge for a request (``propose`` later)."""


@dataclass(frozen=True)
class Promotion:
    """What ``promote`` did: the branch (the request), its commit, and what it pins."""

    package: str
    version: str
    origin: Origin
    branch: str
    target: str
    path: str
    commit: str
    forge: Forge
    request_url: str = ""
    previous: Origin | None = None
    settled: list[str] = field(default_factory=list)
    unpinned: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """What ``promote -o json`` and the dashboard's promote action answer (the catalog's URL
        is the caller's to add: the dashboard shows none)."""
        return {
            "package": self.package,
            "version": self.version,
            "catalog": {"tag": self.origin.tag, "commit": self.origin.commit},
            "branch": self.branch,
            "target": self.target,
            "path": self.path,
            "commit": self.commit,
            "forge": self.forge.value,
            "requestURL": self.request_url,
            "upgradedFrom": self.previous.tag if self.previous else None,
            "settled": self.settled,
            "images": self.images,
            "unpinnedImages": self.unpinned,
        }


def _placement(
    state: DeploymentState, revision: CatalogRevision, options: Options
) -> tuple[str, Deployed | None]:
    """Where the package goes, and the deployed copy an upgrade merges with."""
    package = revision.candidate.path
    directory = options.path.strip("/") or package
    if options.path:
        here = [d for d in state.deployed if d.path.rsplit("/", 1)[0] == directory]
    else:
        here = state.find(package)
    if options.upgrade:
        if not here:
            where = f"in {directory}/" if options.path else f"promoted from {package}"
            raise InputError(
                f"--upgrade: the deployment branch {options.target} has no KubePkg {where}; "
                f"promote without --upgrade first"
            )
        if len(here) > 1:
            raise InputError(
                f"--upgrade: {package} is deployed more than once "
                f"({', '.join(d.path for d in here)}); say which with --path DIR"
            )
        deployed = here[0]
        if deployed.origin is None:
            raise InputError(
                f"{deployed.path}: records no catalog revision (annotations "
                f"gitops.kubepkg.dev/catalog-url, -tag, -commit), so there is no base for a "
                f"three-way merge; promote into another --path, or add the annotations"
            )
        if deployed.origin.package != package:
            raise InputError(
                f"{deployed.path}: was promoted from {deployed.origin.tag}, not package {package}"
            )
        if deployed.origin.tag == revision.origin.tag:
            raise InputError(
                f"{deployed.path}: already at {revision.origin.tag}; nothing to upgrade"
            )
        return deployed.path, deployed
    if here:
        d = here[0]
        said = f"from {d.origin.tag}" if d.origin else "by hand (no catalog record)"
        raise InputError(
            f"{package} is already deployed at {d.path} ({said}); use --upgrade to merge "
            f"{revision.origin.version} in keeping local edits"
        )
    taken = [
        p
        for p in (f"{directory}/{name}" for name in FILE_NAMES)
        if state.commit is not None and p in _paths(state)
    ]
    if taken:
        raise InputError(f"{taken[0]} already exists on {options.target}; choose another --path")
    name = revision.package.name
    namespace = revision.package.namespace
    for d in state.deployed:
        if d.package.name == name and d.package.namespace == namespace:
            raise InputError(
                f"KubePkg {name!r} is already defined in {d.path}; two files defining it would "
                f"fight in the cluster"
            )
    return f"{directory}/{revision.file_name}", None


def _paths(state: DeploymentState) -> set[str]:
    return {d.path for d in state.deployed} | {p.file for p in state.problems}


def _upgraded(
    ws: Workspace, revision: CatalogRevision, deployed: Deployed, options: Options
) -> tuple[dict[str, object], list[str]]:
    """The three-way merge of the deployed copy with the new revision; settled conflicts."""
    assert deployed.origin is not None
    previous = deployed.origin
    base_name, base_bytes = ws.read_revision(
        previous, options.catalog_url, options.catalog_credentials
    )
    base_doc, _ = kubepkgfile.read(base_bytes, base_name)
    merged = merge3(
        unstamp(base_doc),
        unstamp(deployed.document),
        unstamp(revision.document),
        options.strategy,
    )
    described = [
        c.describe(f"catalog {revision.origin.version}", "deployment") for c in merged.conflicts
    ]
    if merged.conflicts and options.strategy is Strategy.NONE:
        raise MergeConflict(
            f"error: upgrading {deployed.path} from {previous.version} to "
            f"{revision.origin.version} conflicts with local edits in {len(described)} place(s); "
            f"nothing was pushed. Edit the deployment to settle them, or choose "
            f"--strategy theirs (the catalog wins) or --strategy ours (the deployment wins):",
            described,
        )
    return dict(merged.value), described


def promote(options: Options) -> Promotion:
    """Do the promotion; raise (having pushed nothing) when any input is wrong."""
    catalog = redact_url(options.catalog_url)
    deployment = redact_url(options.deployment_url)
    catalog_refs = remote_refs(options.catalog_url, options.catalog_credentials, "catalog")
    candidate = choose(catalog_refs, options.request, catalog)
    branch = branch_name(candidate.package, candidate.version)
    draft = draft_branch_name(candidate.package, candidate.version)
    deployment_refs, head = remote_heads(
        options.deployment_url, options.deployment_credentials, "deployment"
    )
    options = replace(options, target=options.target or head)
    if f"refs/heads/{branch}" in deployment_refs:
        raise InputError(
            f"{deployment}: branch {branch} already exists (an open promotion of "
            f"{candidate.tag}); approve it (gitops-kubepkg approve {deployment} {branch}) or "
            f"delete it first"
        )
    if f"refs/heads/{draft}" in deployment_refs:
        raise InputError(
            f"{deployment}: branch {draft} already exists (a draft promotion of "
            f"{candidate.tag}); propose it (gitops-kubepkg propose {deployment} {draft}) or "
            f"delete it first"
        )
    if options.draft:
        branch = draft
    forge = options.forge if options.forge is not None else detect(options.deployment_url)
    if options.draft:
        forge = Forge.NONE  # a draft is pushed, not proposed
    if forge is Forge.GITHUB:
        # Everything the pull request needs is checked before anything is pushed.
        if not options.github_token:
            raise AuthError(
                f"{deployment}: GitHub needs a token to open the pull request (set GITHUB_TOKEN "
                f"or pass --github-token-env NAME), or use --forge none to push only the branch"
            )
        github_repository(options.deployment_url)
    with Workspace() as ws:
        revision = ws.catalog_revision(options.catalog_url, candidate, options.catalog_credentials)
        tip = ws.fetch_branch(
            options.deployment_url, options.target, options.deployment_credentials
        )
        state = ws.deployment(tip)
        path, deployed = _placement(state, revision, options)
        settled: list[str] = []
        if deployed is not None:
            document, settled = _upgraded(ws, revision, deployed, options)
        else:
            document = unstamp(revision.document)
        document = stamp(document, revision.origin, revision.package.images)
        data = kubepkgfile.write(document, path, keep=deployed.data if deployed else None)
        images = dict(revision.package.images)
        previous = deployed.origin if deployed is not None else None
        message = commit_message(
            candidate.package,
            revision.origin,
            images,
            previous=previous,
            settled=settled,
            strategy=options.strategy.value,
        )
        if tip is not None:
            ws.repo.set_ref(f"refs/heads/{branch}", tip)
        commit = ws.repo.commit_files(
            branch, {path: data}, message, author=options.author, sign=options.sign
        )
        title = message.splitlines()[0]
        request = ForgeRequest(branch, options.target, title, message.split("\n", 2)[2].strip())
        url = _push(ws, options, forge, request, commit)
    return Promotion(
        package=candidate.package,
        version=candidate.version,
        origin=revision.origin,
        branch=branch,
        target=options.target,
        path=path,
        commit=commit,
        forge=forge,
        request_url=url,
        previous=previous,
        settled=settled,
        unpinned=unpinned_images(document),
        images=images,
    )


def _push(ws: Workspace, options: Options, forge: Forge, request: ForgeRequest, commit: str) -> str:
    """Push the branch (it must not exist yet) and open the request; return its URL if known."""
    ref = f"refs/heads/{request.branch}"
    agit = agit_ref(forge, request)
    try:
        result = git.push_with_lease(
            ws.repo,
            options.deployment_url,
            [git.RefUpdate(ref, commit, None)],
            options.deployment_credentials,
            push_options=push_options(forge, request),
            extra=[(commit, agit)] if agit else [],
        )
    except StaleRefError as e:
        raise InputError(
            f"{redact_url(options.deployment_url)}: branch {request.branch} was created by "
            f"someone else meanwhile; nothing pushed ({e})"
        ) from e
    if ref in result.rejected:
        raise git_refused(options.deployment_url, ref, result.rejected[ref])
    try:
        if agit and agit in result.rejected:
            raise git_refused(options.deployment_url, agit, result.rejected[agit])
        if forge is Forge.GITHUB:
            owner, repo = github_repository(options.deployment_url)
            return open_github_pull(options.github_api, owner, repo, options.github_token, request)
    except GitopsKubepkgError:
        _withdraw(ws, options, ref, commit)
        raise
    return request_url(result.messages)


def git_refused(url: str, ref: str, reason: str) -> SourceError:
    return SourceError(f"{redact_url(url)}: the server refused {ref}: {reason}")


def _withdraw(ws: Workspace, options: Options, ref: str, commit: str) -> None:
    """Delete the branch we pushed when the request could not be opened: nothing half-done."""
    # If someone moved it meanwhile it is theirs now; the caller's error still stands.
    with contextlib.suppress(GitopsKubepkgError):
        git.push_with_lease(
            ws.repo,
            options.deployment_url,
            [git.RefUpdate(ref, None, commit)],
            options.deployment_credentials,
        )


@dataclass(frozen=True)
class Proposal:
    """What ``propose`` did: the draft's commit pushed as the promotion branch, the request."""

    draft: str
    branch: str
    target: str
    commit: str
    forge: Forge
    request_url: str = ""
    draft_deleted: bool = True


def propose(options: Options, draft: str) -> Proposal:
    """Turn the draft branch ``draft/<package>/<version>`` into the promotion
    ``promote/<package>/<version>``: its commit pushed as that branch (which must not exist yet)
    with the forge's merge request, then the draft deleted with a lease on that commit. Only
    ``deployment_url``, ``target``, ``forge``, credentials and the GitHub settings of ``options``
    are used."""
    deployment = redact_url(options.deployment_url)
    name = draft.removeprefix("refs/heads/")
    if not name.startswith(DRAFT_PREFIX):
        raise InputError(f"{name}: not a draft branch ({DRAFT_PREFIX}<package>/<version>)")
    package, _, version = name[len(DRAFT_PREFIX) :].rpartition("/")
    if not package or not version:
        raise InputError(f"{name}: want {DRAFT_PREFIX}<package>/<version>")
    branch = branch_name(package, version)
    refs, head = remote_heads(options.deployment_url, options.deployment_credentials, "deployment")
    commit = refs.get(f"refs/heads/{name}")
    if commit is None:
        raise InputError(f"{deployment}: no branch {name} (already proposed, or never pushed?)")
    if f"refs/heads/{branch}" in refs:
        raise InputError(f"{deployment}: branch {branch} already exists; nothing pushed")
    options = replace(options, target=options.target or head)
    forge = options.forge if options.forge is not None else detect(options.deployment_url)
    if forge is Forge.GITHUB and not options.github_token:
        raise AuthError(
            f"{deployment}: GitHub needs a token to open the pull request (set GITHUB_TOKEN "
            f"or pass --github-token-env NAME), or use --forge none to push only the branch"
        )
    with Workspace() as ws:
        ws.repo.fetch(
            options.deployment_url,
            [f"+refs/heads/{name}:refs/heads/{name}"],
            options.deployment_credentials,
            prune=False,
        )
        message = git.commit_message(ws.repo, commit)
        title, _, body = message.partition("\n")
        request = ForgeRequest(branch, options.target, title, body.strip())
        url = _push(ws, options, forge, request, commit)
        deleted = True
        try:
            result = git.push_with_lease(
                ws.repo,
                options.deployment_url,
                [git.RefUpdate(f"refs/heads/{name}", None, commit)],
                options.deployment_credentials,
            )
            deleted = f"refs/heads/{name}" not in result.rejected
        except StaleRefError:
            deleted = False  # new commits on the draft meanwhile: kept
    return Proposal(name, branch, options.target, commit, forge, url, deleted)
