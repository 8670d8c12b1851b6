"""Signed exports and no silent rollback, through the CLI with real keys and real repositories.

Exports are made by ``airgap export --sign`` from a real registry (CNCF Distribution) and a real
git repository; signatures are checked both by ``airgap import --verify`` and by stock OpenSSH
(``ssh-keygen -Y verify``). Every refusal is checked to have written nothing: no store, no mirror
ref moved.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from gitops_kubepkg.sources.mirror import mirror_dir
from tests.integration.test_airgap_roundtrip import (
    Source,
    cli,
    git,
    import_,
    make_repo,
    source,
)
from tests.signing import ssh_key

__all__ = ["source"]  # the module-scoped registry fixture, shared with the roundtrip tests

pytestmark = pytest.mark.integration
URL = "https://git.example.com/deploy.git"


def export(source: Source, repo: Path, out: Path, *extra: str) -> None:
    cli(
        "airgap",
        "export",
        "--out",
        str(out),
        "--repo",
        f"{URL}={repo}",
        *source.mirror_flags,
        *extra,
    )


def test_a_signed_export_imports_and_openssh_agrees(source: Source, tmp_path: Path) -> None:
    alice = ssh_key(tmp_path, "alice")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(alice.allowed_signers_line("gitops-kubepkg-airgap"))
    repo = tmp_path / "deploy"
    make_repo(repo, source)
    out = tmp_path / "out"
    export(source, repo, out, "--sign", str(alice.private))

    with open(out / "airgap.json", "rb") as f:
        stock = subprocess.run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                str(allowed),
                "-I",
                alice.principal,
                "-n",
                "gitops-kubepkg-airgap",
                "-s",
                str(out / "airgap.json.sig"),
            ],
            stdin=f,
            capture_output=True,
        )
    assert stock.returncode == 0, stock.stderr

    store, state = tmp_path / "store", tmp_path / "state"
    proc = import_(out, "--store", str(store), "--state-dir", str(state), "--verify", str(allowed))
    assert alice.principal in json.loads(proc.stdout)["signer"]
    record = json.loads((store / "airgap-imports.json").read_text())["imports"]
    assert [r["created"] for r in record] == [
        json.loads((out / "airgap.json").read_text())["created"]
    ]
    assert alice.principal in record[0]["signer"]
    assert record[0]["repositories"] == [URL], "what the import brought (the dashboard shows it)"
    reflog = git(mirror_dir(state, URL), "reflog", "show", "refs/heads/main")
    assert "airgap import" in reflog


@pytest.mark.parametrize("damage", ["tampered", "unsigned", "wrong key", "wrong namespace"])
def test_bad_signatures_are_refused_with_nothing_written(
    source: Source, tmp_path: Path, damage: str
) -> None:
    alice, mallory = ssh_key(tmp_path, "alice"), ssh_key(tmp_path, "mallory")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(alice.allowed_signers_line("gitops-kubepkg-airgap"))
    repo = tmp_path / "deploy"
    make_repo(repo, source)
    out = tmp_path / "out"
    signer = mallory if damage == "wrong key" else alice
    export(source, repo, out, "--sign", str(signer.private))
    manifest = out / "airgap.json"
    if damage == "tampered":  # a checksum swapped for one of the attacker's files
        doc = json.loads(manifest.read_text())
        doc["tarball"]["sha256"] = "0" * 64
        manifest.write_text(json.dumps(doc, indent=2) + "\n")
        want = "was changed after it was signed"
    elif damage == "unsigned":
        (out / "airgap.json.sig").unlink()
        want = "the export is not signed"
    elif damage == "wrong key":
        want = "which " + str(allowed) + " does not allow"
    else:
        allowed.write_text(alice.allowed_signers_line("git"))
        want = "is not allowed namespace 'gitops-kubepkg-airgap'"

    store, state = tmp_path / "store", tmp_path / "state"
    proc = import_(
        out, "--store", str(store), "--state-dir", str(state), "--verify", str(allowed), check=False
    )
    assert proc.returncode == 1
    assert want in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not store.exists() and not state.exists()


def test_rollbacks_are_refused_unless_allowed(source: Source, tmp_path: Path) -> None:
    repo = tmp_path / "deploy"
    make_repo(repo, source)
    store, state = tmp_path / "store", tmp_path / "state"
    dest = ("--store", str(store), "--state-dir", str(state))
    old = tmp_path / "old"
    export(source, repo, old)
    time.sleep(1.1)  # created has second resolution: the next export must be newer
    (repo / "README").write_text("newer\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "newer")
    new = tmp_path / "new"
    export(source, repo, new)
    import_(new, *dest)
    mirror = mirror_dir(state, URL)
    newer = git(mirror, "rev-parse", "refs/heads/main")

    # A replayed older export: refused by the import record before the mirror is looked at.
    proc = import_(old, *dest, check=False)
    assert proc.returncode == 1 and "older than the one imported" in proc.stderr, proc.stderr
    assert git(mirror, "rev-parse", "refs/heads/main") == newer
    # The same export again is a resumed import, not a replay.
    import_(new, *dest)

    # A newer export whose branch was rewritten and whose tag moved.
    time.sleep(1.1)
    git(repo, "reset", "-q", "--hard", "HEAD~1")
    (repo / "OTHER").write_text("rewritten\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "rewritten")
    git(repo, "tag", "-f", "apps/web/v1.0.0")
    rewritten = tmp_path / "rewritten"
    export(source, repo, rewritten)
    before = (store / "airgap-imports.json").read_text()
    proc = import_(rewritten, *dest, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "branch main at" in proc.stderr and "does not descend from it" in proc.stderr
    assert "tag apps/web/v1.0.0 would move" in proc.stderr
    assert git(mirror, "rev-parse", "refs/heads/main") == newer
    assert not [r for r in git(mirror, "for-each-ref").splitlines() if "incoming" in r]
    assert (store / "airgap-imports.json").read_text() == before

    import_(rewritten, *dest, "--allow-rollback")
    assert git(mirror, "rev-parse", "refs/heads/main") == git(repo, "rev-parse", "main")
    assert git(mirror, "rev-parse", "refs/tags/apps/web/v1.0.0") == git(repo, "rev-parse", "main")


def test_the_import_uses_the_airgap_json_it_verified_not_a_later_copy(
    source: Source, tmp_path: Path
) -> None:
    from gitops_kubepkg.airgap.importer import StoreSink, import_export
    from gitops_kubepkg.airgap.trust import read_manifest_bytes

    repo = tmp_path / "deploy"
    make_repo(repo, source)
    out = tmp_path / "out"
    export(source, repo, out)
    verified = read_manifest_bytes(out)
    # Swapped on the medium after the check: a manifest naming another tarball size.
    doc = json.loads(verified)
    doc["tarball"]["size"] += 1
    (out / "airgap.json").write_text(json.dumps(doc))
    store = tmp_path / "store"
    store.mkdir()
    result = import_export(
        out,
        StoreSink(store),
        mirror_for=lambda url: mirror_dir(tmp_path / "state", url),
        manifest_data=verified,
    )
    assert result.repositories[URL]["refs/heads/main"] == git(repo, "rev-parse", "main")
