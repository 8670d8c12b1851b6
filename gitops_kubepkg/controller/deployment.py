"""Deployment pass: the KubePkg files on the branch become KubePkg objects (server-side apply).

Runs after the mirror poll for a deployment Repository. Reads the branch head from the mirror,
decides with ``sources.deployment`` and applies/deletes. It raises before deleting anything when
the branch or a tree cannot be read; a file that does not parse keeps its objects.

A file's KubePkg is refused (a problem naming the file; the other files still apply) when it
would land in another namespace than the Repository's without the operator's grant
(multi-tenant), or when a KubePkg of that name exists and is another Repository's (or, in
multi-tenant mode, was made by hand): a Repository never overwrites what it did not write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gitops_kubepkg.controller.repository import RepositorySpec
from gitops_kubepkg.errors import (
    Conflict,
    Forbidden,
    Invalid,
    Problem,
    SignatureError,
    SourceError,
)
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.objects import FINALIZER
from gitops_kubepkg.sources import deployment, verify
from gitops_kubepkg.sources.mirror import Mirror
from gitops_kubepkg.sources.verify import VerifyPolicy
from gitops_kubepkg.spec import API_VERSION, KIND, KubeObject
from gitops_kubepkg.spec.document import too_big
from gitops_kubepkg.tenancy import Tenancy


@dataclass
class DeploymentResult:
    commit: str
    packages: int
    problems: list[Problem] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    verified: str = ""
    """Who signed the applied commit, when the Repository verifies."""


def _refusal(kube: Kube, spec: RepositorySpec, obj: KubeObject, tenancy: Tenancy) -> str:
    """Why this Repository may not write ``obj`` (a KubePkg it does not hold yet), or ""."""
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if not tenancy.allows_namespace(spec.namespace, namespace):
        return (
            f"KubePkg {namespace}/{name}: a Repository of namespace {spec.namespace} may only "
            f"write KubePkgs into {spec.namespace} ({tenancy.describe_grants(spec.namespace)}); "
            "not written"
        )
    live = kube.get(API_VERSION, KIND, name, namespace)
    if live is None:
        return ""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    owner = annotations.get(deployment.ANNOTATION_REPOSITORY)
    if owner and owner != spec.key:
        return f"KubePkg {namespace}/{name} belongs to Repository {owner}; not overwritten"
    if not owner and tenancy.multi_tenant:
        return (
            f"KubePkg {namespace}/{name} exists and was not written by a Repository (made by "
            "hand or by `gitops-kubepkg apply`); not overwritten, delete it to hand it over"
        )
    return ""


def sync_deployment(
    kube: Kube,
    spec: RepositorySpec,
    mirror: Mirror,
    policy: VerifyPolicy | None = None,
    tenancy: Tenancy | None = None,
) -> DeploymentResult:
    """Apply the branch head; with ``policy``, only a head whose signature verifies (otherwise
    raise SignatureError: nothing is applied or deleted, so the last verified commit stays)."""
    repo = mirror.repository()
    commit = repo.resolve(f"refs/heads/{spec.branch}")
    if commit is None:
        raise SourceError(
            f"Repository {spec.key}: branch {spec.branch!r} not found in {mirror.url}; "
            "nothing applied or deleted"
        )
    verified = ""
    if policy is not None:
        try:
            verified = verify.verify_commit(repo, commit, policy, f"branch {spec.branch}")
        except SignatureError as e:
            raise SignatureError(
                f"{e}; nothing applied or deleted, the last verified commit stays applied"
            ) from e
    entries = {e.path: e.oid for e in repo.walk(commit, spec.directory)}
    files: dict[str, bytes] = {}
    refused: dict[str, str] = {}
    for path in deployment.kubepkg_paths(entries, spec.directory):
        if error := too_big(repo.blob_size(entries[path]), path):  # checked before reading it
            refused[path] = str(error)
        else:
            files[path] = repo.blob(entries[path])
    want = deployment.desired(spec.ref, commit, files, branch=spec.branch, refused=refused)
    existing = kube.list(API_VERSION, KIND, label_selector=deployment.selector(spec.ref))
    plan = deployment.plan(spec.ref, want, existing)
    problems = list(want.problems)
    changes: list[str] = []
    held = {
        (o["metadata"].get("namespace", ""), o["metadata"]["name"])
        for o in existing
        if (o["metadata"].get("annotations") or {}).get(deployment.ANNOTATION_REPOSITORY)
        == spec.key
    }
    for obj in plan.apply:
        meta = obj["metadata"]
        path = meta["annotations"][deployment.ANNOTATION_PATH]
        if (meta["namespace"], meta["name"]) not in held:
            why = _refusal(kube, spec, obj, tenancy or Tenancy())
            if why:
                problems.append(Problem(path, "metadata.namespace", why))
                continue
        # Stored with the reconciler's finalizer, as the CLI `apply` does: the first KubePkg
        # pass would otherwise add it with one more write of the whole package.
        meta["finalizers"] = sorted({*(meta.get("finalizers") or []), FINALIZER})
        try:
            kube.apply(obj)
        except (Invalid, Forbidden, Conflict) as e:
            problems.append(Problem(path, "", f"the API server refused it: {e}"))
            continue
        changes.append(f"applied KubePkg {meta['namespace']}/{meta['name']}")
    for namespace, name in plan.kept:
        # Its file no longer reads: the KubePkg says so (and stalls), its objects stay.
        obj = next(o for o in existing if (o["metadata"].get("namespace"), o["metadata"]["name"])
                   == (namespace, name))  # fmt: skip
        annotations = obj["metadata"].get("annotations") or {}
        why = deployment.file_problems(want, annotations.get(deployment.ANNOTATION_PATH, ""))
        if annotations.get(deployment.ANNOTATION_SOURCE_PROBLEM) != why[:1000]:
            kube.patch(
                API_VERSION,
                KIND,
                name,
                namespace,
                {"metadata": {"annotations": {deployment.ANNOTATION_SOURCE_PROBLEM: why[:1000]}}},
            )
            changes.append(f"marked KubePkg {namespace}/{name}: its file does not read")
    for namespace, name in plan.terminating:
        changes.append(
            f"KubePkg {namespace}/{name} is being deleted; created again from its file once it "
            "is gone"
        )
    for namespace, name in plan.delete:
        if kube.delete(API_VERSION, KIND, name, namespace):
            changes.append(f"deleted KubePkg {namespace}/{name}")
    return DeploymentResult(commit, len(want.objects), problems, changes, verified)
