"""Signed commits and tags: a Repository's ``spec.verify`` checked against what the mirror holds.

Between the mirror poll and the catalog or deployment pass. Like Flux's ``spec.verify``:

- ``HEAD``: the commit must be signed (for a deployment, the branch head; for a catalog, the
  commit each revision's tag points at);
- ``Tag``: the catalog tag must be an annotated tag with a signature (a lightweight tag has none);
- ``TagAndHEAD``: both.

The keys come from a Secret (read by the controller): an entry named ``allowed_signers`` holds SSH
allowed signers (OpenSSH's format; namespace ``git``, as git signs with ``gpg.format=ssh``), and
every entry holding ``-----BEGIN PGP PUBLIC KEY BLOCK-----`` is an OpenPGP public key. Any other
entry is refused by name: a key we would silently skip is a key the operator thinks is trusted.

The signature formats are ``gitops_kubepkg.signature``'s; this module only knows which git object
to ask and what a mode means. A verdict is cached per (object id, keys): objects are immutable, so a
pass over a catalog with many tags checks each tag once per process.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from gitops_kubepkg import git, signature
from gitops_kubepkg.errors import SignatureError

MODES = ("HEAD", "Tag", "TagAndHEAD")
ALLOWED_SIGNERS_KEY = "allowed_signers"
_PGP_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----"


@dataclass(frozen=True)
class VerifyPolicy:
    mode: str
    keys: signature.TrustedKeys
    identity: str
    """A hash of the key material: verdicts cached under another set of keys do not count."""

    @property
    def commits(self) -> bool:
        return self.mode in ("HEAD", "TagAndHEAD")

    @property
    def tags(self) -> bool:
        return self.mode in ("Tag", "TagAndHEAD")


def policy_from_secret(mode: str, data: Mapping[str, str], where: str) -> VerifyPolicy:
    """A policy from a Secret's decoded entries; ``where`` names the Secret in errors."""
    if mode not in MODES:
        raise SignatureError(f"{where}: mode {mode!r}: want one of {', '.join(MODES)}")
    ssh = signature.AllowedSigners(source=f"{where}: {ALLOWED_SIGNERS_KEY}")
    pgp: list[str] = []
    for key in sorted(data):
        value = data[key]
        if key == ALLOWED_SIGNERS_KEY:
            ssh = signature.parse_allowed_signers(value, f"{where}: {ALLOWED_SIGNERS_KEY}")
        elif _PGP_KEY in value:
            pgp.append(value)
        else:
            raise SignatureError(
                f"{where}: entry {key!r} is neither {ALLOWED_SIGNERS_KEY!r} nor an armored "
                "OpenPGP public key"
            )
    keys = signature.TrustedKeys(ssh, tuple(pgp))
    if keys.empty:
        raise SignatureError(f"{where}: no keys (want {ALLOWED_SIGNERS_KEY} or OpenPGP keys)")
    text = "\0".join(f"{k}={data[k]}" for k in sorted(data))
    return VerifyPolicy(mode, keys, hashlib.sha256(text.encode()).hexdigest())


_cache: dict[tuple[str, str], signature.Verified] = {}
_cache_lock = threading.Lock()


def verify_object(repo: git.Repository, oid: str, policy: VerifyPolicy, what: str) -> str:
    """Check the signature of a commit or annotated tag; return who signed, or raise saying why."""
    key = (oid, policy.identity)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is None:
        obj = git.signed_object(repo, oid)
        if obj.signature is None:
            raise SignatureError(f"{what}: {obj.kind} {oid[:12]} is not signed")
        hit = signature.verify_detached(
            policy.keys,
            obj.payload,
            obj.signature,
            signature.GIT_NAMESPACE,
            f"{what}: {obj.kind} {oid[:12]}",
        )
        with _cache_lock:
            _cache[key] = hit
    return str(hit)


def verify_commit(repo: git.Repository, commit: str, policy: VerifyPolicy, what: str) -> str:
    return verify_object(repo, commit, policy, what)


def verify_tag(repo: git.Repository, target: str, policy: VerifyPolicy, tag: str) -> str:
    """A catalog tag under ``policy``: ``target`` is what ``refs/tags/<tag>`` points at."""
    said = []
    what = f"tag {tag}"
    if policy.tags:
        if git.signed_object_kind(repo, target) != "tag":
            raise SignatureError(
                f"{what}: a lightweight tag carries no signature (mode {policy.mode} wants a "
                "signed annotated tag: git tag -s)"
            )
        said.append(verify_object(repo, target, policy, what))
    if policy.commits:
        said.append(verify_object(repo, repo.peel(target), policy, what))
    return "; ".join(said)
