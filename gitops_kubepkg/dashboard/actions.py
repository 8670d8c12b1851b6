"""What the dashboard's buttons do: reconcile now, promote a catalog revision, approve a request.

Between the HTTP handler (which checked the viewer's RBAC first) and the code the CLI commands
run, so a button does exactly what its command does:

- reconcile: the ``gitops.kubepkg.dev/requestedAt`` annotation, as ``gitops-kubepkg reconcile``
  sets it (the leader answers with ``status.lastHandledReconcileAt``);
- promote: ``promotion.promote.promote`` into the deployment Repository's URL, the catalog being
  the Repository whose PackageRevision holds the package and version, credentials from each
  Repository's Secret (the controller's own ``Syncer.credentials``): the branch
  ``promote/<package>/<version>`` and the forge's merge request, as ``gitops-kubepkg promote``;
- approve: ``promotion.approve.approve``, as ``gitops-kubepkg approve``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitops_kubepkg import git
from gitops_kubepkg.controller import repository
from gitops_kubepkg.controller.leader import micro_time
from gitops_kubepkg.controller.repository import RepositorySpec
from gitops_kubepkg.errors import InputError, NotFound
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.promotion.approve import approve
from gitops_kubepkg.promotion.forge import Forge
from gitops_kubepkg.promotion.promote import Options, default_author, promote
from gitops_kubepkg.promotion.revisions import parse_request
from gitops_kubepkg.reconcile.objects import ANNOTATION_REQUESTED_AT
from gitops_kubepkg.sources.catalog import LABEL_LATEST
from gitops_kubepkg.spec import API_VERSION as KUBEPKG_API
from gitops_kubepkg.spec import KIND as KUBEPKG_KIND
from gitops_kubepkg.spec import KubeObject

Credentials = Callable[[RepositorySpec], git.Credentials | None]
KINDS = {
    "Repository": (repository.API_VERSION, repository.KIND),
    "KubePkg": (KUBEPKG_API, KUBEPKG_KIND),
}


class ActionError(Exception):
    """An action refused before or while doing it: the status to answer and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def text_field(body: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise ActionError(400, f"body: {name}: want a non-empty string")
    return value


def reconcile(kube: Kube, kind: str, namespace: str, name: str, live: KubeObject | None) -> str:
    """Set requestedAt on the object; the value set (what ``lastHandledReconcileAt`` echoes)."""
    api_version, real_kind = KINDS[kind]
    if live is None:
        raise ActionError(404, f"{kind} {namespace}/{name} not found")
    if kind == "Repository" and (live.get("spec") or {}).get("suspend"):
        raise ActionError(
            409, f"Repository {namespace}/{name} is suspended: set spec.suspend to false first"
        )
    token = micro_time()
    try:
        kube.patch(
            api_version,
            real_kind,
            name,
            namespace,
            {"metadata": {"annotations": {ANNOTATION_REQUESTED_AT: token}}},
        )
    except NotFound as e:
        raise ActionError(404, f"{kind} {namespace}/{name} not found") from e
    return token


def deployment_spec(obj: KubeObject | None, namespace: str, name: str) -> RepositorySpec:
    if obj is None:
        raise ActionError(404, f"Repository {namespace}/{name} not found")
    try:
        spec = repository.parse(obj)
    except InputError as e:
        raise ActionError(409, str(e)) from e
    if spec.type != "deployment":
        raise ActionError(409, f"Repository {namespace}/{name} is a {spec.type}, not a deployment")
    if spec.airgap:
        raise ActionError(
            409,
            f"Repository {namespace}/{name} is airgapped: promote where the bundle is made",
        )
    return spec


@dataclass(frozen=True)
class Catalog:
    spec: RepositorySpec
    version: str


def find_catalog(
    revisions: Sequence[KubeObject],
    repositories: Callable[[str, str], KubeObject | None],
    namespace: str,
    package: str,
    version: str,
) -> Catalog:
    """The catalog Repository holding ``package`` at ``version`` (``latest``: the latest
    release), preferring one in the deployment's own namespace."""
    found = []
    for rev in revisions:
        spec = rev.get("spec") or {}
        meta = rev.get("metadata") or {}
        if spec.get("packageName") != package:
            continue
        if version == "latest":
            if not (meta.get("labels") or {}).get(LABEL_LATEST):
                continue
        elif spec.get("revision") != version:
            continue
        found.append((meta.get("namespace") != namespace, str(meta.get("namespace") or ""), rev))
    if not found:
        raise ActionError(404, f"no PackageRevision of {package} at {version} in any catalog")
    _, ns, rev = min(found, key=lambda f: (f[0], f[1]))
    spec = rev.get("spec") or {}
    obj = repositories(ns, str(spec.get("repository") or ""))
    if obj is None:
        raise ActionError(404, f"the catalog Repository {ns}/{spec.get('repository')} is gone")
    return Catalog(repository.parse(obj), str(spec.get("revision") or version))


def _token(credentials: git.Credentials | None) -> str:
    return (credentials.bearer_token or credentials.password) if credentials else ""


def promote_revision(
    deployment: RepositorySpec,
    catalog: Catalog,
    package: str,
    credentials: Credentials,
    *,
    path: str = "",
    upgrade: bool = False,
) -> dict[str, Any]:
    """``promote CATALOG package@version --to DEPLOYMENT``, answered as ``promote -o json``."""
    deployment_credentials = credentials(deployment)
    done = promote(
        Options(
            catalog_url=catalog.spec.url,
            request=parse_request(f"{package}@{catalog.version}"),
            deployment_url=deployment.url,
            target=deployment.branch,
            path=path,
            upgrade=upgrade,
            forge=None if deployment.forge == "auto" else Forge(deployment.forge),
            catalog_credentials=credentials(catalog.spec),
            deployment_credentials=deployment_credentials,
            github_token=_token(deployment_credentials),
            author=default_author(),
        )
    )
    return done.to_dict()


def approve_branch(
    deployment: RepositorySpec, branch: str, credentials: Credentials
) -> dict[str, Any]:
    """``approve DEPLOYMENT branch`` into the Repository's branch."""
    if not branch.startswith("promote/"):
        raise ActionError(400, f"body: branch: {branch!r} is not a promotion branch (promote/...)")
    done = approve(deployment.url, branch, deployment.branch, credentials(deployment))
    return {
        "branch": done.branch,
        "target": done.target,
        "merged": done.target_commit,
        "alreadyMerged": done.already_merged,
        "branchDeleted": done.branch_deleted,
        "notes": done.notes,
    }
