"""Repository ``spec.verify`` against the real kube-apiserver: signed commits and tags (made by the
git CLI with ssh-keygen and gpg keys, or by promote/approve --sign-key) apply, unsigned or
untrusted ones do not, status says why, and the last verified commit stays applied."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitops_kubepkg import git as gitmod
from gitops_kubepkg import signature
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.promotion.approve import approve
from gitops_kubepkg.promotion.promote import Options, promote
from gitops_kubepkg.promotion.revisions import parse_request
from gitops_kubepkg.spec import API_VERSION, KIND
from tests.integration.test_sources_sync import (
    add_repository,
    add_secret,
    crd_storage_ready,
    kubepkg,
    ready,
    revisions,
)
from tests.signing import git, git_env, gpg_key, gpg_signing_config, ssh_key, ssh_signing_config

__all__ = ["crd_storage_ready"]
pytestmark = pytest.mark.integration


def version(kube: Kube, namespace: str, name: str) -> str | None:
    obj = kube.get(API_VERSION, KIND, name, namespace)
    return None if obj is None else str(obj["spec"]["version"])


def test_a_deployment_applies_only_verified_heads(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    alice = ssh_key(tmp_path, "alice")
    key = signature.load_private_key(alice.private)
    repo = gitmod.init_bare(tmp_path / "prod.git")
    repo.commit_files(
        "main",
        {"apps/web/kubepkg.json": kubepkg("web", "1.0.0")},
        "web 1.0.0",
        sign=signature.git_signer(key),
    )
    add_secret(kube, namespace, "keys", allowed_signers=alice.allowed_signers_line("git"))
    add_repository(
        kube,
        namespace,
        "prod",
        f"file://{tmp_path}/prod.git",
        "deployment",
        verify={"mode": "HEAD", "secretRef": {"name": "keys"}},
    )
    syncer = Syncer(kube, tmp_path / "state")
    outcome = syncer.sync(namespace, "prod")
    assert outcome is not None and outcome.ready, outcome
    assert alice.principal in ready(kube, namespace, "prod")["message"]
    assert version(kube, namespace, "web") == "1.0.0"

    # Alice's key leaves the Secret: the head that did not move is checked again, not skipped.
    bob = ssh_key(tmp_path, "bob")
    add_secret(kube, namespace, "keys", allowed_signers=bob.allowed_signers_line("git"))
    outcome = syncer.sync(namespace, "prod")
    assert outcome is not None and not outcome.ready, outcome
    assert ready(kube, namespace, "prod")["reason"] == "VerificationFailed"
    add_secret(kube, namespace, "keys", allowed_signers=alice.allowed_signers_line("git"))
    outcome = syncer.sync(namespace, "prod")
    assert outcome is not None and outcome.ready, outcome

    unsigned = repo.commit_files("main", {"apps/web/kubepkg.json": kubepkg("web", "2.0.0")}, "x")
    outcome = syncer.sync(namespace, "prod")
    assert outcome is not None and not outcome.ready
    cond = ready(kube, namespace, "prod")
    assert cond["reason"] == "VerificationFailed"
    assert f"commit {unsigned[:12]} is not signed" in cond["message"]
    assert version(kube, namespace, "web") == "1.0.0", "the last verified commit stays applied"

    mallory = signature.load_private_key(ssh_key(tmp_path, "mallory").private)
    repo.commit_files(
        "main",
        {"apps/web/kubepkg.json": kubepkg("web", "3.0.0")},
        "y",
        sign=signature.git_signer(mallory),
    )
    syncer.sync(namespace, "prod")
    assert "does not allow" in ready(kube, namespace, "prod")["message"]
    assert version(kube, namespace, "web") == "1.0.0"


@pytest.mark.parametrize(
    ("mode", "published"),
    [
        ("Tag", {"web/v1.0.0", "web/v1.1.0"}),
        ("HEAD", {"web/v1.0.0", "web/v1.3.0"}),
        ("TagAndHEAD", {"web/v1.0.0"}),
    ],
)
def test_a_catalog_publishes_only_verified_revisions(
    kube: Kube, namespace: str, tmp_path: Path, mode: str, published: set[str]
) -> None:
    alice, carol = ssh_key(tmp_path, "alice"), gpg_key(tmp_path, "carol")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(alice.allowed_signers_line())
    work = tmp_path / "catalog"
    work.mkdir()
    env = {**git_env(tmp_path / "home"), "GNUPGHOME": str(carol.home)}
    ssh, pgp = ssh_signing_config(alice, allowed), gpg_signing_config(carol)
    git(work, env, "init", "-q", "-b", "main")
    # v1.0.0: SSH-signed commit, SSH-signed tag. v1.1.0: unsigned commit, GPG-signed tag.
    # v1.2.0: unsigned commit, unsigned annotated tag. v1.3.0: SSH-signed commit, lightweight tag.
    for v, commit_cfg, tag_args in [
        ("1.0.0", ssh, [*ssh, "tag", "-s", "-m", "1.0.0"]),
        ("1.1.0", [], [*pgp, "tag", "-s", "-m", "1.1.0"]),
        ("1.2.0", [], ["tag", "-a", "-m", "1.2.0"]),
        ("1.3.0", ssh, ["tag"]),
    ]:
        (work / "web").mkdir(exist_ok=True)
        (work / "web" / "kubepkg.json").write_bytes(kubepkg("web", v))
        git(work, env, "add", "-A")
        git(work, env, *commit_cfg, "commit", "-q", *(["-S"] if commit_cfg else []), "-m", v)
        git(work, env, *tag_args, f"web/v{v}")
    add_secret(
        kube,
        namespace,
        "keys",
        allowed_signers=allowed.read_text(),
        **{"carol.asc": carol.public_armored()},
    )
    add_repository(
        kube,
        namespace,
        "catalog",
        f"file://{work}/.git",
        "catalog",
        verify={"mode": mode, "secretRef": {"name": "keys"}},
    )
    outcome = Syncer(kube, tmp_path / "state").sync(namespace, "catalog")
    assert outcome is not None and not outcome.ready
    assert set(revisions(kube, namespace)) == published
    cond = ready(kube, namespace, "catalog")
    assert cond["reason"] == "VerificationFailed"
    assert "tag web/v1.2.0" in cond["message"]


def test_promote_and_approve_sign_commits_git_and_the_controller_accept(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    alice = ssh_key(tmp_path, "alice")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(alice.allowed_signers_line("git"))
    signer = signature.git_signer(signature.load_private_key(alice.private))
    catalog = gitmod.init_bare(tmp_path / "catalog.git")
    c = catalog.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.0.0")}, "web")
    catalog.tag("web/v1.0.0", c, message="web 1.0.0")
    deploy = gitmod.init_bare(tmp_path / "deploy.git")
    deploy.commit_files("main", {"README": b"prod\n"}, "init", sign=signer)
    deploy_url = f"file://{tmp_path}/deploy.git"

    done = promote(
        Options(
            catalog_url=f"file://{tmp_path}/catalog.git",
            request=parse_request("web@1.0.0"),
            deployment_url=deploy_url,
            sign=signer,
        )
    )
    # Another change lands on main meanwhile, so approve writes a real merge commit.
    deploy.commit_files("main", {"NOTES": b"x\n"}, "notes", sign=signer)
    merged = approve(deploy_url, done.branch, "main", sign=signer)
    env = git_env(tmp_path / "home")
    for commit in (done.commit, merged.target_commit):
        proc = subprocess.run(
            ["git", *ssh_signing_config(alice, allowed), "verify-commit", commit],
            cwd=tmp_path / "deploy.git",
            env=env,
            capture_output=True,
        )
        assert proc.returncode == 0, proc.stderr

    add_secret(kube, namespace, "keys", allowed_signers=allowed.read_text())
    add_repository(
        kube,
        namespace,
        "prod",
        deploy_url,
        "deployment",
        verify={"mode": "HEAD", "secretRef": {"name": "keys"}},
    )
    outcome = Syncer(kube, tmp_path / "state").sync(namespace, "prod")
    assert outcome is not None and outcome.ready, outcome
    assert outcome.commit == merged.target_commit
    assert version(kube, namespace, "web") == "1.0.0"
