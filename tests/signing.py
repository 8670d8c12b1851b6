"""Real keys for signature tests: ssh-keygen key pairs, a GnuPG key, git configured to sign.

Every key is made fresh by the stock tools (OpenSSH's ssh-keygen, GnuPG's gpg) in a temporary
directory, so the tests prove interoperability with what operators use, not with ourselves.
gpg starts an agent per home directory for key generation and signing; ``stop_gpg_agents`` (run
by tests/conftest.py after every test) stops them, so no test leaves a process behind.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SshKey:
    private: Path
    principal: str

    @property
    def public(self) -> str:
        return Path(f"{self.private}.pub").read_text().strip()

    def allowed_signers_line(self, namespaces: str = "") -> str:
        option = f' namespaces="{namespaces}"' if namespaces else ""
        return f"{self.principal}{option} {self.public}\n"


def ssh_key(directory: Path, name: str, kind: str = "ed25519") -> SshKey:
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", str(path)], check=True
    )
    return SshKey(path, f"{name}@example.test")


@dataclass(frozen=True)
class GpgKey:
    home: Path
    email: str
    fingerprint: str

    def public_armored(self) -> str:
        return gpg(self.home, "--armor", "--export", self.fingerprint).stdout.decode()


def gpg(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
        check=True,
        capture_output=True,
    )


_GPG_HOMES: list[Path] = []


def stop_gpg_agents() -> None:
    """Stop the agent of every GnuPG home the tests made since the last call."""
    while _GPG_HOMES:
        home = _GPG_HOMES.pop()
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False
        )


def gpg_key(directory: Path, name: str) -> GpgKey:
    home = directory / f"gnupg-{name}"
    home.mkdir(mode=0o700)
    _GPG_HOMES.append(home)
    email = f"{name}@example.test"
    gpg(home, "--passphrase", "", "--quick-gen-key", f"{name} <{email}>", "ed25519", "sign", "0")
    listing = gpg(home, "--with-colons", "--list-keys", email).stdout.decode()
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    return GpgKey(home, email, fpr)


def git_env(home: Path) -> dict[str, str]:
    """An environment whose git reads only the config the test writes (no user config)."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Signer",
        "GIT_AUTHOR_EMAIL": "signer@example.test",
        "GIT_COMMITTER_NAME": "Signer",
        "GIT_COMMITTER_EMAIL": "signer@example.test",
    }


def git(cwd: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {proc.stderr.decode()}")
    return proc.stdout.decode().strip()


def ssh_signing_config(key: SshKey, allowed_signers: Path) -> list[str]:
    """``git -c`` options that sign (and verify) with an SSH key."""
    return [
        "-c",
        "gpg.format=ssh",
        "-c",
        f"user.signingkey={key.private}",
        "-c",
        f"gpg.ssh.allowedSignersFile={allowed_signers}",
    ]


def gpg_signing_config(key: GpgKey) -> list[str]:
    return ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={key.fingerprint}"]
