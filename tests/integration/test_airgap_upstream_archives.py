"""``airgap import`` of every upstream KubePkg archive shape, and refusals that name the format.

Each archive is laid out by a test-side writer that follows one upstream writer
(``upstream_archives``: kubepkg packer.go gen 1/2/3, crpe ``tgz$``), with real random images.
It is imported by the real CLI into a store; then every blob, manifest and tag is checked in the
store, and ``registry serve`` is asked through skopeo for each tagged image.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.blobstore import BlobStore
from gitops_kubepkg.registry.digest import digest_bytes
from gitops_kubepkg.registry.repositories import Repositories
from gitops_kubepkg.spec.imageref import mirror_repository
from tests.integration.registry_peers import (
    SampleImage,
    build_image,
    build_index,
    needs_peers,
    registry_serve,
    skopeo,
)
from tests.integration.upstream_archives import (
    Image,
    TarOut,
    crpe_digest_metas,
    crpe_tgz,
    go_gzip,
    go_json,
    kubepkg_digest_metas,
    kubepkg_packer,
)


def docker_list(images: dict[str, SampleImage]) -> SampleImage:
    """A Docker manifest list (what gen 1's resolver walks) over Docker-typed images."""
    oci = build_index(images)
    doc = json.loads(oci.raw)
    doc["mediaType"] = mediatype.DOCKER_LIST
    for entry in doc["manifests"]:
        entry["mediaType"] = mediatype.DOCKER_MANIFEST
    raw = json.dumps(doc).encode()
    return SampleImage(mediatype.DOCKER_LIST, raw, {}, oci.children)


def docker_image(sizes: list[int], arch: str = "amd64") -> SampleImage:
    return build_image(sizes, arch=arch, docker=True)


WEB = Image(
    "docker.io/library/nginx",
    "1.25",
    docker_list(
        {
            "linux/amd64": docker_image([4000, 30000]),
            "linux/arm64": docker_image([2000], arch="arm64"),
            "linux/s390x": docker_image([100], arch="s390x"),
        }
    ),
)
API = Image("ghcr.io/acme/api", "2.0", build_image([5000]))


def gen1_doc(image: Image) -> dict[str, Any]:
    """A gen 1 (v0.1.3) KubePkg: spec.images pinned by the resolver, raw manifests."""
    ref = f"{image.name}:{image.tag}"
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "version": "1.0.0",
            "images": {ref: str(image.content.digest)},
            "manifests": {
                "web.default.deployment": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"template": {"spec": {"containers": [{"name": "w", "image": ref}]}}},
                }
            },
        },
        "status": {"digests": kubepkg_digest_metas(image)},
    }


def gen2_doc(name: str, image: Image) -> dict[str, Any]:
    """A gen 2/3 KubePkg: structured spec (containers), status.images and status.digests."""
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "version": "0.0.2",
            "deploy": {"kind": "Deployment"},
            "containers": {"main": {"image": {"name": image.name, "tag": image.tag}}},
        },
        "status": {
            "images": {f"{image.name}:{image.tag}": str(image.content.digest)},
            "digests": kubepkg_digest_metas(image),
        },
    }


def crpe_doc(image: Image) -> dict[str, Any]:
    """crpe's KubePkg JSON (freezed: every field, absent ones null; spec.images unresolved)."""
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web", "namespace": "default", "labels": None, "annotations": None},
        "spec": {"version": "1.0.0", "images": {f"{image.name}:{image.tag}": ""}, "manifests": {}},
        "status": {"tgzDigest": None, "digests": crpe_digest_metas(image)},
    }


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def kept(image: Image) -> list[SampleImage]:
    """The manifests an archive carries for ``image``: linux/amd64 and linux/arm64 only."""
    if not image.content.children:
        return [image.content]
    return [image.content, *image.content.children[:2]]


def assert_imported(store: Path, images: list[Image]) -> None:
    blobs = BlobStore(store)
    repos = Repositories(store)
    for img in images:
        repo = mirror_repository(img.name)
        for m in kept(img):
            assert blobs.has(m.digest)
            assert repos.manifest_type(repo, m.digest) == m.media_type
            for digest, data in m.blobs.items():
                assert digest_bytes(blobs.path(digest).read_bytes()) == digest
                assert len(data) == blobs.path(digest).stat().st_size
        assert repos.resolve(repo, img.tag) == img.content.digest


def assert_served(store: Path, images: list[Image]) -> None:
    with registry_serve(store) as served:
        for img in images:
            ref = f"docker://{served.host}/{mirror_repository(img.name)}:{img.tag}"
            raw = skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout.encode()
            assert raw == img.content.raw
            copy = store.parent / f"copy-{img.tag}"
            skopeo("copy", "--src-tls-verify=false", "--override-arch", "arm64", ref, f"oci:{copy}")
            assert (copy / "index.json").is_file()


ARCHIVES = {
    "gen 1 kubepkg.tgz (v0.1.3)": ("kubepkg.tgz", lambda: kubepkg_packer([(gen1_doc(WEB), [WEB])], generation=1), [WEB], "gen 1/2"),
    "gen 2 KubePkgList kubepkg.tgz (v0.5.3)": ("demo.kube.tgz", lambda: kubepkg_packer([(gen2_doc("web", WEB), [WEB]), (gen2_doc("api", API), [API])], generation=2), [WEB, API], "gen 1/2"),
    "gen 3 KubePkgList kubepkg.airgap.tar (v0.5.4)": ("kubepkg.airgap.tar", lambda: kubepkg_packer([(gen2_doc("web", WEB), [WEB]), (gen2_doc("api", API), [API])], generation=3), [WEB, API], "gen 3"),
    "crpe web@1.0.0.tgz (cd31ed6)": ("web@1.0.0.tgz", lambda: crpe_tgz(crpe_doc(WEB), [WEB]), [WEB], "crpe"),
}  # fmt: skip


@needs_peers
@pytest.mark.parametrize("shape", list(ARCHIVES))
def test_every_upstream_archive_imports_and_is_served(tmp_path: Path, shape: str) -> None:
    filename, write, images, label = ARCHIVES[shape]
    archive = tmp_path / filename
    archive.write_bytes(write())
    store = tmp_path / "store"
    proc = cli("airgap", "import", str(archive), "--store", str(store), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert label in result["format"]
    assert sorted(result["tags"]) == sorted(f"{i.name}:{i.tag}" for i in images)
    # linux/s390x of the web image was not exported (the resolvers keep amd64 and arm64): said.
    assert any("2 of 3 platforms" in n for n in result["notes"])
    assert_imported(store, images)
    assert_served(store, images)


def _refused(tmp_path: Path, name: str, data: bytes) -> str:
    archive = tmp_path / name
    archive.write_bytes(data)
    store = tmp_path / "store"
    proc = cli("airgap", "import", str(archive), "--store", str(store))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    repos = store / "repositories"
    assert not repos.exists() or not any(p.is_file() for p in repos.rglob("*"))
    blobs = BlobStore(store)
    for digest in blobs.digests():
        assert digest_bytes(blobs.path(digest).read_bytes()) == digest
    return proc.stderr


def test_a_truncated_gzip_archive_is_refused_naming_the_format(tmp_path: Path) -> None:
    data = ARCHIVES["gen 2 KubePkgList kubepkg.tgz (v0.5.3)"][1]()
    err = _refused(tmp_path, "kubepkg.tgz", data[: len(data) * 2 // 3])
    assert "kubepkg.tgz: gzip KubePkg archive (gen 1/2): truncated" in err


def test_a_blob_listed_nowhere_is_refused_naming_the_format(tmp_path: Path) -> None:
    junk = b"a blob nothing lists"
    doc = gen1_doc(WEB)
    extra = Image(WEB.name, WEB.tag, SampleImage(mediatype.OCI_MANIFEST, junk))
    listed = {"type": "blob", "digest": str(digest_bytes(junk)), "name": WEB.name, "size": 20}
    # The packer writes the blob (it is listed), then kubepkg.json is swapped for one without it.
    with_junk = {**doc, "status": {"digests": [listed, *doc["status"]["digests"]]}}
    raw = gzip.decompress(kubepkg_packer([(with_junk, [WEB, extra])], generation=1))
    out = TarOut()
    with tarfile.open(fileobj=io.BytesIO(raw)) as src:
        for member in src.getmembers():
            f = src.extractfile(member)
            assert f is not None
            data = go_json(doc) if member.name == "kubepkg.json" else f.read()
            out.add(member.name, data)
    err = _refused(tmp_path, "kubepkg.tgz", go_gzip(out.close()))
    assert (
        f"kubepkg.tgz: gzip KubePkg archive (gen 1/2): blobs/sha256/{digest_bytes(junk).hex}: "
        f"blob {digest_bytes(junk)} is listed in neither status.digests"
    ) in err


def test_a_corrupt_layer_is_refused_naming_the_format(tmp_path: Path) -> None:
    layer = max(WEB.content.children[0].blobs.values(), key=len)
    good = crpe_tgz(crpe_doc(WEB), [WEB])
    raw = gzip.decompress(good)
    at = raw.index(layer)
    bad = raw[: at + 100] + bytes([raw[at + 100] ^ 1]) + raw[at + 101 :]
    err = _refused(tmp_path, "web@1.0.0.tgz", gzip.compress(bad))
    assert "web@1.0.0.tgz: gzip KubePkg archive (crpe): " in err
    assert "hashes to" in err


def test_a_config_only_package_imports_with_nothing_to_store(tmp_path: Path) -> None:
    doc = crpe_doc(WEB)
    doc["spec"]["images"] = {}
    doc["status"]["digests"] = []
    archive = tmp_path / "config@1.0.0.tgz"
    archive.write_bytes(crpe_tgz(doc, []))
    proc = cli("airgap", "import", str(archive), "--store", str(tmp_path / "store"), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images"] == {}
