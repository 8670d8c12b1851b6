"""Signatures: SSHSIG (``ssh-keygen -Y sign``) made and checked here, OpenPGP checked with gpg.

The one module that knows signature formats; everything that trusts something calls it:

- ``airgap export --sign`` signs ``airgap.json`` (which pins every file's sha256) and ``airgap
  import --verify`` checks it, namespace ``gitops-kubepkg-airgap``;
- the sync checks signed commits and tags of a Repository with ``spec.verify`` (namespace ``git``,
  as git itself signs with ``gpg.format=ssh``), and OpenPGP ones with gpg;
- ``promote``/``approve --sign-key`` sign the commits they write.

SSHSIG is implemented with the ``cryptography`` package, byte for byte as OpenSSH's PROTOCOL.sshsig
describes it, so stock ``ssh-keygen -Y verify`` accepts what we sign and we accept what it signs.
Keys: ed25519, ECDSA (P-256/384/521) and RSA (rsa-sha2-512 signatures). ``allowed_signers`` is
OpenSSH's format (``principals [namespaces="..."] keytype base64 [comment]``); the options we do not
implement (``cert-authority``, ``valid-after``, ``valid-before``) are refused out loud rather than
ignored.

OpenPGP is verified by GnuPG (``gpg``, Debian's gnupg package; the controller image needs it) in a
throwaway home whose keyring holds exactly the public keys given: any of them is trusted, nothing
else is. Pure functions of bytes; errors are ``SignatureError`` with a message that says which key,
which namespace or what is malformed, and never a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from gitops_kubepkg.errors import SignatureError

AIRGAP_NAMESPACE = "gitops-kubepkg-airgap"
GIT_NAMESPACE = "git"
SSH_BEGIN = "-----BEGIN SSH SIGNATURE-----"
SSH_END = "-----END SSH SIGNATURE-----"
PGP_BEGIN = "-----BEGIN PGP SIGNATURE-----"
_MAGIC = b"SSHSIG"
_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_CURVES: dict[str, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm]] = {
    "nistp256": (ec.SECP256R1, hashes.SHA256()),
    "nistp384": (ec.SECP384R1, hashes.SHA384()),
    "nistp521": (ec.SECP521R1, hashes.SHA512()),
}

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


# -- SSH wire encoding ---------------------------------------------------------------------------


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "big") if n else b""
    return _string(raw)


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise SignatureError(f"{self.what}: truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.uint32())

    def mpint(self) -> int:
        return int.from_bytes(self.string(), "big", signed=True)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise SignatureError(f"{self.what}: {len(self.data) - self.pos} trailing bytes")


def public_key_blob(key: PublicKey) -> bytes:
    """The SSH wire encoding of a public key (what ``ssh-keygen -y`` prints, base64-decoded)."""
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def parse_public_key(keytype: str, b64: str, what: str) -> PublicKey:
    """A public key from the two words of an OpenSSH line (``ssh-ed25519 AAAA...``)."""
    try:
        key = serialization.load_ssh_public_key(f"{keytype} {b64}".encode())
    except (ValueError, UnsupportedAlgorithm) as e:
        raise SignatureError(f"{what}: not a public key cryptography can read: {e}") from e
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise SignatureError(f"{what}: key type {keytype} is not supported")
    return key


def _key_from_blob(blob: bytes, what: str) -> PublicKey:
    keytype = _Reader(blob, what).string().decode("ascii", "replace")
    return parse_public_key(keytype, base64.b64encode(blob).decode(), what)


def fingerprint(key: PublicKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(public_key_blob(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# -- keys ----------------------------------------------------------------------------------------


def load_private_key(path: Path, passphrase: str = "") -> PrivateKey:
    """An OpenSSH (or PEM) private key file: what ``ssh-keygen`` writes."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SignatureError(f"{path}: {e.strerror}") from e
    return parse_private_key(data, str(path), passphrase)


def parse_private_key(data: bytes, what: str, passphrase: str = "") -> PrivateKey:
    secret = passphrase.encode() or None
    key: object
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, secret)
        else:
            key = serialization.load_pem_private_key(data, secret)
    except TypeError as e:
        raise SignatureError(f"{what}: the key is encrypted; give its passphrase") from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise SignatureError(f"{what}: not a private key we can read: {e}") from e
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise SignatureError(f"{what}: only ed25519, ECDSA and RSA keys can sign")
    return key


# -- SSHSIG --------------------------------------------------------------------------------------


def _signed_data(namespace: str, hash_alg: str, message: bytes) -> bytes:
    digest = _HASHES[hash_alg](message).digest()
    return (
        _MAGIC + _string(namespace.encode()) + _string(b"") + _string(hash_alg.encode())
        + _string(digest)
    )  # fmt: skip


def _raw_sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _string(b"ssh-ed25519") + _string(key.sign(data))
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA512())
        return _string(b"rsa-sha2-512") + _string(sig)
    curve = f"nistp{key.curve.key_size}"
    _, digest = _CURVES[curve]
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    return _string(f"ecdsa-sha2-{curve}".encode()) + _string(_mpint(r) + _mpint(s))


def _raw_verify(key: PublicKey, blob: bytes, data: bytes, what: str) -> None:
    reader = _Reader(blob, what)
    algorithm = reader.string().decode("ascii", "replace")
    sig = reader.string()
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if algorithm != "ssh-ed25519":
                raise SignatureError(f"{what}: {algorithm} signature from an ed25519 key")
            key.verify(sig, data)
        elif isinstance(key, rsa.RSAPublicKey):
            rsa_hashes = {"rsa-sha2-512": hashes.SHA512(), "rsa-sha2-256": hashes.SHA256()}
            if algorithm not in rsa_hashes:  # ssh-rsa (SHA-1) is not accepted, as OpenSSH
                raise SignatureError(f"{what}: RSA signature algorithm {algorithm} refused")
            key.verify(sig, data, padding.PKCS1v15(), rsa_hashes[algorithm])
        else:
            curve = f"nistp{key.curve.key_size}"
            if algorithm != f"ecdsa-sha2-{curve}":
                raise SignatureError(f"{what}: {algorithm} signature from a {curve} key")
            inner = _Reader(sig, what)
            r, s = inner.mpint(), inner.mpint()
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_CURVES[curve][1]))
    except InvalidSignature as e:
        raise SignatureError(f"{what}: the signature does not match the data") from e


def ssh_sign(key: PrivateKey, message: bytes, namespace: str, hash_alg: str = "sha512") -> str:
    """The armored SSHSIG of ``message`` (what ``ssh-keygen -Y sign -n NAMESPACE`` writes)."""
    signature = _raw_sign(key, _signed_data(namespace, hash_alg, message))
    blob = (
        _MAGIC + struct.pack(">I", 1) + _string(public_key_blob(key.public_key()))
        + _string(namespace.encode()) + _string(b"") + _string(hash_alg.encode())
        + _string(signature)
    )  # fmt: skip
    b64 = base64.b64encode(blob).decode()
    lines = [b64[i : i + 70] for i in range(0, len(b64), 70)]
    return "\n".join([SSH_BEGIN, *lines, SSH_END]) + "\n"


def git_signer(key: PrivateKey) -> Callable[[bytes], str]:
    """Signs a commit's bytes as ``git commit -S`` with ``gpg.format=ssh`` does."""
    return lambda data: ssh_sign(key, data, GIT_NAMESPACE)


@dataclass(frozen=True)
class SshSignature:
    key: PublicKey
    namespace: str
    hash_alg: str
    signature: bytes


def parse_ssh_signature(armored: bytes | str, what: str) -> SshSignature:
    text = armored.decode("ascii", "replace") if isinstance(armored, bytes) else armored
    text = text.strip()
    if not text.startswith(SSH_BEGIN) or not text.endswith(SSH_END):
        raise SignatureError(f"{what}: not an SSH signature ({SSH_BEGIN} ... {SSH_END})")
    body = "".join(text[len(SSH_BEGIN) : -len(SSH_END)].split())
    try:
        blob = base64.b64decode(body, validate=True)
    except ValueError as e:
        raise SignatureError(f"{what}: the signature is not valid base64") from e
    reader = _Reader(blob, what)
    if reader.take(6) != _MAGIC:
        raise SignatureError(f"{what}: not an SSHSIG blob")
    version = reader.uint32()
    if version != 1:
        raise SignatureError(f"{what}: SSHSIG version {version} is not supported")
    key = _key_from_blob(reader.string(), what)
    namespace = reader.string().decode("utf-8", "replace")
    reader.string()  # reserved
    hash_alg = reader.string().decode("ascii", "replace")
    signature = reader.string()
    reader.end()
    if hash_alg not in _HASHES:
        raise SignatureError(f"{what}: hash algorithm {hash_alg!r} (want sha256 or sha512)")
    return SshSignature(key, namespace, hash_alg, signature)


# -- allowed_signers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowedSigner:
    principals: tuple[str, ...]
    key: PublicKey
    namespaces: tuple[str, ...] = ()
    """Empty: any namespace (as OpenSSH)."""

    def allows(self, namespace: str) -> bool:
        return not self.namespaces or any(_glob(p, namespace) for p in self.namespaces)


@dataclass(frozen=True)
class AllowedSigners:
    signers: tuple[AllowedSigner, ...] = field(default_factory=tuple)
    source: str = "allowed_signers"


def _glob(pattern: str, text: str) -> bool:
    negated = pattern.startswith("!")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    hit = re.fullmatch(regex, text) is not None
    return hit != negated


def _tokens(line: str) -> list[str]:
    """Split on blanks outside double quotes (options may quote ``namespaces="a,b"``)."""
    out, current, quoted = [], "", False
    for c in line:
        if c == '"':
            quoted = not quoted
            current += c
        elif c in " \t" and not quoted:
            if current:
                out.append(current)
            current = ""
        else:
            current += c
    if quoted:
        raise ValueError("unterminated quote")
    if current:
        out.append(current)
    return out


def _is_keytype(word: str) -> bool:
    return word.startswith(("ssh-", "ecdsa-sha2-", "sk-"))


def parse_allowed_signers(text: str, source: str = "allowed_signers") -> AllowedSigners:
    """OpenSSH's allowed_signers: one ``principals [options] keytype base64 [comment]`` a line."""
    signers = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        try:
            words = _tokens(line)
        except ValueError as e:
            raise SignatureError(f"{where}: {e}") from e
        if len(words) < 3:
            raise SignatureError(f"{where}: want principals [options] keytype key")
        principals = tuple(p.strip('"') for p in words[0].split(",") if p.strip('"'))
        namespaces: tuple[str, ...] = ()
        rest = words[1:]
        if not _is_keytype(rest[0]):
            for option in _split_options(rest[0]):
                name, _, value = option.partition("=")
                if name.lower() == "namespaces":
                    namespaces = tuple(n for n in value.strip('"').split(",") if n)
                else:
                    raise SignatureError(
                        f"{where}: option {name!r} is not supported (only namespaces=)"
                    )
            rest = rest[1:]
        if len(rest) < 2 or not _is_keytype(rest[0]):
            raise SignatureError(f"{where}: want a key type (ssh-ed25519, ...) and a key")
        signers.append(
            AllowedSigner(principals, parse_public_key(rest[0], rest[1], where), namespaces)
        )
    return AllowedSigners(tuple(signers), source)


def _split_options(text: str) -> list[str]:
    out, current, quoted = [], "", False
    for c in text:
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            out.append(current)
            current = ""
        else:
            current += c
    out.append(current)
    return [o for o in out if o]


def read_allowed_signers(path: Path) -> AllowedSigners:
    try:
        text = path.read_text()
    except OSError as e:
        raise SignatureError(f"{path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise SignatureError(f"{path}: not text: {e}") from e
    signers = parse_allowed_signers(text, str(path))
    if not signers.signers:
        raise SignatureError(f"{path}: no signers in it")
    return signers


@dataclass(frozen=True)
class Verified:
    """Who signed: the principals allowed for the key, its fingerprint, the kind of signature."""

    principals: tuple[str, ...]
    fingerprint: str
    kind: str = "ssh"

    def __str__(self) -> str:
        who = ",".join(self.principals) or "?"
        return f"{self.kind} signature by {who} ({self.fingerprint})"


def ssh_verify(
    allowed: AllowedSigners, message: bytes, armored: bytes | str, namespace: str, what: str
) -> Verified:
    """Check an SSHSIG over ``message``; return the signer or raise SignatureError saying why."""
    sig = parse_ssh_signature(armored, what)
    if sig.namespace != namespace:
        raise SignatureError(f"{what}: signed for namespace {sig.namespace!r}, want {namespace!r}")
    blob = public_key_blob(sig.key)
    matching = [s for s in allowed.signers if public_key_blob(s.key) == blob]
    if not matching:
        raise SignatureError(
            f"{what}: signed by key {fingerprint(sig.key)}, which {allowed.source} does not allow"
        )
    permitted = [s for s in matching if s.allows(namespace)]
    if not permitted:
        raise SignatureError(
            f"{what}: key {fingerprint(sig.key)} is not allowed namespace {namespace!r} "
            f"in {allowed.source}"
        )
    _raw_verify(sig.key, sig.signature, _signed_data(namespace, sig.hash_alg, message), what)
    principals = tuple(dict.fromkeys(p for s in permitted for p in s.principals))
    return Verified(principals, fingerprint(sig.key))


# -- OpenPGP (GnuPG) -------------------------------------------------------------------------------

_GPG_ENV = {"LC_ALL": "C", "GPG_TTY": ""}


def _gpg(home: str, args: Iterable[str], what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--no-tty", "--no-autostart", *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **_GPG_ENV},
            check=False,
        )
    except FileNotFoundError as e:
        raise SignatureError(
            f"{what}: OpenPGP signatures need gpg (Debian: gnupg) and it is not installed"
        ) from e


def pgp_verify(public_keys: Iterable[str], message: bytes, armored: bytes, what: str) -> Verified:
    """Check a detached OpenPGP signature against exactly ``public_keys`` (armored blocks)."""
    keys = [k for k in public_keys if k.strip()]
    if not keys:
        raise SignatureError(f"{what}: OpenPGP signature, and no OpenPGP public keys are trusted")
    with tempfile.TemporaryDirectory(prefix="gitops-kubepkg-gpg-") as home:
        os.chmod(home, 0o700)
        key_file = Path(home) / "keys.asc"
        key_file.write_text("\n".join(keys))
        imported = _gpg(home, ["--import", str(key_file)], what)
        if imported.returncode != 0:
            detail = imported.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SignatureError(f"{what}: the OpenPGP public keys do not import: {detail[-1:]}")
        sig_file, data_file = Path(home) / "sig.asc", Path(home) / "data"
        sig_file.write_bytes(armored)
        data_file.write_bytes(message)
        proc = _gpg(
            home,
            [
                "--trust-model",
                "always",
                "--status-fd",
                "1",
                "--verify",
                str(sig_file),
                str(data_file),
            ],
            what,
        )
    status = proc.stdout.decode("utf-8", "replace").splitlines()
    words = {line.split()[1]: line.split()[2:] for line in status if line.startswith("[GNUPG:] ")}
    for bad, reason in (
        ("BADSIG", "the signature does not match the data"),
        ("EXPKEYSIG", "the signing key has expired"),
        ("REVKEYSIG", "the signing key is revoked"),
        ("EXPSIG", "the signature has expired"),
        ("NO_PUBKEY", "signed by an OpenPGP key that is not trusted"),
        ("ERRSIG", "the signature cannot be checked"),
    ):
        if bad in words:
            key_id = (words[bad] or ["?"])[0]
            raise SignatureError(f"{what}: {reason} (key {key_id})")
    if proc.returncode != 0 or "GOODSIG" not in words or "VALIDSIG" not in words:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SignatureError(f"{what}: OpenPGP verification failed: {' '.join(detail[-2:])}")
    good = words["GOODSIG"]
    return Verified((" ".join(good[1:]),), words["VALIDSIG"][0], kind="openpgp")


# -- one entry point for detached signatures of either kind ----------------------------------------


@dataclass(frozen=True)
class TrustedKeys:
    """What a verifier trusts: SSH allowed signers and OpenPGP public keys (either may be empty)."""

    ssh: AllowedSigners = field(default_factory=AllowedSigners)
    pgp: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.ssh.signers and not self.pgp


def verify_detached(
    keys: TrustedKeys, message: bytes, signature: bytes, namespace: str, what: str
) -> Verified:
    """An SSHSIG or OpenPGP signature over ``message``, whichever it is."""
    text = signature.lstrip()
    if text.startswith(SSH_BEGIN.encode()):
        if not keys.ssh.signers:
            raise SignatureError(f"{what}: SSH signature, and no SSH allowed signers are trusted")
        return ssh_verify(keys.ssh, message, signature, namespace, what)
    if text.startswith(PGP_BEGIN.encode()):
        return pgp_verify(keys.pgp, message, signature, what)
    raise SignatureError(f"{what}: signature is neither SSH nor OpenPGP")
