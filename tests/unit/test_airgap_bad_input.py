"""Every bad tarball gets an error naming the entry and leaves the store as it was.

The tarballs are built here in memory (a valid one, then one thing broken), imported into a real
store in a temp directory, and the store is checked afterwards: no repository, manifest link or tag
written, and every blob that is there hashes to its name.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitops_kubepkg.airgap.importer import StoreSink, import_tarball
from gitops_kubepkg.errors import GitopsKubepkgError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.blobstore import BlobStore
from gitops_kubepkg.registry.digest import digest_bytes
from gitops_kubepkg.registry.layout import OCI_LAYOUT, blob_name, index_json, named
from tests.integration.registry_peers import SampleImage, build_image, build_index

REPO = "registry.example.com/team/web"


@dataclass
class Entry:
    name: str
    data: bytes
    kind: bytes = tarfile.REGTYPE
    linkname: str = ""
    size: int | None = None


def kubepkg_json(images: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "apiVersion": "octohelm.tech/v1alpha1",
            "kind": "KubePkg",
            "metadata": {"name": "demo"},
            "spec": {"version": "1.0.0", "images": images, "manifests": {}},
        }
    ).encode()


def good_entries(image: SampleImage, ref: str = f"{REPO}:1.0") -> list[Entry]:
    entries = [Entry("kubepkg.json", kubepkg_json({ref: str(image.digest)}))]
    entries.append(Entry(blob_name(image.digest), image.raw))
    for child in image.children:
        entries.append(Entry(blob_name(child.digest), child.raw))
    seen = {image.digest, *(c.digest for c in image.children)}
    for digest, data in image.all_blobs().items():
        if digest not in seen:
            entries.append(Entry(blob_name(digest), data))
    entries.append(Entry("index.json", index_json([named(image.descriptor, ref)])))
    entries.append(Entry("oci-layout", OCI_LAYOUT))
    return entries


def tar_bytes(entries: list[Entry], *, end: bool = True) -> bytes:
    buf = io.BytesIO()
    for e in entries:
        info = tarfile.TarInfo(e.name)
        info.type = e.kind
        info.linkname = e.linkname
        info.size = len(e.data) if e.size is None else e.size
        buf.write(info.tobuf(tarfile.PAX_FORMAT))
        if e.kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
            buf.write(e.data)
            buf.write(bytes(-len(e.data) % 512))
    if end:
        buf.write(bytes(1024))
    return buf.getvalue()


def run_import(store: Path, data: bytes) -> None:
    import_tarball(io.BytesIO(data), "t.tar", StoreSink(store))


def assert_store_unchanged(store: Path) -> None:
    """No repository, link or tag; every blob present is complete and verified."""
    repos = store / "repositories"
    assert not repos.exists() or not any(p.is_file() for p in repos.rglob("*"))
    blobs = BlobStore(store)
    for digest in blobs.digests():
        assert digest_bytes(blobs.path(digest).read_bytes()) == digest
    tmp = store / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())


IMAGE = build_index(
    {"linux/amd64": build_image([3000, 70000]), "linux/arm64": build_image([500], arch="arm64")}
)


def _swap_first_two(entries: list[Entry]) -> list[Entry]:
    return [entries[1], entries[0], *entries[2:]]


def _corrupt_layer(entries: list[Entry]) -> list[Entry]:
    layer = next(e for e in entries if len(e.data) == max(len(x.data) for x in entries))
    layer.data = layer.data[:-1] + bytes([layer.data[-1] ^ 1])
    return entries


def _resize_layer(entries: list[Entry]) -> list[Entry]:
    layer = next(e for e in entries if len(e.data) == max(len(x.data) for x in entries))
    layer.data = layer.data + b"x"
    return entries


def _insert(entry: Entry) -> Callable[[list[Entry]], list[Entry]]:
    return lambda entries: [entries[0], entry, *entries[1:]]


def _unknown_layer_type(entries: list[Entry]) -> list[Entry]:
    img = build_image([100])
    doc = json.loads(img.raw)
    doc["layers"][0]["mediaType"] = "application/x-made-up"
    raw = json.dumps(doc).encode()
    bad = SampleImage(mediatype.OCI_MANIFEST, raw, img.blobs)
    return good_entries(bad)


def _unknown_manifest_type(entries: list[Entry]) -> list[Entry]:
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/x-not-a-manifest"}).encode()
    return good_entries(SampleImage("application/x-not-a-manifest", raw))


def _oversized_manifest(entries: list[Entry]) -> list[Entry]:
    img = build_image([100])
    doc = json.loads(img.raw)
    doc["annotations"] = {"padding": "x" * (mediatype.MAX_MANIFEST_BYTES + 10)}
    raw = json.dumps(doc).encode()
    return good_entries(SampleImage(mediatype.OCI_MANIFEST, raw, img.blobs))


def _unreferenced_blob(entries: list[Entry]) -> list[Entry]:
    junk = b"not referenced by anything"
    return [*entries[:2], Entry(blob_name(digest_bytes(junk)), junk), *entries[2:]]


def _unpinned(entries: list[Entry]) -> list[Entry]:
    entries[0].data = kubepkg_json({f"{REPO}:1.0": ""})
    return entries


def _missing_layer(entries: list[Entry]) -> list[Entry]:
    biggest = max(len(x.data) for x in entries)
    return [e for e in entries if len(e.data) != biggest]


CASES: list[tuple[str, Callable[[list[Entry]], list[Entry]], str, bool]] = [
    # sentence name, how to break a good tarball, what the error says, truncate the end marker
    (
        "kubepkg.json not first is refused",
        _swap_first_two,
        "first entry must be kubepkg.json",
        True,
    ),
    ("a layer whose bytes were flipped fails its digest", _corrupt_layer, "hashes to", True),
    ("a layer longer than its descriptor fails its size", _resize_layer, "descriptor says", True),
    (
        "a path that climbs out is refused",
        _insert(Entry("blobs/../../etc/passwd", b"x")),
        "path traversal",
        True,
    ),
    ("an absolute path is refused", _insert(Entry("/etc/passwd", b"x")), "path traversal", True),
    (
        "a symbolic link is refused",
        _insert(Entry("blobs/sha256/link", b"", tarfile.SYMTYPE, "/etc/passwd")),
        "symbolic link",
        True,
    ),
    (
        "a hard link is refused",
        _insert(Entry("blobs/sha256/hard", b"", tarfile.LNKTYPE, "kubepkg.json")),
        "hard link",
        True,
    ),
    (
        "a device entry is refused",
        _insert(Entry("blobs/sha256/dev", b"", tarfile.CHRTYPE)),
        "character device",
        True,
    ),
    ("a FIFO is refused", _insert(Entry("fifo", b"", tarfile.FIFOTYPE)), "FIFO", True),
    ("an unknown layer media type is refused", _unknown_layer_type, "unknown layer media", True),
    ("an unknown manifest media type is refused", _unknown_manifest_type, "unknown manifest", True),
    ("a manifest over 4 MiB is refused", _oversized_manifest, "limit", True),
    ("a blob nothing references is refused", _unreferenced_blob, "no manifest before it", True),
    ("an image not pinned to a digest is refused", _unpinned, "not pinned", True),
    ("a layer neither in the tar nor the store is missing", _missing_layer, "neither", True),
    (
        "an entry that is not part of a layout is refused",
        _insert(Entry("x.txt", b"")),
        "unexpected",
        True,
    ),
    ("a tar without its end marker is truncated", lambda e: e, "truncated", False),
]


@pytest.mark.parametrize(
    ("breaker", "message", "end"),
    [pytest.param(b, m, end, id=name) for name, b, m, end in CASES],
)
def test_bad_tarball_is_refused_and_store_unchanged(
    tmp_path: Path, breaker: Callable[[list[Entry]], list[Entry]], message: str, end: bool
) -> None:
    data = tar_bytes(breaker(good_entries(IMAGE)), end=end)
    with pytest.raises(GitopsKubepkgError) as err:
        run_import(tmp_path / "store", data)
    assert message in str(err.value)
    assert "t.tar" in str(err.value)
    assert_store_unchanged(tmp_path / "store")


@pytest.mark.parametrize("cut", [100, 700, 5000, 60000])
def test_a_tar_cut_anywhere_is_truncated_and_store_unchanged(tmp_path: Path, cut: int) -> None:
    data = tar_bytes(good_entries(IMAGE))
    with pytest.raises(GitopsKubepkgError, match="truncated"):
        run_import(tmp_path / "store", data[:cut])
    assert_store_unchanged(tmp_path / "store")


def test_good_tarball_imports_then_a_rerun_skips_every_blob(tmp_path: Path) -> None:
    data = tar_bytes(good_entries(IMAGE))
    store = tmp_path / "store"
    first = import_tarball(io.BytesIO(data), "t.tar", StoreSink(store))
    again = import_tarball(io.BytesIO(data), "t.tar", StoreSink(store))
    assert first.blobs_written == len(IMAGE.all_blobs()) - len(IMAGE.children)
    assert again.blobs_written == 0
    assert again.blobs_skipped == first.blobs_written
    tag = store / "repositories" / REPO / "_tags" / "1.0"
    assert tag.read_text() == str(IMAGE.digest)
