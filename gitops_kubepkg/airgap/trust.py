"""Who made an export, and whether it is newer: ``airgap.json.sig`` and the import record.

Around the airgap flow, before and after the bytes move. ``airgap.json`` pins the sha256 of every
file of an export, so one signature over it vouches for all of them:

- ``sign_export`` (after ``airgap export`` wrote ``airgap.json``) writes ``airgap.json.sig``, an
  SSHSIG in namespace ``gitops-kubepkg-airgap``: operators can check it with stock OpenSSH,
  ``ssh-keygen -Y verify -f allowed_signers -I PRINCIPAL -n gitops-kubepkg-airgap -s
  airgap.json.sig < airgap.json``;
- ``verify_export`` (first thing ``airgap import --verify`` does) refuses an export that is
  unsigned, signed by a key the allowed_signers file does not allow, or altered after signing,
  before anything is written.

``ImportRecord`` is ``airgap-imports.json`` in the store (and in the controller's state
directory): every export imported, with its ``created`` time, the sha256 of its ``airgap.json``, who
signed it and when it was imported. An export older than the newest one imported is a replay and
is refused (``RollbackError``) unless the import allows rollback; each entry also names the images
(reference -> digest) and git repositories it brought, for the dashboard's airgap page; re-running the same export (a
resumed import) is not a replay. The git side of rollback protection is ``sources.bundle``'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitops_kubepkg import signature
from gitops_kubepkg.airgap.manifest import MANIFEST_NAME
from gitops_kubepkg.clock import SYSTEM, timestamp
from gitops_kubepkg.errors import InputError, RollbackError, SignatureError
from gitops_kubepkg.registry.digest import digest_bytes
from gitops_kubepkg.storage import write_atomic

SIGNATURE_NAME = f"{MANIFEST_NAME}.sig"
RECORD_NAME = "airgap-imports.json"


def load_signing_key(path: Path, passphrase: str = "") -> signature.PrivateKey:
    """Load the key before the export runs, so a bad key fails before hours of pulling."""
    return signature.load_private_key(path, passphrase)


def sign_export(directory: Path, key: signature.PrivateKey) -> Path:
    """Write ``directory/airgap.json.sig`` over the ``airgap.json`` that is there now."""
    manifest = directory / MANIFEST_NAME
    try:
        data = manifest.read_bytes()
    except OSError as e:
        raise InputError(f"{manifest}: {e.strerror}") from e
    out = directory / SIGNATURE_NAME
    write_atomic(out, signature.ssh_sign(key, data, signature.AIRGAP_NAMESPACE).encode())
    return out


def read_manifest_bytes(directory: Path) -> bytes:
    """``airgap.json`` read once: the bytes that are verified, recorded and imported."""
    manifest = directory / MANIFEST_NAME
    try:
        return manifest.read_bytes()
    except OSError as e:
        raise InputError(f"{manifest}: {e.strerror}") from e


def verify_export(
    directory: Path, allowed: signature.AllowedSigners, data: bytes | None = None
) -> signature.Verified:
    """Check ``airgap.json.sig`` over ``airgap.json`` (``data``, when already read); raise
    SignatureError naming the file."""
    sig = directory / SIGNATURE_NAME
    if data is None:
        data = read_manifest_bytes(directory)
    try:
        armored = sig.read_bytes()
    except FileNotFoundError as e:
        raise SignatureError(
            f"{sig}: missing: the export is not signed (airgap export --sign KEY)"
        ) from e
    except OSError as e:
        raise SignatureError(f"{sig}: {e.strerror}") from e
    try:
        return signature.ssh_verify(allowed, data, armored, signature.AIRGAP_NAMESPACE, str(sig))
    except SignatureError as e:
        if "does not match the data" in str(e):
            raise SignatureError(
                f"{e}: {MANIFEST_NAME} was changed after it was signed, or the signature is "
                "for another export"
            ) from e
        raise


@dataclass(frozen=True)
class ImportedExport:
    created: str
    sha256: str
    signer: str
    imported: str
    images: dict[str, str] = field(default_factory=dict, hash=False)
    """What the tarball brought: each image reference -> its digest (the dashboard shows it)."""
    repositories: tuple[str, ...] = ()
    """The git repositories whose bundles were fetched (URLs as airgap.json names them)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "created": self.created,
            "sha256": self.sha256,
            "signer": self.signer,
            "imported": self.imported,
        }
        if self.images:
            out["images"] = dict(sorted(self.images.items()))
        if self.repositories:
            out["repositories"] = list(self.repositories)
        return out


class ImportRecord:
    """``<directory>/airgap-imports.json``: what was imported when, oldest first."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RECORD_NAME

    def entries(self) -> list[ImportedExport]:
        try:
            doc: Any = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise InputError(f"{self.path}: unreadable import record: {e}") from e
        if not isinstance(doc, dict) or not isinstance(doc.get("imports"), list):
            raise InputError(f"{self.path}: imports: want a list")
        out = []
        for i, item in enumerate(doc["imports"]):
            if not isinstance(item, dict):
                raise InputError(f"{self.path}: imports[{i}]: want an object")
            images = item.get("images") or {}
            repositories = item.get("repositories") or []
            if not isinstance(images, dict) or not isinstance(repositories, list):
                raise InputError(f"{self.path}: imports[{i}]: images or repositories malformed")
            out.append(
                ImportedExport(
                    str(item.get("created", "")),
                    str(item.get("sha256", "")),
                    str(item.get("signer", "")),
                    str(item.get("imported", "")),
                    {str(k): str(v) for k, v in images.items()},
                    tuple(str(r) for r in repositories),
                )
            )
        return out

    def check(self, created: str, sha256: str, *, allow_rollback: bool) -> None:
        """Refuse an export older than the newest imported (a replay), unless allowed."""
        entries = self.entries()
        if allow_rollback or any(e.sha256 == sha256 for e in entries):
            return
        newest = max(entries, key=lambda e: e.created, default=None)
        if newest is not None and created < newest.created:
            raise RollbackError(
                f"{MANIFEST_NAME}: export created {created} is older than the one imported "
                f"{newest.imported} (created {newest.created}), recorded in {self.path}; "
                "refusing a replay (nothing was written; --allow-rollback imports it anyway)"
            )

    def add(
        self,
        created: str,
        sha256: str,
        signer: str,
        *,
        images: Mapping[str, str] | None = None,
        repositories: Iterable[str] = (),
    ) -> None:
        entries = [e for e in self.entries() if e.sha256 != sha256]
        now = timestamp(SYSTEM.now())
        entries.append(
            ImportedExport(
                created, sha256, signer, now, dict(images or {}), tuple(sorted(repositories))
            )
        )
        doc = {"imports": [e.to_json() for e in entries]}
        write_atomic(self.path, json.dumps(doc, indent=2).encode() + b"\n")


def manifest_sha256(directory: Path, data: bytes | None = None) -> str:
    return digest_bytes(read_manifest_bytes(directory) if data is None else data).hex
