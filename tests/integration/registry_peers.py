"""Real OCI peers for registry and airgap tests: CNCF Distribution on loopback, skopeo, and small
random OCI images built here in Python.

Place in the flow: test infrastructure only. ``Distribution`` runs Debian's ``docker-registry`` on
a free loopback port with its own temporary config and storage (never the system service) and
stops it, always, in ``stop()``. ``build_image``/``build_index`` make images with random layers
(real tar layers, so any tool can read them); ``push`` puts one into a registry through our client;
``skopeo`` runs the peer client with TLS verification off for loopback.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.client import Endpoint, RegistryClient
from gitops_kubepkg.registry.digest import Digest, digest_bytes
from gitops_kubepkg.registry.layout import LayoutDir
from gitops_kubepkg.registry.manifest import Descriptor

DISTRIBUTION = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def have_peers() -> bool:
    return os.path.exists(DISTRIBUTION) and os.path.exists(SKOPEO)


needs_peers = pytest.mark.skipif(
    not have_peers(), reason="needs docker-registry and skopeo (scripts/install-system-deps)"
)


class Distribution:
    """One ``docker-registry`` process on 127.0.0.1:<free port> (or another local address,
    ``listen``), storage under ``directory``."""

    def __init__(self, directory: Path, listen: str = "127.0.0.1") -> None:
        self.directory = directory
        self.port = free_port()
        self.host = f"{listen}:{self.port}"
        self.url = f"http://{self.host}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        self.log = open(directory / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [DISTRIBUTION, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=1)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    log = (directory / "registry.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"docker-registry did not start:\n{log}") from None
                time.sleep(0.05)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[Distribution]:
    if not have_peers():
        pytest.skip("needs docker-registry and skopeo")
    d = Distribution(tmp_path / "distribution")
    try:
        yield d
    finally:
        d.stop()


@dataclass
class SampleImage:
    """A manifest (or index) and every blob it reaches, all in memory."""

    media_type: str
    raw: bytes
    blobs: dict[Digest, bytes] = field(default_factory=dict)
    children: list[SampleImage] = field(default_factory=list)

    @property
    def digest(self) -> Digest:
        return digest_bytes(self.raw)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))

    def all_blobs(self) -> dict[Digest, bytes]:
        out = dict(self.blobs)
        for c in self.children:
            out[c.digest] = c.raw
            out.update(c.all_blobs())
        return out


def tar_layer(rng_bytes: bytes, name: str = "data.bin") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.size = len(rng_bytes)
        t.addfile(info, io.BytesIO(rng_bytes))
    return buf.getvalue()


def build_image(
    layer_sizes: list[int], *, arch: str = "amd64", docker: bool = False, seed: str = ""
) -> SampleImage:
    """An image whose layers are tars of random bytes of the given sizes."""
    layers = [tar_layer(os.urandom(n), f"{seed}layer{i}.bin") for i, n in enumerate(layer_sizes)]
    layer_type = (
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
        if docker
        else "application/vnd.oci.image.layer.v1.tar"
    )
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [str(digest_bytes(x)) for x in layers]},
        }
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatype.DOCKER_MANIFEST if docker else mediatype.OCI_MANIFEST,
        "config": {
            "mediaType": mediatype.DOCKER_CONFIG if docker else mediatype.OCI_CONFIG,
            "digest": str(digest_bytes(config)),
            "size": len(config),
        },
        "layers": [
            {"mediaType": layer_type, "digest": str(digest_bytes(x)), "size": len(x)}
            for x in layers
        ],
    }
    raw = json.dumps(manifest, indent=3).encode()
    blobs = {digest_bytes(config): config, **{digest_bytes(x): x for x in layers}}
    return SampleImage(str(manifest["mediaType"]), raw, blobs)


def build_index(images: dict[str, SampleImage]) -> SampleImage:
    """A multi-arch OCI index over ``{"linux/amd64": image, ...}``."""
    entries = []
    for platform, img in images.items():
        os_, arch, *variant = platform.split("/")
        p = {"architecture": arch, "os": os_}
        if variant:
            p["variant"] = variant[0]
        entries.append({**img.descriptor.to_json(), "platform": p})
    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": entries}
    ).encode()
    return SampleImage(mediatype.OCI_INDEX, raw, {}, list(images.values()))


def push(client: RegistryClient, ep: Endpoint, name: str, tag: str, image: SampleImage) -> None:
    """Blobs, then child manifests, then the manifest by tag, through our client."""
    for digest, data in image.blobs.items():
        if client.blob_size(ep, name, digest) is None:
            view = io.BytesIO(data)
            client.upload_blob(ep, name, digest, len(data), view.readinto)
    for child in image.children:
        push(client, ep, name, "", child)
    client.put_manifest(ep, name, tag or str(image.digest), image.media_type, image.raw)


def write_layout(path: Path, refs: dict[str, SampleImage]) -> None:
    """An OCI layout directory holding ``refs`` (``skopeo copy oci:DIR:REF``)."""
    layout = LayoutDir(path)
    for ref, image in refs.items():
        for data in image.all_blobs().values():
            layout.put(data)
        layout.put(image.raw)
        layout.name(image.descriptor, ref)
    layout.close()


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [SKOPEO, "--insecure-policy", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed:\n{proc.stderr}")
    return proc


@dataclass
class Served:
    """``gitops-kubepkg registry serve`` running as its own process."""

    host: str
    """``127.0.0.1:<port>``, as an image reference names it."""
    proc: subprocess.Popen[str]


@contextlib.contextmanager
def registry_serve(store: Path, host: str = "127.0.0.1") -> Iterator[Served]:
    """Our pull-only registry on a free port of ``host`` (the server picks it and says which)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitops_kubepkg", "registry", "serve", "--root", str(store),
         "--listen", f"{host}:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert " on " in line, f"registry serve did not start: {line}{proc.stderr.read()}"
        yield Served(line.split(" on ", 1)[1].split(" ")[0].removeprefix("http://"), proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
