"""Digests, the blob store, the tar reader and writer, manifests and URL redaction: pure and fast."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from gitops_kubepkg.airgap.importer import target_name
from gitops_kubepkg.errors import DigestMismatch, InputError, RegistryError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.airgaptar import TarReader, TarWriter
from gitops_kubepkg.registry.blobstore import BlobStore
from gitops_kubepkg.registry.client import redact
from gitops_kubepkg.registry.digest import Verifier, digest_bytes, parse_digest
from gitops_kubepkg.registry.manifest import filter_index, parse_manifest, parse_platform
from gitops_kubepkg.registry.repositories import Repositories, name_problem
from tests.integration.registry_peers import build_image, build_index


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sha256:abc", "wants 64 hex"),
        ("md5:" + "0" * 32, "unsupported digest algorithm"),
        ("sha256:" + "A" * 64, "not a digest"),
        ("nonsense", "not a digest"),
    ],
)
def test_malformed_digests_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_digest(text, where="here")


def test_verifier_names_what_failed_and_catches_extra_bytes_early() -> None:
    d = digest_bytes(b"hello")
    v = Verifier(d, 5, "thing")
    with pytest.raises(DigestMismatch, match="thing: more than the 5 bytes"):
        v.update(b"hello!")
    v = Verifier(d, 5, "thing")
    v.update(b"hellO")
    with pytest.raises(DigestMismatch, match="thing: content hashes to"):
        v.check()


def test_blob_store_ingests_verified_bytes_and_refuses_the_rest(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(9 << 20)  # more than two chunks
    good = digest_bytes(data)
    store.ingest(good, len(data), io.BytesIO(data).readinto, "good")
    store.sync()
    assert store.path(good).read_bytes() == data
    bad = digest_bytes(b"other")
    with pytest.raises(DigestMismatch, match="bad"):
        store.ingest(bad, len(data), io.BytesIO(data).readinto, "bad")
    store.sync()
    assert not store.has(bad)
    assert list(store.digests()) == [good]
    assert not any((tmp_path / "tmp").iterdir())


def test_blob_store_put_skips_what_is_there_and_cleans_dead_writers_temp_files(
    tmp_path: Path,
) -> None:
    store = BlobStore(tmp_path)
    d = digest_bytes(b"x")
    assert store.put(d, b"x", "x") is True
    assert store.put(d, b"x", "x") is False
    (tmp_path / "tmp").mkdir(exist_ok=True)
    (tmp_path / "tmp" / "999999999-dead.partial").write_bytes(b"half")
    (tmp_path / "tmp" / f"{os.getpid()}-alive.partial").write_bytes(b"half")
    assert store.clean_partials() == 1
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == [f"{os.getpid()}-alive.partial"]


def test_tar_writer_output_is_read_back_with_long_names(tmp_path: Path) -> None:
    long_name = "blobs/sha512/" + "a" * 128
    buf = io.BytesIO()
    w = TarWriter(buf)
    w.add_bytes("kubepkg.json", b"{}")
    with w.entry(long_name, 3) as e:
        e.write(b"abc")
    w.close()
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as t:
        assert t.getnames() == ["kubepkg.json", long_name]
    r = TarReader(io.BytesIO(buf.getvalue()), "t")
    first = r.next()
    assert first is not None and first.name == "kubepkg.json"
    second = r.next()
    assert second is not None and second.name == long_name
    assert r.read_all(10) == b"abc"
    assert r.next() is None


def test_tar_reader_reads_gnu_long_names_from_the_tar_tool() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo("d/" + "b" * 150)
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    r = TarReader(io.BytesIO(buf.getvalue()), "t")
    entry = r.next()
    assert entry is not None and entry.name == "d/" + "b" * 150


def test_platform_filter_rewrites_the_index_only_when_it_drops_something() -> None:
    index = build_index(
        {"linux/amd64": build_image([10]), "linux/arm64/v8": build_image([10], arch="arm64")}
    )
    parsed = parse_manifest(index.raw, index.media_type, index.digest, "idx")
    both = filter_index(parsed, [parse_platform("linux/amd64"), parse_platform("linux/arm64")])
    assert both.raw == index.raw
    arm = filter_index(parsed, [parse_platform("linux/arm64")])
    assert arm.digest != index.digest
    assert [c.platform.architecture for c in arm.children if c.platform] == ["arm64"]
    assert json.loads(arm.raw)["manifests"][0]["platform"]["variant"] == "v8"
    with pytest.raises(InputError, match="no manifest for platform linux/s390x"):
        filter_index(parsed, [parse_platform("linux/s390x")])


def test_manifest_declaring_another_type_than_its_descriptor_is_refused() -> None:
    img = build_image([10])
    with pytest.raises(RegistryError, match="declares mediaType"):
        parse_manifest(img.raw, mediatype.DOCKER_MANIFEST, img.digest, "m")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:s3cret@r.example.com/v2/", "https://r.example.com/v2/"),
        (
            "https://s3.example.com/b?X-Amz-Signature=abc&X-Amz-Credential=k&part=1",
            "https://s3.example.com/b?X-Amz-Signature=***&X-Amz-Credential=***&part=1",
        ),
        ("https://auth.example.com/token?scope=repo&access_token=t0k", "access_token=***"),
    ],
)
def test_urls_in_errors_never_carry_secrets(url: str, shown: str) -> None:
    assert shown in redact(url)
    assert "s3cret" not in redact(url) and "t0k" not in redact(url)


def test_repository_names_keep_the_host_and_refuse_traversal(tmp_path: Path) -> None:
    assert name_problem("docker.io/library/nginx") is None
    assert name_problem("127.0.0.1:5000/team/app") is None
    assert name_problem("docker.io/../etc") is not None
    assert name_problem("/abs") is not None
    refs = Repositories(tmp_path)
    d = digest_bytes(b"m")
    refs.link_manifest("docker.io/library/nginx", d, mediatype.OCI_MANIFEST)
    refs.set_tag("docker.io/library/nginx", "1.27", d)
    assert refs.resolve("docker.io/library/nginx", "1.27") == d
    assert refs.names() == ["docker.io/library/nginx"]
    with pytest.raises(InputError):
        refs.set_tag("docker.io/library/nginx", "../x", d)


def test_target_names_make_a_host_port_a_valid_path_component() -> None:
    assert target_name("127.0.0.1:5000/a/b", "mirror") == "mirror/127.0.0.1-5000/a/b"
    assert target_name("docker.io/library/nginx", "") == "docker.io/library/nginx"
