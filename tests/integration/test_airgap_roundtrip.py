"""Airgap end to end against real peers: export from CNCF Distribution, read the tarball with
skopeo, import into our store and serve it, push it into another Distribution, cut an import
short with SIGKILL and resume it, and carry git history across in bundles.

Every command runs as a user runs it (``python -m gitops_kubepkg ...``); every process started here
is stopped here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.registry.blobstore import BlobStore
from gitops_kubepkg.registry.client import RegistryClient
from gitops_kubepkg.registry.digest import digest_bytes
from gitops_kubepkg.registry.server import RegistryServer
from gitops_kubepkg.sources.mirror import mirror_dir
from tests.integration.registry_peers import (
    Distribution,
    SampleImage,
    build_image,
    build_index,
    have_peers,
    push,
    registry_serve,
    skopeo,
    tar_layer,
)
from tests.unit.test_airgap_bad_input import good_entries, tar_bytes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_peers(), reason="needs docker-registry and skopeo"),
]

SHARED_LAYER = tar_layer(os.urandom(40000), "shared.bin")


def with_shared_layer(image: SampleImage) -> SampleImage:
    """``image`` with SHARED_LAYER appended (two repositories then share a blob)."""
    doc = json.loads(image.raw)
    d = digest_bytes(SHARED_LAYER)
    doc["layers"].append(
        {"mediaType": doc["layers"][0]["mediaType"], "digest": str(d), "size": len(SHARED_LAYER)}
    )
    raw = json.dumps(doc).encode()
    return SampleImage(image.media_type, raw, {**image.blobs, d: SHARED_LAYER})


WEB = build_index(
    {
        "linux/amd64": with_shared_layer(build_image([3000, 2 << 20])),
        "linux/arm64": build_image([7000], arch="arm64"),
    }
)
BASE = with_shared_layer(build_image([1000]))
CLI = build_image([20000], docker=True)

IMAGES = {
    "docker.io/library/web:1.0": ("library/web", "1.0", WEB),
    "docker.io/library/base:3": ("library/base", "3", BASE),
    "quay.io/tools/cli:v2": ("tools/cli", "v2", CLI),
}


def cli(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"gitops-kubepkg {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
        )
    return proc


def write_kubepkg(path: Path, images: list[str], name: str = "demo") -> Path:
    containers = [{"name": f"c{i}", "image": ref} for i, ref in enumerate(images)]
    doc = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": name},
        "spec": {
            "version": "1.0.0",
            "images": {ref: "" for ref in images},
            "manifests": {
                "web.default.deployment": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"template": {"spec": {"containers": containers}}},
                }
            },
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    return path


@dataclass
class Source:
    registry: Distribution
    mirror_flags: list[str]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    registry = Distribution(tmp_path_factory.mktemp("source-registry"))
    try:
        client = RegistryClient()
        for name, tag, image in IMAGES.values():
            push(client, registry.endpoint, name, tag, image)
        client.close()
        flags = [
            "--registry-mirror",
            f"docker.io={registry.url}",
            "--registry-mirror",
            f"quay.io={registry.url}",
        ]
        yield Source(registry, flags)
    finally:
        registry.stop()


def export(source: Source, out: Path, images: list[str], *extra: str) -> dict[str, Any]:
    pkg = write_kubepkg(out.parent / f"{out.name}-pkg" / "kubepkg.json", images)
    proc = cli(
        "airgap", "export", str(pkg), "--out", str(out), "-o", "json", *source.mirror_flags, *extra
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def import_(src: Path, *dest: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cli("airgap", "import", str(src), *dest, "-o", "json", check=check)


def raw_manifest(ref: str) -> bytes:
    return skopeo("inspect", "--raw", "--tls-verify=false", ref).stdout.encode()


def test_skopeo_reads_the_exported_tarball_as_an_oci_archive(
    source: Source, tmp_path: Path
) -> None:
    result = export(source, tmp_path / "out", list(IMAGES))
    tar = tmp_path / "out" / "kubepkg.airgap.tar"
    with open(tar, "rb") as f:
        assert f.read(100).rstrip(b"\0") == b"kubepkg.json"
    for ref, (_, _, image) in IMAGES.items():
        assert result["images"][ref] == str(image.digest)
        if image is CLI:
            continue  # skopeo 1.9 skips Docker media types in an OCI layout's index.json
        raw = skopeo("inspect", "--raw", f"oci-archive:{tar}:{ref}").stdout.encode()
        assert raw == image.raw
    out = tmp_path / "copied"
    skopeo(
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-oci-accept-uncompressed-layers",
        f"oci-archive:{tar}:docker.io/library/web:1.0",
        f"oci:{out}:web",
    )
    for digest, data in WEB.all_blobs().items():
        assert (out / "blobs" / digest.algorithm / digest.hex).read_bytes() == data
    pinned = json.loads(Path(tmp_path / "out-pkg" / "kubepkg.json").read_text())
    assert pinned["spec"]["images"]["quay.io/tools/cli:v2"] == ""


def test_export_import_and_serve_inspects_identically_to_the_source(
    source: Source, tmp_path: Path
) -> None:
    export(source, tmp_path / "out", list(IMAGES))
    store = tmp_path / "store"
    result = json.loads(import_(tmp_path / "out", "--store", str(store), "--images-only").stdout)
    assert sorted(result["tags"]) == sorted(
        r.rsplit(":", 1)[0] + ":" + r.rsplit(":", 1)[1] for r in IMAGES
    )
    with RegistryServer(store).start() as ours:
        host = ours.url.removeprefix("http://")
        for ref, (name, tag, image) in IMAGES.items():
            theirs = raw_manifest(f"docker://{source.registry.host}/{name}:{tag}")
            assert raw_manifest(f"docker://{host}/{ref}") == theirs == image.raw
        skopeo(
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-oci-accept-uncompressed-layers",
            "--src-tls-verify=false",
            f"docker://{host}/docker.io/library/web:1.0",
            f"oci:{tmp_path}/web:1.0",
        )
    for digest, data in WEB.all_blobs().items():
        assert (tmp_path / "web" / "blobs" / digest.algorithm / digest.hex).read_bytes() == data


@pytest.mark.parametrize("chunk_size", [8 << 20, 64 << 10], ids=["monolithic", "chunked"])
def test_to_registry_lands_in_distribution_with_digests_unchanged(
    source: Source, tmp_path: Path, chunk_size: int
) -> None:
    export(source, tmp_path / "out", list(IMAGES))
    target = Distribution(tmp_path / "target")
    try:
        proc = import_(
            tmp_path / "out",
            "--to-registry",
            f"{target.url}/mirror",
            "--images-only",
            "--chunk-size",
            str(chunk_size),
        )
        stats = json.loads(proc.stdout)["registry"]
        assert stats["mounted"] >= 1  # the layer web and base share
        if chunk_size < (1 << 20):
            assert stats["chunked"] >= 1
        for ref, (_, _, image) in IMAGES.items():
            assert raw_manifest(f"docker://{target.host}/mirror/{ref}") == image.raw
        again = json.loads(
            import_(
                tmp_path / "out", "--to-registry", f"{target.url}/mirror", "--images-only"
            ).stdout
        )
        assert again["blobsWritten"] == 0
    finally:
        target.stop()


def test_platform_filter_keeps_an_index_of_only_that_platform(
    source: Source, tmp_path: Path
) -> None:
    result = export(
        source, tmp_path / "out", ["docker.io/library/web:1.0"], "--platform", "linux/arm64"
    )
    digest = result["images"]["docker.io/library/web:1.0"]
    assert digest != str(WEB.digest)
    tar = tmp_path / "out" / "kubepkg.airgap.tar"
    index = json.loads(
        skopeo("inspect", "--raw", f"oci-archive:{tar}:docker.io/library/web:1.0").stdout
    )
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["arm64"]
    amd64_layers = {d for d in WEB.children[0].blobs}
    data = tar.read_bytes()
    assert not any(d.hex.encode() in data for d in amd64_layers)
    store = tmp_path / "store"
    import_(tmp_path / "out", "--store", str(store), "--images-only")
    assert (store / "repositories/docker.io/library/web/_tags/1.0").read_text() == digest


def test_since_leaves_out_blobs_and_needs_the_earlier_import(
    source: Source, tmp_path: Path
) -> None:
    export(source, tmp_path / "one", ["docker.io/library/web:1.0"])
    second = export(
        source,
        tmp_path / "two",
        ["docker.io/library/web:1.0", "quay.io/tools/cli:v2"],
        "--since",
        str(tmp_path / "one"),
    )
    assert second["blobsOmitted"] == len(WEB.all_blobs()) - len(WEB.children)
    assert second["blobsWritten"] == len(CLI.blobs)

    fresh = tmp_path / "fresh"
    proc = import_(tmp_path / "two", "--store", str(fresh), "--images-only", check=False)
    assert proc.returncode != 0
    assert "neither in the archive nor already imported" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(p.is_file() for p in (fresh / "repositories").rglob("*"))

    store = tmp_path / "store"
    import_(tmp_path / "one", "--store", str(store), "--images-only")
    result = json.loads(import_(tmp_path / "two", "--store", str(store), "--images-only").stdout)
    assert len(result["tags"]) == 2


def test_a_killed_import_resumes_and_every_digest_verifies(tmp_path: Path) -> None:
    image = build_image([1 << 20] * 24)
    data = tar_bytes(good_entries(image, "registry.example.com/big/image:1"))
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitops_kubepkg", "airgap", "import", "-", "--store", str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdin is not None
        half = len(data) // 2
        proc.stdin.write(data[:half])
        proc.stdin.flush()
        blobs = store / "blobs" / "sha256"
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and len(list(blobs.glob("*")) if blobs.exists() else []) < 5
        ):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    written = len(list(blobs.glob("*")))
    assert 5 <= written < len(image.blobs) + 1
    assert not (store / "repositories").exists()

    (tmp_path / "big.tar").write_bytes(data)
    result = json.loads(import_(tmp_path / "big.tar", "--store", str(store)).stdout)
    assert result["blobsSkipped"] >= written - 1  # the manifest blob is not counted
    assert result["tags"] == ["registry.example.com/big/image:1"]
    bs = BlobStore(store)
    for digest in bs.digests():
        assert hashlib.sha256(bs.path(digest).read_bytes()).hexdigest() == digest.hex
    assert {*bs.digests()} == {image.digest, *image.blobs}
    assert not any((store / "tmp").iterdir())


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(path: Path, source: Source) -> None:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    write_kubepkg(path / "apps" / "web" / "kubepkg.json", ["docker.io/library/web:1.0"])
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "web")
    git(path, "tag", "apps/web/v1.0.0")


def test_git_bundles_carry_history_into_the_mirror_incrementally(
    source: Source, tmp_path: Path
) -> None:
    repo = tmp_path / "deploy"
    make_repo(repo, source)
    url = "https://git.example.com/deploy.git"
    out1 = tmp_path / "one"
    cli("airgap", "export", "--out", str(out1), "--repo", f"{url}={repo}", *source.mirror_flags)
    state = tmp_path / "state"
    result = json.loads(
        import_(out1, "--store", str(tmp_path / "store"), "--state-dir", str(state)).stdout
    )
    mirror = mirror_dir(state, url)
    assert result["repositories"][url]["refs/heads/main"] == git(repo, "rev-parse", "main")
    assert git(mirror, "rev-parse", "refs/tags/apps/web/v1.0.0") == git(
        repo, "rev-parse", "apps/web/v1.0.0"
    )

    (repo / "README").write_text("more\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more")
    out2 = tmp_path / "two"
    cli(
        "airgap",
        "export",
        "--out",
        str(out2),
        "--repo",
        f"{url}={repo}",
        "--since",
        str(out1),
        *source.mirror_flags,
    )
    manifest = json.loads((out2 / "airgap.json").read_text())
    assert manifest["repositories"][0]["prerequisites"]

    fresh = tmp_path / "fresh-state"
    proc = import_(
        out2, "--store", str(tmp_path / "store2"), "--state-dir", str(fresh), check=False
    )
    assert proc.returncode != 0
    assert "needs commits the mirror" in proc.stderr
    assert not (tmp_path / "store2" / "repositories").exists()

    import_(out2, "--store", str(tmp_path / "store"), "--state-dir", str(state))
    assert git(mirror, "rev-parse", "refs/heads/main") == git(repo, "rev-parse", "main")


def test_a_config_only_package_exports_and_its_bundle_arrives(tmp_path: Path) -> None:
    repo = tmp_path / "deploy"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    pkg = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "settings"},
        "spec": {
            "version": "1.0.0",
            "manifests": {
                "settings.configmap": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "settings"},
                    "data": {"mode": "airgap"},
                }
            },
        },
    }
    path = repo / "apps" / "settings" / "kubepkg.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(pkg))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "settings")
    url = "https://git.example.com/config-only.git"
    out = tmp_path / "out"
    cli("airgap", "export", str(path), "--out", str(out), "--repo", f"{url}={repo}")
    state = tmp_path / "state"
    proc = import_(out, "--store", str(tmp_path / "store"), "--state-dir", str(state))
    result = json.loads(proc.stdout)
    assert result["images"] == {}
    assert result["repositories"][url]["refs/heads/main"] == git(repo, "rev-parse", "main")
    assert git(mirror_dir(state, url), "rev-parse", "refs/heads/main") == git(
        repo, "rev-parse", "main"
    )


def test_credentials_in_a_repository_url_reach_no_file_and_the_mirror_is_still_found(
    source: Source, tmp_path: Path
) -> None:
    repo = tmp_path / "deploy"
    make_repo(repo, source)
    secret_url = "https://alice:s3cret-token@git.example.com/team/deploy.git"
    # --out relative to the working directory: git writes the bundle from inside the repository.
    cli(
        "airgap", "export", "--out", "out", "--repo", f"{secret_url}={repo}",
        *source.mirror_flags, cwd=tmp_path,
    )  # fmt: skip
    out = tmp_path / "out"
    for path in out.rglob("*"):
        assert "s3cret" not in str(path)
        if path.is_file() and path.suffix in (".json", ".bundle"):
            assert b"s3cret" not in path.read_bytes(), path
    manifest = json.loads((out / "airgap.json").read_text())
    assert [r["url"] for r in manifest["repositories"]] == [
        "https://git.example.com/team/deploy.git"
    ]
    state = tmp_path / "state"
    proc = import_(out, "--store", str(tmp_path / "store"), "--state-dir", str(state))
    assert "s3cret" not in proc.stdout + proc.stderr
    # A Repository naming the URL with its credentials syncs from the mirror the import filled.
    assert mirror_dir(state, secret_url) == mirror_dir(state, manifest["repositories"][0]["url"])
    assert git(mirror_dir(state, secret_url), "rev-parse", "refs/heads/main") == git(
        repo, "rev-parse", "main"
    )


def test_a_damaged_copy_fails_its_checksum_before_anything_is_written(
    source: Source, tmp_path: Path
) -> None:
    repo = tmp_path / "deploy"
    make_repo(repo, source)
    out = tmp_path / "out"
    cli(
        "airgap",
        "export",
        "--out",
        str(out),
        "--repo",
        f"https://g.example/d.git={repo}",
        *source.mirror_flags,
    )
    bundle = next((out / "repos").glob("*.bundle"))
    data = bytearray(bundle.read_bytes())
    data[-30] ^= 0xFF
    bundle.write_bytes(bytes(data))
    proc = import_(
        out, "--store", str(tmp_path / "store"), "--state-dir", str(tmp_path / "s"), check=False
    )
    assert proc.returncode == 1
    assert "the copy is damaged" in proc.stderr and bundle.name in proc.stderr
    assert not (tmp_path / "store" / "blobs").exists()


def test_registry_serve_command_serves_until_terminated(tmp_path: Path) -> None:
    image = build_image([100])
    store = tmp_path / "store"
    from gitops_kubepkg.airgap.importer import StoreSink, import_tarball

    import_tarball(
        io.BytesIO(tar_bytes(good_entries(image, "example.com/a/b:1"))), "t", StoreSink(store)
    )
    with registry_serve(store) as served:
        raw = raw_manifest(f"docker://{served.host}/example.com/a/b:1")
        assert raw == image.raw
        served.proc.terminate()
        assert served.proc.wait(10) == 0, "SIGTERM stops it cleanly"


def _tar_entries(tar: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tar) as t:
        return {m.name: m for m in t.getmembers()}


def test_export_carries_upstream_lock_and_docker_manifest(source: Source, tmp_path: Path) -> None:
    """What upstream's importer (KubeTarRange + ImportDigest) and docker-archive readers need."""
    result = export(source, tmp_path / "out", list(IMAGES))
    tar = tmp_path / "out" / "kubepkg.airgap.tar"
    entries = _tar_entries(tar)
    assert {m.mode for m in entries.values()} == {0o644}
    with tarfile.open(tar) as t:
        doc = json.loads(t.extractfile("kubepkg.json").read())  # type: ignore[union-attr]
        docker = json.loads(t.extractfile("manifest.json").read())  # type: ignore[union-attr]
    status = doc["status"]
    assert status["images"] == result["images"]
    listed = {m["digest"]: m for m in status["digests"]}
    in_tar = {"sha256:" + n.split("/")[-1] for n in entries if n.startswith("blobs/sha256/")}
    assert in_tar == set(listed)  # upstream's importer drops any blob the list does not name
    for ref, (_, tag, image) in IMAGES.items():
        top = listed[str(image.digest)]
        assert (top["type"], top["tag"], top.get("platform", "")) == ("manifest", tag, "")
        assert top["name"] == ref.rsplit(":", 1)[0]
        # Upstream's order: children before the manifests that reference them.
        order = [m["digest"] for m in status["digests"]]
        for child in image.all_blobs():
            assert order.index(str(child)) < order.index(str(image.digest))
    config = json.loads(CLI.raw)["config"]["digest"]
    assert docker == [
        {
            "Config": "blobs/sha256/" + config.split(":")[1],
            "RepoTags": ["quay.io/tools/cli:v2"],
            "Layers": ["blobs/sha256/" + x["digest"].split(":")[1] for x in json.loads(CLI.raw)["layers"]],
        }
    ]  # fmt: skip
    inspected = json.loads(skopeo("inspect", f"docker-archive:{tar}:quay.io/tools/cli:v2").stdout)
    assert inspected["Architecture"] == "amd64"
    raw_config = skopeo(
        "inspect", "--config", "--raw", f"docker-archive:{tar}:quay.io/tools/cli:v2"
    )
    assert str(digest_bytes(raw_config.stdout.encode())) == config


CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")


@pytest.mark.skipif(
    not (CONTAINERD and CTR), reason="needs containerd (scripts/install-system-deps)"
)
def test_ctr_images_import_names_every_exported_image(source: Source, tmp_path: Path) -> None:
    export(source, tmp_path / "out", list(IMAGES))
    tar = tmp_path / "out" / "kubepkg.airgap.tar"
    run = tmp_path / "containerd"
    run.mkdir()
    sock = run / "containerd.sock"
    config = run / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{run / "root"}"\nstate = "{run / "state"}"\n'
        f'[grpc]\n  address = "{sock}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
    )
    log = open(run / "containerd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [CONTAINERD or "containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        ctr = [CTR or "ctr", "--address", str(sock), "--namespace", "airgap-test"]
        for _ in range(200):
            if (
                sock.exists()
                and subprocess.run([*ctr, "version"], capture_output=True).returncode == 0
            ):
                break
            assert proc.poll() is None, (run / "containerd.log").read_text()
            time.sleep(0.05)
        imported = subprocess.run(
            # No unpack: that needs a snapshotter (root); naming and content are what we check.
            [*ctr, "images", "import", "--all-platforms", "--no-unpack", str(tar)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        listed = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True).stdout
        named = {line.split()[0]: line.split()[2] for line in listed.splitlines()[1:]}
        for ref, (_, _, image) in IMAGES.items():
            assert named.get(ref) == str(image.digest), listed
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
