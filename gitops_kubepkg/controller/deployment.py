"""Deployment pass: the KubePkg files on the branch become KubePkg objects (server-side apply).

Runs after the mirror poll for a deployment Repository. Reads the branch head from the mirror,
decides with ``sources.deployment`` and applies/deletes. It raises before deleting anything when
the branch or a tree cannot be read; a file that does not parse keeps its objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gitops_kubepkg.controller.repository import RepositorySpec
from gitops_kubepkg.errors import Invalid, Problem, SignatureError, SourceError
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.sources import deployment, verify
from gitops_kubepkg.sources.mirror import Mirror
from gitops_kubepkg.sources.verify import VerifyPolicy
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.document import too_big


@dataclass
class DeploymentResult:
    commit: str
    packages: int
    problems: list[Problem] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    verified: str = ""
    """Who signed the applied commit, when the Repository verifies."""


def sync_deployment(
    kube: Kube, spec: RepositorySpec, mirror: Mirror, policy: VerifyPolicy | None = None
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
    for obj in plan.apply:
        meta = obj["metadata"]
        try:
            kube.apply(obj)
        except Invalid as e:
            path = meta["annotations"][deployment.ANNOTATION_PATH]
            problems.append(Problem(path, "", f"the API server refused it: {e}"))
            continue
        changes.append(f"applied KubePkg {meta['namespace']}/{meta['name']}")
    for namespace, name in plan.delete:
        if kube.delete(API_VERSION, KIND, name, namespace):
            changes.append(f"deleted KubePkg {namespace}/{name}")
    return DeploymentResult(commit, len(want.objects), problems, changes, verified)
