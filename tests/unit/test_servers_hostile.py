"""A hostile client against our three servers, in raw HTTP over a socket.

Webhooks, monitoring and the registry run for real on loopback (the registry over a store filled by
the real importer), with short deadlines and a small connection cap. Every request here is written
byte by byte, the way a proxy or an attacker would send it, and the answers are read back off the
same connection, so a body that the server took for the next request shows up as an extra answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitops_kubepkg.airgap.importer import StoreSink, import_tarball
from gitops_kubepkg.controller.metrics import Metrics
from gitops_kubepkg.controller.monitoring import MonitoringServer
from gitops_kubepkg.errors import InputError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.server import Htpasswd, RegistryServer, tls_context
from gitops_kubepkg.serving import HardenedServer, Limits
from gitops_kubepkg.sources.webhook import MAX_BODY, WebhookServer
from tests.integration.registry_peers import SampleImage, build_image, build_index
from tests.unit.test_airgap_bad_input import Entry, good_entries, kubepkg_json, tar_bytes

LIMITS = Limits(
    header_timeout=1.0, body_timeout=2.0, idle_timeout=5.0, io_timeout=10.0, max_connections=4
)
SECRET = b"hook-token"
WEB = build_index(
    {"linux/amd64": build_image([3000]), "linux/arm64": build_image([10], arch="arm64")}
)
OTHER = build_image([2000], seed="other")
# A Docker manifest list (not an OCI index) of two Docker images.
_AMD, _ARM = build_image([100], docker=True), build_image([50], arch="arm64", docker=True)
DOCKER_LIST = SampleImage(
    mediatype.DOCKER_LIST,
    json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.DOCKER_LIST,
            "manifests": [
                {**_AMD.descriptor.to_json(), "platform": {"os": "linux", "architecture": "amd64"}},
                {**_ARM.descriptor.to_json(), "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        }
    ).encode(),
    {},
    [_AMD, _ARM],
)
WEB_REF, OTHER_REF, LIST_REF = "example.com/web:1", "example.com/other:1", "example.com/list:1"

# -- a raw HTTP client --------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def exchange(port: int, data: bytes, *, tls: ssl.SSLContext | None = None) -> list[Answer]:
    """Send ``data`` as is, then read every answer until the server closes the connection (or
    stays silent for 5 s, which counts as keeping it open: the last Answer then has status 0)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock = tls.wrap_socket(raw, server_hostname="localhost") if tls else raw
    with sock:
        sock.sendall(data)
        f = sock.makefile("rb")
        answers: list[Answer] = []
        try:
            while line := f.readline():
                status = int(line.split()[1])
                headers: dict[str, str] = {}
                while (h := f.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                if status == 100:
                    answers.append(Answer(100, headers, b""))
                    continue
                body = f.read(int(headers.get("content-length", "0")))
                answers.append(Answer(status, headers, body))
        except TimeoutError:
            answers.append(Answer(0, {}, b""))  # still open, nothing more said
        return answers


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed the connection: end of stream, or a reset (unread request
    bytes make the kernel reset instead of close)."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def request(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


# -- the servers --------------------------------------------------------------------------------


@dataclass
class Hooks:
    server: WebhookServer
    triggered: list[tuple[str, str]]
    lookups: list[tuple[str, str]]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    triggered: list[tuple[str, str]] = []
    lookups: list[tuple[str, str]] = []

    def lookup(namespace: str, name: str) -> bytes | None:
        lookups.append((namespace, name))
        return SECRET if (namespace, name) == ("team", "web") else None

    def trigger(namespace: str, name: str) -> bool:
        triggered.append((namespace, name))
        return True

    server = WebhookServer(("127.0.0.1", 0), lookup, trigger, limits=LIMITS)
    server.start()
    try:
        yield Hooks(server, triggered, lookups)
    finally:
        server.stop()


@pytest.fixture
def monitoring() -> Iterator[MonitoringServer]:
    server = MonitoringServer(
        ("127.0.0.1", 0), Metrics(), healthy=lambda: [], ready=lambda: [], limits=LIMITS
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    for image, ref in ((WEB, WEB_REF), (OTHER, OTHER_REF), (DOCKER_LIST, LIST_REF)):
        entries = good_entries(image, ref)
        entries[0] = Entry("kubepkg.json", kubepkg_json({ref: str(image.digest)}))
        import_tarball(io.BytesIO(tar_bytes(entries)), f"{ref}.tar", StoreSink(root))
    return root


@pytest.fixture
def registry(store: Path) -> Iterator[RegistryServer]:
    with RegistryServer(store, limits=LIMITS).start() as server:
        yield server


def sign(body: bytes) -> dict[str, str]:
    return {
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest(),
    }


# -- Content-Length ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "+5", "9" * 5000, "0x10"])
def test_a_content_length_that_is_not_a_number_is_400_and_the_connection_closes(
    hooks: Hooks, registry: RegistryServer, length: str
) -> None:
    for port, method, path in (
        (hooks.server.port, "POST", "/hooks/team/web"),
        (registry.address[1], "GET", "/v2/"),
    ):
        answers = exchange(port, request(method, path, {"Content-Length": length}) + b"x" * 64)
        assert [a.status for a in answers] == [400], (method, length)
        assert answers[0].headers["connection"] == "close"
    assert hooks.lookups == [] and hooks.triggered == []


def test_two_different_content_lengths_are_400(registry: RegistryServer) -> None:
    data = b"GET /v2/ HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc"
    assert [a.status for a in exchange(registry.address[1], data)] == [400]


def test_an_oversize_webhook_body_is_413_before_it_is_read(hooks: Hooks) -> None:
    head = request("POST", "/hooks/team/web", {"Content-Length": str(MAX_BODY + 1)})
    answers = exchange(hooks.server.port, head + b"{}")  # the 25 MiB never come
    assert [a.status for a in answers] == [413]
    assert hooks.triggered == []


def test_both_transfer_encoding_and_content_length_is_400(hooks: Hooks) -> None:
    body = b'{"ref": "x"}'
    head = {**sign(body), "Transfer-Encoding": "chunked", "Content-Length": str(len(body))}
    answers = exchange(hooks.server.port, request("POST", "/hooks/team/web", head, chunked(body)))
    assert [a.status for a in answers] == [400]
    assert hooks.triggered == []


def test_an_unknown_transfer_coding_is_501(hooks: Hooks) -> None:
    head = {**sign(b""), "Transfer-Encoding": "gzip, chunked"}
    answers = exchange(hooks.server.port, request("POST", "/hooks/team/web", head, b"0\r\n\r\n"))
    assert [a.status for a in answers] == [501]


# -- bodies are never read as the next request ---------------------------------------------------

SMUGGLED = request("GET", "/v2/_catalog")


def test_a_body_on_a_get_is_skipped_not_read_as_the_next_request(
    registry: RegistryServer,
) -> None:
    first = request("GET", "/v2/", {"Content-Length": str(len(SMUGGLED))}, SMUGGLED)
    second = request("GET", "/v2/", {"Connection": "close"})
    answers = exchange(registry.address[1], first + second)
    assert [(a.status, a.body) for a in answers] == [(200, b"{}"), (200, b"{}")]


def test_a_body_on_a_get_bigger_than_the_server_drains_is_413_and_closes(
    monitoring: MonitoringServer,
) -> None:
    body = SMUGGLED + b"x" * (70 * 1024)
    data = request("GET", "/healthz", {"Content-Length": str(len(body))}, body)
    answers = exchange(monitoring.port, data)
    assert [a.status for a in answers] == [413]
    assert answers[0].headers["connection"] == "close"


def test_a_chunked_body_on_a_refused_patch_closes_the_connection(
    registry: RegistryServer,
) -> None:
    refused = request(
        "PATCH",
        "/v2/example.com/web/blobs/uploads/x",
        {"Transfer-Encoding": "chunked"},
        chunked(SMUGGLED),
    )
    answers = exchange(registry.address[1], refused + request("GET", "/v2/_catalog"))
    assert [a.status for a in answers] == [405]
    assert answers[0].headers["connection"] == "close"


def test_a_chunked_body_on_a_get_to_monitoring_closes_the_connection(
    monitoring: MonitoringServer,
) -> None:
    data = request("GET", "/healthz", {"Transfer-Encoding": "chunked"}, chunked(SMUGGLED))
    answers = exchange(monitoring.port, data + request("GET", "/metrics"))
    assert [a.status for a in answers] == [200]


def test_a_chunked_webhook_is_decoded_and_verified(hooks: Hooks) -> None:
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    head = {**sign(body), "Transfer-Encoding": "chunked", "Connection": "close"}
    # Two chunks, an extension and a trailer: all legal.
    data = (
        f"{len(body) - 5:x};ext=1\r\n".encode()
        + body[:-5]
        + b"\r\n5\r\n"
        + body[-5:]
        + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    answers = exchange(hooks.server.port, request("POST", "/hooks/team/web", head, data))
    assert [a.status for a in answers] == [202]
    assert hooks.triggered == [("team", "web")]


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n", b"-1\r\n\r\n", b"1" * 2000 + b"\r\n"],
    ids=["not hex", "chunk longer than its size", "negative", "endless size line"],
)
def test_a_malformed_chunked_webhook_is_400_and_closes(hooks: Hooks, body: bytes) -> None:
    head = {**sign(b""), "Transfer-Encoding": "chunked"}
    answers = exchange(hooks.server.port, request("POST", "/hooks/team/web", head, body))
    assert [a.status for a in answers] == [400]
    assert hooks.triggered == []


def test_an_oversize_chunked_webhook_is_413(hooks: Hooks) -> None:
    head = {**sign(b""), "Transfer-Encoding": "chunked"}
    data = f"{MAX_BODY + 1:x}\r\n".encode() + b"x" * 1000
    answers = exchange(hooks.server.port, request("POST", "/hooks/team/web", head, data))
    assert [a.status for a in answers] == [413]


def test_expect_100_continue_is_not_granted_to_an_unknown_webhook(hooks: Hooks) -> None:
    head = {"Content-Length": "100", "Expect": "100-continue"}
    answers = exchange(hooks.server.port, request("POST", "/hooks/team/nothere", head))
    assert [a.status for a in answers] == [404]  # no "100 Continue" before it


def test_expect_100_continue_is_granted_when_the_body_is_read(hooks: Hooks) -> None:
    body = b'{"ref": "refs/heads/main"}'
    head = {**sign(body), "Content-Length": str(len(body)), "Expect": "100-continue"}
    port = hooks.server.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request("POST", "/hooks/team/web", head))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        assert sock.recv(100).startswith(b"HTTP/1.1 202 ")


# -- webhooks: one answer for unknown and unauthorised -------------------------------------------


def test_unknown_and_unauthorised_webhooks_get_the_same_answer(hooks: Hooks) -> None:
    body = b'{"ref": "refs/heads/main"}'
    wrong = {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64}

    def post(path: str, headers: dict[str, str]) -> Answer:
        data = request("POST", path, {**headers, "Content-Length": str(len(body))}, body)
        answers = exchange(hooks.server.port, data + request("GET", "/healthz"))
        assert len(answers) == 1
        answers[0].headers.pop("date")
        answers[0].headers.pop("content-length")  # the message names the path
        return answers[0]

    unknown = post("/hooks/team/nothere", sign(body))
    unsigned = post("/hooks/team/web", {"X-GitHub-Event": "push"})
    wrongly_signed = post("/hooks/team/web", wrong)
    assert unknown.status == 404
    assert unknown.headers == unsigned.headers == wrongly_signed.headers
    message = json.loads(unknown.body)["message"]
    assert message.replace("nothere", "web") == json.loads(unsigned.body)["message"]
    assert unsigned.body == wrongly_signed.body
    assert hooks.triggered == []
    answers = exchange(
        hooks.server.port,
        request("POST", "/hooks/team/web", {**sign(body), "Content-Length": str(len(body))}, body)
        + request("GET", "/healthz", {"Connection": "close"}),
    )
    assert [a.status for a in answers] == [202, 200]
    assert hooks.triggered == [("team", "web")]


# -- slowloris ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["webhooks", "monitoring", "registry"])
def test_half_sent_requests_beyond_the_cap_are_cut_and_a_normal_client_is_answered(
    which: str, hooks: Hooks, monitoring: MonitoringServer, registry: RegistryServer
) -> None:
    port = {
        "webhooks": hooks.server.port,
        "monitoring": monitoring.port,
        "registry": registry.address[1],
    }[which]
    path = "/v2/" if which == "registry" else "/healthz"
    slow = []
    for _ in range(2 * LIMITS.max_connections):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
        slow.append(s)
    try:
        answers = exchange(port, request("GET", path, {"Connection": "close"}))
        assert [a.status for a in answers] == [200]
        for s in slow:  # every half-sent request was cut at the header deadline
            assert closed_by_server(s)
    finally:
        for s in slow:
            s.close()


def test_at_the_cap_a_new_client_makes_room_by_cutting_a_waiting_connection() -> None:
    # Deadlines far beyond the client's 10 s timeout: only eviction can let the client in.
    limits = Limits(header_timeout=600, idle_timeout=600, max_connections=4)
    server = MonitoringServer(
        ("127.0.0.1", 0), Metrics(), healthy=lambda: [], ready=lambda: [], limits=limits
    )
    server.start()
    held = []
    try:
        for i in range(limits.max_connections):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            if i % 2:  # half-sent headers
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:  # a finished request, then idle on the kept-alive connection
                s.sendall(request("GET", "/healthz"))
                reply = b""
                while not reply.endswith(b"\r\n\r\nok\n"):
                    reply += s.recv(1024)
                assert reply.startswith(b"HTTP/1.1 200 ")
            held.append(s)
        answers = exchange(server.port, request("GET", "/healthz", {"Connection": "close"}))
        assert [a.status for a in answers] == [200]
        cut = 0
        for s in held:  # room was made by cutting waiting ones, not all of them
            s.setblocking(False)
            try:
                assert closed_by_server(s)
                cut += 1
            except BlockingIOError:
                pass
        assert 1 <= cut < len(held)
    finally:
        for s in held:
            s.close()
        server.stop()


def test_a_trickled_request_is_cut_at_the_header_deadline_however_slowly_it_comes(
    monitoring: MonitoringServer,
) -> None:
    with socket.create_connection(("127.0.0.1", monitoring.port), timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        sent = 0
        try:
            for _ in range(100):  # a byte every 0.2 s: each read is quick, the whole is not
                s.sendall(b"X")
                sent += 1
                s.settimeout(0.2)
                try:
                    if s.recv(1) == b"":
                        break
                except TimeoutError:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < 100, "the server kept reading a header that never ended"


# -- the registry --------------------------------------------------------------------------------


def test_a_5000_digit_range_is_416(registry: RegistryServer) -> None:
    layer = next(iter(OTHER.blobs))
    path = f"/v2/example.com/other/blobs/{layer}"
    for header in ("bytes=" + "9" * 5000 + "-", "bytes=0-" + "1" * 5000, "bytes=-" + "2" * 5000):
        answers = exchange(
            registry.address[1], request("GET", path, {"Range": header, "Connection": "close"})
        )
        assert [a.status for a in answers] == [416]
        assert answers[0].headers["content-range"] == f"bytes */{len(OTHER.blobs[layer])}"


def test_a_blob_is_served_only_through_a_repository_that_references_it(
    registry: RegistryServer,
) -> None:
    port = registry.address[1]
    web_layer = next(d for d in WEB.all_blobs() if d not in {c.digest for c in WEB.children})
    ok = exchange(
        port, request("GET", f"/v2/example.com/web/blobs/{web_layer}", {"Connection": "close"})
    )
    assert [a.status for a in ok] == [200]
    assert ok[0].body == WEB.all_blobs()[web_layer]
    for path in (
        f"/v2/example.com/other/blobs/{web_layer}",  # a repository that exists, not its blob
        f"/v2/example.com/other/blobs/{WEB.digest}",  # nor its manifest through blobs/
    ):
        answers = exchange(port, request("GET", path, {"Connection": "close"}))
        assert [a.status for a in answers] == [404]
        assert json.loads(answers[0].body)["errors"][0]["code"] == "BLOB_UNKNOWN"
    child = WEB.children[0].digest  # an index child's manifest is reachable as a blob
    assert [
        a.status
        for a in exchange(
            port, request("GET", f"/v2/example.com/web/blobs/{child}", {"Connection": "close"})
        )
    ] == [200]


@pytest.mark.parametrize(
    "accept", [mediatype.OCI_MANIFEST, f"{mediatype.OCI_INDEX}, {mediatype.OCI_MANIFEST}", ""]
)
def test_a_manifest_list_by_digest_comes_back_as_stored_whatever_accept_says(
    registry: RegistryServer, accept: str
) -> None:
    headers = {"Connection": "close", **({"Accept": accept} if accept else {})}
    path = f"/v2/example.com/list/manifests/{DOCKER_LIST.digest}"
    answers = exchange(registry.address[1], request("GET", path, headers))
    assert [a.status for a in answers] == [200]
    assert answers[0].body == DOCKER_LIST.raw
    assert answers[0].headers["content-type"] == mediatype.DOCKER_LIST
    assert answers[0].headers["docker-content-digest"] == str(DOCKER_LIST.digest)


def test_a_manifest_list_by_tag_still_resolves_for_a_client_without_index_support(
    registry: RegistryServer,
) -> None:
    headers = {"Connection": "close", "Accept": mediatype.DOCKER_MANIFEST}
    answers = exchange(
        registry.address[1], request("GET", "/v2/example.com/list/manifests/1", headers)
    )
    assert [(a.status, a.body) for a in answers] == [(200, _AMD.raw)]


def test_an_index_by_tag_whose_child_type_is_not_accepted_either_comes_back_as_stored(
    registry: RegistryServer,
) -> None:
    headers = {"Connection": "close", "Accept": mediatype.OCI_MANIFEST}
    answers = exchange(
        registry.address[1], request("GET", "/v2/example.com/list/manifests/1", headers)
    )
    assert [(a.status, a.body) for a in answers] == [(200, DOCKER_LIST.raw)]
    assert answers[0].headers["content-type"] == mediatype.DOCKER_LIST


# -- registry auth and TLS ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.fail("htpasswd is missing: scripts/install-system-deps installs apache2-utils")
    path = tmp_path_factory.mktemp("auth") / "htpasswd"
    out = subprocess.run([tool, "-nbB", "puller", "s3cret"], check=True, capture_output=True)
    path.write_bytes(out.stdout)
    return path


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_htpasswd_basic_auth_guards_every_endpoint(store: Path, htpasswd: Path) -> None:
    with RegistryServer(store, users=Htpasswd(htpasswd), limits=LIMITS).start() as server:
        port = server.address[1]
        for path in ("/v2/", f"/v2/example.com/web/manifests/{WEB.digest}", "/v2/_catalog"):
            for headers in ({}, basic("puller", "wrong"), basic("nobody", "s3cret")):
                answers = exchange(port, request("GET", path, {**headers, "Connection": "close"}))
                assert [a.status for a in answers] == [401], (path, headers)
                assert answers[0].headers["www-authenticate"].startswith("Basic realm=")
            good = {**basic("puller", "s3cret"), "Connection": "close"}
            assert [a.status for a in exchange(port, request("GET", path, good))] == [200]


@pytest.mark.parametrize(
    "text", ["puller:plain", "puller:{SHA}abc=", "no-colon", "puller:$apr1$x$y"]
)
def test_htpasswd_entries_that_are_not_bcrypt_are_refused_naming_the_line(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(f"# users\n{text}\n")
    with pytest.raises(InputError, match=rf"^{path}:2: want USER:BCRYPT-HASH"):
        Htpasswd(path)


def test_tls_serves_https_and_a_client_that_never_handshakes_does_not_block_others(
    store: Path, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    client = ssl.create_default_context(cafile=str(cert))
    with RegistryServer(store, tls=tls_context(cert, key), limits=LIMITS).start() as server:
        assert server.url.startswith("https://")
        port = server.address[1]
        silent = [
            socket.create_connection(("127.0.0.1", port)) for _ in range(LIMITS.max_connections)
        ]
        try:
            answers = exchange(port, request("GET", "/v2/", {"Connection": "close"}), tls=client)
            assert [(a.status, a.body) for a in answers] == [(200, b"{}")]
        finally:
            for s in silent:
                s.close()


def test_a_server_refuses_to_start_on_a_bad_certificate(store: Path, tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    with pytest.raises(InputError, match="--tls-cert"):
        tls_context(tmp_path / "cert.pem", tmp_path / "cert.pem")


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_registry_serve_with_htpasswd_and_tls_as_a_process(
    store: Path, htpasswd: Path, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    argv = [sys.executable, "-m", "gitops_kubepkg", "registry", "serve", "--root", str(store)]
    argv += ["--listen", "127.0.0.1:0", "--htpasswd", str(htpasswd)]
    argv += ["--tls-cert", str(cert), "--tls-key", str(key)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "on https://127.0.0.1:" in line, line
        port = int(line.split("https://127.0.0.1:")[1].split()[0])
        client = ssl.create_default_context(cafile=str(cert))
        good = {**basic("puller", "s3cret"), "Connection": "close"}
        path = f"/v2/example.com/web/manifests/{WEB.digest}"
        answers = exchange(port, request("GET", path, good), tls=client)
        assert [(a.status, a.body) for a in answers] == [(200, WEB.raw)]
        answers = exchange(port, request("GET", path, {"Connection": "close"}), tls=client)
        assert [a.status for a in answers] == [401]
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tls-cert", "{tmp}/cert.pem"], "--tls-cert and --tls-key go together"),
        (["--htpasswd", "{tmp}/missing"], "--htpasswd {tmp}/missing: cannot read"),
        (["--htpasswd", "{tmp}/plain"], "{tmp}/plain:1: want USER:BCRYPT-HASH"),
        (["--tls-cert", "{tmp}/plain", "--tls-key", "{tmp}/plain"], "--tls-cert {tmp}/plain"),
    ],
)
def test_registry_serve_bad_auth_or_tls_flags_are_one_line(
    store: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    (tmp_path / "plain").write_text("puller:plain\n")
    argv = ["registry", "serve", "--root", str(store), "--listen", "127.0.0.1:0"]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    result = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message.replace("{tmp}", str(tmp_path)) in lines[0], lines


def test_every_server_is_a_hardened_server(
    hooks: Hooks, monitoring: MonitoringServer, registry: RegistryServer
) -> None:
    assert isinstance(hooks.server, HardenedServer)
    assert isinstance(monitoring, HardenedServer)
    assert isinstance(registry._httpd, HardenedServer)
