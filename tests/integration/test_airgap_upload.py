"""``airgap import DIR --to-controller URL`` against the controller's upload endpoint, with the
real kube-apiserver judging the caller: a ServiceAccount token (TokenRequest API) is checked with
a TokenReview and a SubjectAccessReview on verb create of airgapimports.gitops.kubepkg.dev, so a
token without that RBAC gets 403 and no token 401. An allowed upload is imported into the store
and the mirrors as ``airgap import --store --state-dir`` does; an upload cut short resumes from
what the controller holds; the uploaded files are removed after the import.

The endpoint runs in this process (``UploadServer``, as ``controller --upload-listen`` starts it);
the CLI runs as a user runs it. With two replicas, two real ``controller`` processes electing a
leader: only the leader takes uploads, the standby answers 503 naming it, and the CLI behind a
Service-like proxy (a new connection may land on either) keeps asking until it reaches the leader.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.airgap.trust import manifest_sha256
from gitops_kubepkg.airgap.upload import PREFIX, Authorizer, Uploads, UploadServer
from gitops_kubepkg.controller.leader import API_VERSION as LEASE_API
from gitops_kubepkg.controller.process import LEASE_NAME
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.registry.client import RegistryClient
from gitops_kubepkg.sources.mirror import mirror_dir
from tests.integration.controllers import RunningController, wait_until
from tests.integration.git_servers import free_port
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


class RoundRobin:
    """A TCP proxy that sends each new connection to the next of ``ports`` in turn, as a
    Service spreads connections over its ready endpoints."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.turn = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            port = self.ports[self.turn % len(self.ports)]
            self.turn += 1
            upstream = socket.create_connection(("127.0.0.1", port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


def test_with_two_replicas_only_the_leader_takes_uploads(
    kube: Kube,
    kubeconfig: str,
    namespace: str,
    endpoint: Endpoint,
    export: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory, url = export
    monkeypatch.setenv("POD_NAMESPACE", namespace)  # uploads are granted in the controller's own
    ports = {"a": free_port(), "b": free_port()}

    def replica(name: str) -> RunningController:
        state = tmp_path / name
        return RunningController(
            kubeconfig, state,
            "-n", namespace, "--leader-election-namespace", namespace,
            "--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "1s",
            "--serve-registry", str(state / "registry"), "--registry-listen", "127.0.0.1:0",
            "--upload-listen", f"127.0.0.1:{ports[name]}",
            log=tmp_path / f"{name}.log",
        )  # fmt: skip

    with replica("a") as a, replica("b") as b:
        holder = wait_until(
            lambda: ((kube.get(LEASE_API, "Lease", LEASE_NAME, namespace) or {}).get("spec") or {})
            .get("holderIdentity"),
            60,
            "a leader",
        )  # fmt: skip
        (leader, leader_name), (standby, standby_name) = sorted(
            ((a, "a"), (b, "b")), key=lambda c: c[0].identity != holder
        )
        wait_until(lambda: leader.get("/readyz")[0] == 200, 60, "the leader to be ready")
        standby_url = f"http://127.0.0.1:{ports[standby_name]}"
        leader_url = f"http://127.0.0.1:{ports[leader_name]}"
        wait_until(lambda: listening(ports[standby_name]), 30, "the standby's upload port")

        # The standby refuses every upload request: 503, Retry-After, the leader named (once it
        # has read the Lease: before that it says "not elected yet").
        upload_id = manifest_sha256(directory)[:32]
        auth = {"Authorization": f"Bearer {endpoint.allowed.read_text()}"}

        def standby_names_the_leader() -> bool:
            request = urllib.request.Request(f"{standby_url}{PREFIX}{upload_id}", headers=auth)
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except urllib.error.HTTPError as e:
                return e.code == 503 and leader.identity in json.loads(e.read())["message"]
            except OSError:  # the standby's listener still starting: ask again
                return False
            return False

        wait_until(standby_names_the_leader, 30, "the standby to name the leader")
        conn = http.client.HTTPConnection(f"127.0.0.1:{ports[standby_name]}")
        for method, path in (("GET", ""), ("PUT", "?file=airgap.json&offset=0&total=2"),
                             ("POST", "/import")):  # fmt: skip
            conn.request(method, f"{PREFIX}{upload_id}{path}", body=b"{}" if method == "PUT" else None,
                         headers=auth)  # fmt: skip
            answer = conn.getresponse()
            body = json.loads(answer.read())
            assert answer.status == 503, (method, body)
            assert answer.getheader("Retry-After") == "2"
            assert f"replica {standby.identity} is a standby" in body["message"]
            assert f"the leader, {leader.identity}" in body["message"]
            conn.close()
            conn = http.client.HTTPConnection(f"127.0.0.1:{ports[standby_name]}")
        conn.close()
        # Without a token the standby says nothing about who leads.
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"{standby_url}{PREFIX}{upload_id}", timeout=10)
        assert anonymous.value.code == 401
        assert leader.identity not in anonymous.value.read().decode()
        refused = cli("airgap", "import", str(directory), "--to-controller", standby_url,
                      "--token-file", str(endpoint.allowed), "--leader-wait", "3s", check=False)  # fmt: skip
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert f"the leader, {leader.identity}" in refused.stderr, refused.stderr
        assert not (tmp_path / standby_name / "uploads").exists() or not any(
            (tmp_path / standby_name / "uploads").iterdir()
        )

        # Through a Service-like proxy whose first connection lands on the standby, the CLI
        # asks again and uploads to the leader; the import lands in the leader's store only.
        proxy = RoundRobin([ports[standby_name], ports[leader_name]])
        try:
            done = cli("airgap", "import", str(directory), "--to-controller",
                       f"http://127.0.0.1:{proxy.port}", "--token-file", str(endpoint.allowed),
                       "-o", "json")  # fmt: skip
        finally:
            proxy.close()
        assert "is a standby" in done.stderr and "asking again" in done.stderr
        assert IMAGE in json.loads(done.stdout)["images"]
        assert (tmp_path / leader_name / "registry" / "airgap-imports.json").is_file()
        assert not (tmp_path / standby_name / "registry" / "airgap-imports.json").exists()
        assert (mirror_dir(tmp_path / leader_name, url) / "HEAD").is_file()
        assert urllib.parse.urlsplit(leader_url).port == ports[leader_name]

        # The leader goes: the standby takes the Lease and then takes uploads.
        leader.signal(signal.SIGKILL)
        leader.wait(30)
        wait_until(
            lambda: answer_status(standby_url, upload_id, auth) == 200,
            60,
            "the new leader to take uploads",
            step=0.5,
        )


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def answer_status(url: str, upload_id: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=10)
    try:
        conn.request("GET", f"{PREFIX}{upload_id}", headers=headers)
        answer = conn.getresponse()
        answer.read()
        return answer.status
    except OSError:
        return 0
    finally:
        conn.close()
