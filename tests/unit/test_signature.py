"""SSHSIG against stock ssh-keygen both ways, allowed_signers, OpenPGP via gpg, and signed git
commits and tags (made by the git CLI) checked per ``spec.verify`` mode."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitops_kubepkg import git as gitmod
from gitops_kubepkg import signature
from gitops_kubepkg.errors import SignatureError
from gitops_kubepkg.sources import verify
from tests.signing import (
    git,
    git_env,
    gpg_key,
    gpg_signing_config,
    ssh_key,
    ssh_signing_config,
)

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa"])
def test_we_sign_ssh_keygen_verifies_and_back(tmp_path: Path, kind: str) -> None:
    key = ssh_key(tmp_path, "alice", kind)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(key.allowed_signers_line(signature.AIRGAP_NAMESPACE))
    message = b"airgap.json bytes\n"

    ours = signature.ssh_sign(
        signature.load_private_key(key.private), message, signature.AIRGAP_NAMESPACE
    )
    (tmp_path / "ours.sig").write_text(ours)
    checked = subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "verify",
            "-f",
            str(allowed),
            "-I",
            key.principal,
            "-n",
            signature.AIRGAP_NAMESPACE,
            "-s",
            str(tmp_path / "ours.sig"),
        ],
        input=message,
        capture_output=True,
    )
    assert checked.returncode == 0, checked.stderr

    (tmp_path / "msg").write_bytes(message)
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-Y",
            "sign",
            "-f",
            str(key.private),
            "-n",
            signature.AIRGAP_NAMESPACE,
            str(tmp_path / "msg"),
        ],
        check=True,
    )
    signers = signature.read_allowed_signers(allowed)
    theirs = (tmp_path / "msg.sig").read_bytes()
    who = signature.ssh_verify(signers, message, theirs, signature.AIRGAP_NAMESPACE, "msg.sig")
    assert who.principals == (key.principal,)
    with pytest.raises(SignatureError, match="does not match the data"):
        signature.ssh_verify(signers, message + b"x", theirs, signature.AIRGAP_NAMESPACE, "m")


def test_refusals_name_the_reason(tmp_path: Path) -> None:
    alice, mallory = ssh_key(tmp_path, "alice"), ssh_key(tmp_path, "mallory")
    signers = signature.parse_allowed_signers(alice.allowed_signers_line("git"), "signers")
    alice_key = signature.load_private_key(alice.private)
    mallory_key = signature.load_private_key(mallory.private)
    data = b"data"
    with pytest.raises(SignatureError, match="which signers does not allow"):
        signature.ssh_verify(
            signers, data, signature.ssh_sign(mallory_key, data, "git"), "git", "x"
        )
    with pytest.raises(SignatureError, match="signed for namespace 'file', want 'git'"):
        signature.ssh_verify(signers, data, signature.ssh_sign(alice_key, data, "file"), "git", "x")
    any_ns = signature.parse_allowed_signers(alice.allowed_signers_line("git"), "signers")
    with pytest.raises(SignatureError, match="not allowed namespace 'other'"):
        signature.ssh_verify(
            any_ns, data, signature.ssh_sign(alice_key, data, "other"), "other", "x"
        )
    with pytest.raises(SignatureError, match="not an SSH signature"):
        signature.ssh_verify(signers, data, "garbage", "git", "x")


def test_allowed_signers_format(tmp_path: Path) -> None:
    key = ssh_key(tmp_path, "bob")
    text = (
        "# comment\n\n"
        f'bob@x,ops@x namespaces="git,gitops-kubepkg-airgap" {key.public}\n'
        f"*@corp.example {key.public}\n"
    )
    signers = signature.parse_allowed_signers(text, "f")
    assert signers.signers[0].principals == ("bob@x", "ops@x")
    assert signers.signers[0].allows("git") and not signers.signers[0].allows("file")
    assert signers.signers[1].allows("anything")
    with pytest.raises(SignatureError, match=r"f:1: option 'cert-authority' is not supported"):
        signature.parse_allowed_signers(f"a@x cert-authority {key.public}\n", "f")
    with pytest.raises(SignatureError, match="f:1: want a key type"):
        signature.parse_allowed_signers("a@x namespaces=git notakey AAAA\n", "f")


def test_openpgp_detached(tmp_path: Path) -> None:
    good, other = gpg_key(tmp_path, "carol"), gpg_key(tmp_path, "dave")
    data = tmp_path / "data"
    data.write_bytes(b"payload")
    subprocess.run(
        ["gpg", "--homedir", str(good.home), "--batch", "--armor", "--detach-sign", str(data)],
        check=True,
        capture_output=True,
    )
    sig = (tmp_path / "data.asc").read_bytes()
    who = signature.pgp_verify([good.public_armored()], b"payload", sig, "data")
    assert who.kind == "openpgp" and good.email in who.principals[0]
    with pytest.raises(SignatureError, match="does not match"):
        signature.pgp_verify([good.public_armored()], b"payload!", sig, "data")
    with pytest.raises(SignatureError, match="not trusted"):
        signature.pgp_verify([other.public_armored()], b"payload", sig, "data")


@pytest.fixture
def signed_repo(tmp_path: Path) -> dict[str, object]:
    """A repository whose history has an SSH-signed, a GPG-signed and an unsigned commit, and
    tags: SSH-signed annotated, GPG-signed annotated, unsigned annotated, lightweight."""
    alice = ssh_key(tmp_path, "alice")
    carol = gpg_key(tmp_path, "carol")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(alice.allowed_signers_line())
    work = tmp_path / "work"
    work.mkdir()
    env = {**git_env(tmp_path / "home"), "GNUPGHOME": str(carol.home)}
    git(work, env, "init", "-q", "-b", "main")
    ssh_cfg = ssh_signing_config(alice, allowed)
    gpg_cfg = gpg_signing_config(carol)
    out: dict[str, object] = {"allowed": allowed.read_text(), "pgp": carol.public_armored()}
    for name, cfg in (("ssh", ssh_cfg), ("pgp", gpg_cfg), ("unsigned", [])):
        (work / f"{name}.txt").write_text(name)
        git(work, env, "add", ".")
        git(work, env, *cfg, "commit", "-q", *(["-S"] if cfg else []), "-m", name)
        out[f"commit-{name}"] = git(work, env, "rev-parse", "HEAD")
        if cfg:
            assert (
                "Good"
                in subprocess.run(
                    ["git", *cfg, "verify-commit", "-v", "HEAD"],
                    cwd=work,
                    env=env,
                    capture_output=True,
                ).stderr.decode()
            )
    git(work, env, *ssh_cfg, "tag", "-s", "-m", "signed", "web/v1.0.0", str(out["commit-ssh"]))
    git(work, env, *gpg_cfg, "tag", "-s", "-m", "signed", "web/v1.1.0", str(out["commit-pgp"]))
    git(work, env, "tag", "-a", "-m", "plain", "web/v1.2.0", str(out["commit-ssh"]))
    git(work, env, "tag", "web/v1.3.0", str(out["commit-ssh"]))
    out["repo"] = gitmod.open_bare(work / ".git")
    return out


def _policy(
    repo: dict[str, object], mode: str, *, ssh: bool = True, pgp: bool = True
) -> verify.VerifyPolicy:
    data = {}
    if ssh:
        data["allowed_signers"] = str(repo["allowed"])
    if pgp:
        data["carol.asc"] = str(repo["pgp"])
    return verify.policy_from_secret(mode, data, "Secret t/keys")


def test_commits_verify_per_key_kind(signed_repo: dict[str, object]) -> None:
    repo = signed_repo["repo"]
    assert isinstance(repo, gitmod.Repository)
    head = _policy(signed_repo, "HEAD")
    assert "alice@example.test" in verify.verify_commit(
        repo, str(signed_repo["commit-ssh"]), head, "main"
    )
    assert "carol" in verify.verify_commit(repo, str(signed_repo["commit-pgp"]), head, "main")
    with pytest.raises(SignatureError, match="is not signed"):
        verify.verify_commit(repo, str(signed_repo["commit-unsigned"]), head, "main")
    ssh_only = _policy(signed_repo, "HEAD", pgp=False)
    with pytest.raises(SignatureError, match="no OpenPGP public keys are trusted"):
        verify.verify_commit(repo, str(signed_repo["commit-pgp"]), ssh_only, "main")


@pytest.mark.parametrize(
    ("mode", "tag", "ok"),
    [
        ("Tag", "web/v1.0.0", True),
        ("Tag", "web/v1.1.0", True),
        ("Tag", "web/v1.2.0", False),  # annotated, unsigned
        ("Tag", "web/v1.3.0", False),  # lightweight
        ("HEAD", "web/v1.3.0", True),  # the commit is signed
        ("TagAndHEAD", "web/v1.0.0", True),
        ("TagAndHEAD", "web/v1.2.0", False),
    ],
)
def test_tags_per_mode(signed_repo: dict[str, object], mode: str, tag: str, ok: bool) -> None:
    repo = signed_repo["repo"]
    assert isinstance(repo, gitmod.Repository)
    target = repo.refs()[f"refs/tags/{tag}"]
    policy = _policy(signed_repo, mode)
    if ok:
        assert verify.verify_tag(repo, target, policy, tag)
    else:
        with pytest.raises(SignatureError, match=f"tag {tag}"):
            verify.verify_tag(repo, target, policy, tag)


def test_secret_entries_are_all_understood() -> None:
    with pytest.raises(SignatureError, match="entry 'token' is neither"):
        verify.policy_from_secret("HEAD", {"token": "x"}, "Secret t/keys")
    with pytest.raises(SignatureError, match="mode 'Always'"):
        verify.policy_from_secret("Always", {}, "Secret t/keys")


def test_signed_commits_we_write_pass_git_verify_commit(tmp_path: Path) -> None:
    alice = ssh_key(tmp_path, "alice")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(alice.allowed_signers_line("git"))
    key = signature.load_private_key(alice.private)
    repo = gitmod.init_bare(tmp_path / "r.git")
    first = repo.commit_files(
        "main", {"a": b"1"}, "first", sign=lambda b: signature.ssh_sign(key, b, "git")
    )
    repo.commit_files("side", {"b": b"2"}, "side")
    side = repo.resolve("refs/heads/side")
    assert side is not None
    merged = gitmod.commit_merge(
        repo, first, side, "merge", sign=lambda b: signature.ssh_sign(key, b, "git")
    )
    env = git_env(tmp_path / "home")
    for commit in (first, merged):
        proc = subprocess.run(
            ["git", *ssh_signing_config(alice, allowed), "verify-commit", commit],
            cwd=repo.path,
            env=env,
            capture_output=True,
        )
        assert proc.returncode == 0, proc.stderr
        assert b'Good "git" signature for alice@example.test' in proc.stderr
    policy = verify.policy_from_secret("HEAD", {"allowed_signers": allowed.read_text()}, "s")
    assert verify.verify_commit(repo, merged, policy, "main")
    with pytest.raises(SignatureError, match="is not signed"):
        verify.verify_commit(repo, side, policy, "side")
