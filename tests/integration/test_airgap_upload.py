"""``airgap import DIR --to-controller URL`` against the controller's upload endpoint, with the
real kube-apiserver judging the caller: a ServiceAccount token (TokenRequest API) is checked with
a TokenReview and a SubjectAccessReview on verb create of airgapimports.gitops.kubepkg.dev, so a
token without that RBAC gets 403 and no token 401. An allowed upload is imported into the store
and the mirrors as ``airgap import --store --state-dir`` does; an upload cut short resumes from
what the controller holds; the uploaded files are removed after the import.

The endpoint runs in this process (``UploadServer``, as ``controller --upload-listen`` starts it);
the CLI runs as a user runs it."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.airgap.trust import manifest_sha256
from gitops_kubepkg.airgap.upload import PREFIX, Authorizer, Uploads, UploadServer
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.registry.client import RegistryClient
from gitops_kubepkg.sources.mirror import mirror_dir
from tests.integration.registry_peers import Distribution, build_image, have_peers, push

pytestmark = pytest.mark.integration

IMAGE = "docker.io/library/upload:1.0"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args], capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def token(kube: Kube, namespace: str, account: str) -> str:
    kube.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": account, "namespace": namespace}}
    )  # fmt: skip
    answer = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 3600}},
    )  # fmt: skip
    value: str = answer["status"]["token"]
    return value


@dataclass
class Endpoint:
    url: str
    state: Path
    store: Path
    allowed: Path
    denied: Path


@pytest.fixture
def endpoint(kube: Kube, namespace: str, tmp_path: Path) -> Iterator[Endpoint]:
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "airgap-uploader", "namespace": namespace},
            "rules": [
                {"apiGroups": ["gitops.kubepkg.dev"], "resources": ["airgapimports"],
                 "verbs": ["create"]}
            ],
        }
    )  # fmt: skip
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "airgap-uploader", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "airgap-uploader"},
            "subjects": [{"kind": "ServiceAccount", "name": "uploader", "namespace": namespace}],
        }
    )  # fmt: skip
    allowed, denied = tmp_path / "allowed.token", tmp_path / "denied.token"
    allowed.write_text(token(kube, namespace, "uploader"))
    denied.write_text(token(kube, namespace, "stranger"))
    state, store = tmp_path / "state", tmp_path / "state" / "registry"
    state.mkdir()
    server = UploadServer(("127.0.0.1", 0), Authorizer(kube, namespace), Uploads(state, store))
    server.start()
    try:
        yield Endpoint(f"http://127.0.0.1:{server.port}", state, store, allowed, denied)
    finally:
        server.stop()


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, str]:
    """An export of one image from a Distribution, plus a git repository's bundle."""
    if not have_peers():
        pytest.skip("needs docker-registry and skopeo")
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README").write_text("airgapped\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    url = "https://git.example.com/deploy.git"
    pkg = tmp_path / "pkg" / "kubepkg.json"
    pkg.parent.mkdir()
    pkg.write_text(
        json.dumps(
            {
                "apiVersion": "octohelm.tech/v1alpha1",
                "kind": "KubePkg",
                "metadata": {"name": "upload"},
                "spec": {
                    "version": "1.0.0",
                    "images": {IMAGE: ""},
                    "manifests": {
                        "w.default.deployment": {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "metadata": {"name": "w", "namespace": "default"},
                            "spec": {"template": {"spec": {"containers": [
                                {"name": "w", "image": IMAGE}]}}},
                        }
                    },
                },
            }
        )
    )  # fmt: skip
    registry = Distribution(tmp_path / "connected")
    try:
        client = RegistryClient()
        push(client, registry.endpoint, "library/upload", "1.0", build_image([300_000, 200_000]))
        client.close()
        cli("airgap", "export", str(pkg), "--out", str(tmp_path / "export"), "--repo",
            f"{url}={repo}", "--registry-mirror", f"docker.io={registry.url}")  # fmt: skip
    finally:
        registry.stop()
    return tmp_path / "export", url


def upload(endpoint: Endpoint, directory: Path, token: Path | None, *extra: str,
           check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    flags = ["--token-file", str(token)] if token is not None else []
    return cli("airgap", "import", str(directory), "--to-controller", endpoint.url, *flags,
               "-o", "json", *extra, check=check)  # fmt: skip


def test_no_token_and_a_token_without_the_verb_are_refused(
    endpoint: Endpoint, export: tuple[Path, str], namespace: str
) -> None:
    directory, _ = export
    empty = endpoint.state / "empty.token"
    empty.write_text("not-a-token")
    bad = upload(endpoint, directory, empty, check=False)
    assert bad.returncode == 1 and "401" in bad.stderr and "Traceback" not in bad.stderr
    denied = upload(endpoint, directory, endpoint.denied, check=False)
    assert denied.returncode == 1 and "403" in denied.stderr, denied.stderr
    assert f"system:serviceaccount:{namespace}:stranger" in denied.stderr
    assert "airgapimports.gitops.kubepkg.dev" in denied.stderr
    assert not (endpoint.state / "uploads").exists() or not any(
        (endpoint.state / "uploads").iterdir()
    )


def test_an_allowed_upload_is_imported_into_store_and_mirrors(
    endpoint: Endpoint, export: tuple[Path, str]
) -> None:
    directory, url = export
    result: dict[str, Any] = json.loads(upload(endpoint, directory, endpoint.allowed).stdout)
    assert IMAGE in result["images"]
    assert "library/upload:1.0" in " ".join(result["tags"])
    assert url in result["repositories"]
    assert (mirror_dir(endpoint.state, url) / "HEAD").is_file()
    assert (endpoint.store / "airgap-imports.json").is_file()
    assert result["upload"]["resumed"] == 0
    # The uploaded copy is gone once imported.
    assert not any((endpoint.state / "uploads").iterdir())


def test_an_upload_cut_short_resumes(endpoint: Endpoint, export: tuple[Path, str]) -> None:
    directory, _ = export
    tarball = directory / "kubepkg.airgap.tar"
    half = tarball.stat().st_size // 2
    upload_id = manifest_sha256(directory)[:32]
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(endpoint.url).netloc)
    query = urllib.parse.urlencode(
        {"file": "kubepkg.airgap.tar", "offset": 0, "total": tarball.stat().st_size}
    )
    conn.request(
        "PUT",
        f"{PREFIX}{upload_id}?{query}",
        body=tarball.read_bytes()[:half],
        headers={"Authorization": f"Bearer {endpoint.allowed.read_text()}"},
    )
    answer = conn.getresponse()
    assert answer.status == 200, answer.read()
    assert json.loads(answer.read()) == {"file": "kubepkg.airgap.tar", "size": half,
                                         "complete": False}  # fmt: skip
    # Sending from the wrong place is refused with what is held.
    conn.request(
        "PUT",
        f"{PREFIX}{upload_id}?{query}",
        body=b"xx",
        headers={"Authorization": f"Bearer {endpoint.allowed.read_text()}"},
    )
    answer = conn.getresponse()
    assert answer.status == 409 and json.loads(answer.read())["size"] == half
    conn.close()
    result = json.loads(upload(endpoint, directory, endpoint.allowed).stdout)
    assert result["upload"]["resumed"] == half
    assert IMAGE in result["images"]


def test_a_controller_requiring_signatures_refuses_an_unsigned_upload_and_takes_a_signed_one(
    kube: Kube, namespace: str, endpoint: Endpoint, export: tuple[Path, str], tmp_path: Path
) -> None:
    from gitops_kubepkg import signature
    from gitops_kubepkg.airgap.trust import sign_export
    from tests.signing import ssh_key

    alice = ssh_key(tmp_path, "alice")
    allowed = signature.parse_allowed_signers(
        alice.allowed_signers_line("gitops-kubepkg-airgap"), "allowed_signers"
    )
    state, store = tmp_path / "signed-state", tmp_path / "signed-state" / "registry"
    state.mkdir()
    server = UploadServer(
        ("127.0.0.1", 0),
        Authorizer(kube, namespace),
        Uploads(state, store, allowed_signers=allowed),
    )
    server.start()
    try:
        signed = Endpoint(
            f"http://127.0.0.1:{server.port}", state, store, endpoint.allowed, endpoint.denied
        )
        directory, url = export
        refused = upload(signed, directory, signed.allowed, check=False)
        assert refused.returncode == 1, refused
        assert "not signed" in refused.stderr and "Traceback" not in refused.stderr
        assert not (store / "airgap-imports.json").exists(), "nothing recorded"
        assert not mirror_dir(state, url).exists(), "nothing fetched"

        sign_export(directory, signature.load_private_key(alice.private))
        result = json.loads(upload(signed, directory, signed.allowed).stdout)
        assert url in result["repositories"]
        record = json.loads((store / "airgap-imports.json").read_text())["imports"]
        assert alice.principal in record[-1]["signer"]
    finally:
        server.stop()
