"""The pull-only server against real clients: skopeo copies out of it with digests unchanged, and
raw HTTP checks the distribution spec's corners (Range, paging, Accept, ns=, error codes, 405)."""

from __future__ import annotations

import http.client
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gitops_kubepkg.airgap.importer import StoreSink, import_tarball
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.digest import digest_bytes
from gitops_kubepkg.registry.server import RegistryServer
from tests.integration.registry_peers import build_image, build_index, needs_peers, skopeo
from tests.unit.test_airgap_bad_input import Entry, good_entries, kubepkg_json, tar_bytes

pytestmark = pytest.mark.integration

WEB = build_index(
    {
        "linux/amd64": build_image([2000, 3 << 20]),
        "linux/arm64/v8": build_image([4000], arch="arm64"),
    }
)
CLI = build_image([1000], docker=True)
WEB_REF = "docker.io/library/web:1.0"
CLI_REF = "quay.io/tools/cli:v2"


def two_image_tar() -> bytes:
    web, cli = good_entries(WEB, WEB_REF), good_entries(CLI, CLI_REF)
    index = json.loads(web[-2].data)
    index["manifests"] += json.loads(cli[-2].data)["manifests"]
    head = Entry("kubepkg.json", kubepkg_json({WEB_REF: str(WEB.digest), CLI_REF: str(CLI.digest)}))
    blobs = web[1:-2] + cli[1:-2]
    return tar_bytes([head, *blobs, Entry("index.json", json.dumps(index).encode()), web[-1]])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    store = tmp_path_factory.mktemp("store")
    import_tarball(io.BytesIO(two_image_tar()), "two.tar", StoreSink(store))
    for i in range(7):
        (store / "repositories" / "docker.io/library/web" / "_tags" / f"extra-{i}").write_text(
            str(WEB.digest)
        )
    with RegistryServer(store).start() as srv:
        yield srv


def request(
    srv: RegistryServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = srv.address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def error_code(body: bytes) -> str:
    return str(json.loads(body)["errors"][0]["code"])


@needs_peers
def test_skopeo_copies_every_platform_out_with_identical_digests(
    server: RegistryServer, tmp_path: Path
) -> None:
    host = server.url.removeprefix("http://")
    src = f"docker://{host}/docker.io/library/web:1.0"
    skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        "--src-tls-verify=false",
        src,
        f"oci:{tmp_path}/web:1.0",
    )
    layout = tmp_path / "web"
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == str(WEB.digest)
    for digest, data in WEB.all_blobs().items():
        assert (layout / "blobs" / digest.algorithm / digest.hex).read_bytes() == data
    raw = skopeo("inspect", "--raw", "--tls-verify=false", src).stdout.encode()
    assert digest_bytes(raw) == WEB.digest


@needs_peers
def test_skopeo_reads_a_docker_schema2_image(server: RegistryServer) -> None:
    host = server.url.removeprefix("http://")
    out = skopeo("inspect", "--tls-verify=false", f"docker://{host}/quay.io/tools/cli:v2").stdout
    assert json.loads(out)["Digest"] == str(CLI.digest)


def test_version_check_answers_with_the_api_header(server: RegistryServer) -> None:
    status, headers, _ = request(server, "GET", "/v2/")
    assert status == 200
    assert headers["docker-distribution-api-version"] == "registry/2.0"


def test_containerd_mirror_requests_name_the_host_in_ns(server: RegistryServer) -> None:
    status, headers, body = request(
        server,
        "GET",
        "/v2/library/web/manifests/1.0?ns=docker.io",
        {"Accept": mediatype.OCI_INDEX},
    )
    assert status == 200
    assert headers["docker-content-digest"] == str(WEB.digest)
    assert body == WEB.raw
    assert request(server, "GET", "/v2/tools/cli/manifests/v2?ns=quay.io")[0] == 200


def test_docker_hub_short_names_resolve_without_ns(server: RegistryServer) -> None:
    status, _, body = request(server, "GET", "/v2/web/manifests/1.0")
    assert status == 200 and body == WEB.raw


def test_a_client_without_index_support_gets_the_amd64_manifest(server: RegistryServer) -> None:
    status, headers, body = request(
        server,
        "GET",
        "/v2/docker.io/library/web/manifests/1.0",
        {"Accept": mediatype.OCI_MANIFEST},
    )
    assert status == 200
    assert body == WEB.children[0].raw
    assert headers["content-type"] == mediatype.OCI_MANIFEST


def test_head_manifest_by_digest_has_length_and_no_body(server: RegistryServer) -> None:
    status, headers, body = request(
        server, "HEAD", f"/v2/docker.io/library/web/manifests/{WEB.digest}"
    )
    assert status == 200
    assert int(headers["content-length"]) == len(WEB.raw)
    assert body == b""


def test_blob_range_requests_return_the_slice(server: RegistryServer) -> None:
    digest, data = max(WEB.all_blobs().items(), key=lambda kv: len(kv[1]))
    path = f"/v2/docker.io/library/web/blobs/{digest}"
    status, headers, body = request(server, "GET", path, {"Range": "bytes=100-1099"})
    assert status == 206
    assert body == data[100:1100]
    assert headers["content-range"] == f"bytes 100-1099/{len(data)}"
    status, _, body = request(server, "GET", path, {"Range": "bytes=-10"})
    assert status == 206 and body == data[-10:]
    status, headers, _ = request(server, "GET", path, {"Range": f"bytes={len(data)}-"})
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(data)}"


def test_whole_blobs_come_back_byte_for_byte_to_many_clients(server: RegistryServer) -> None:
    blobs = list(WEB.all_blobs().items())

    def fetch(i: int) -> bool:
        digest, data = blobs[i % len(blobs)]
        status, _, body = request(server, "GET", f"/v2/docker.io/library/web/blobs/{digest}")
        return status == 200 and body == data

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(fetch, range(64)))


def test_tags_list_pages_with_n_and_last(server: RegistryServer) -> None:
    seen: list[str] = []
    path = "/v2/docker.io/library/web/tags/list?n=3"
    while path:
        status, headers, body = request(server, "GET", path)
        assert status == 200
        page = json.loads(body)
        assert page["name"] == "docker.io/library/web"
        assert len(page["tags"]) <= 3
        seen += page["tags"]
        link = headers.get("link", "")
        path = link[1 : link.index(">")] if link else ""
    assert seen == sorted(["1.0", *(f"extra-{i}" for i in range(7))])


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v2/nope/nothing/manifests/1.0", 404, "NAME_UNKNOWN"),
        ("/v2/docker.io/library/web/manifests/2.0", 404, "MANIFEST_UNKNOWN"),
        (f"/v2/docker.io/library/web/blobs/sha256:{'0' * 64}", 404, "BLOB_UNKNOWN"),
        ("/v2/docker.io/library/web/blobs/sha256:abc", 400, "DIGEST_INVALID"),
        ("/v2/docker.io/library/web/tags/list?n=x", 400, "PAGINATION_NUMBER_INVALID"),
    ],
    ids=["unknown name", "unknown tag", "unknown blob", "bad digest", "bad page size"],
)
def test_errors_use_the_spec_codes(
    server: RegistryServer, path: str, status: int, code: str
) -> None:
    got, headers, body = request(server, "GET", path)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert error_code(body) == code


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_every_write_method_is_unsupported(server: RegistryServer, method: str) -> None:
    for path in (
        "/v2/docker.io/library/web/blobs/uploads/",
        "/v2/docker.io/library/web/manifests/1.0",
    ):
        status, _, body = request(server, method, path)
        assert status == 405
        assert error_code(body) == "UNSUPPORTED"
