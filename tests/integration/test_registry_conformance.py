"""The OCI distribution-spec conformance suite against ``registry serve`` and CNCF Distribution.

The same content (a two-platform OCI index, a Docker schema 2 image and a Docker manifest list) is
imported by our importer into our store and, through ``--to-registry``'s sink, into Distribution
(Debian's ``docker-registry``). The suite (built by ``scripts/local-cluster conformance`` from the module
pinned in hack/conformance) then runs its pull and content-discovery workflows read-only
(``OCI_API_PUSH=false`` with the seeded tags, manifests and blobs in ``OCI_RO_DATA_*``) against
each. Our registry must pass every test Distribution passes, as often (a test runs once per seeded
item). (Before the manifest-by-digest fix
it failed three: a Docker manifest list by digest with an OCI-only Accept.)
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gitops_kubepkg.airgap.importer import RegistrySink, StoreSink, import_tarball
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.client import RegistryClient
from gitops_kubepkg.registry.server import RegistryServer
from tests.integration.registry_peers import (
    Distribution,
    SampleImage,
    build_image,
    build_index,
    needs_peers,
)
from tests.unit.test_airgap_bad_input import good_entries, tar_bytes

pytestmark = [pytest.mark.integration, needs_peers]

REPO = "example.com/conformance/repo1"
WEB = build_index(
    {"linux/amd64": build_image([3000, 1 << 20]), "linux/arm64": build_image([100], arch="arm64")}
)
CLI = build_image([2000], docker=True, seed="cli")
# A Docker manifest list: fetched by digest it must come back even when Accept lists OCI types only.
_AMD, _ARM = build_image([300], docker=True, seed="l"), build_image([40], arch="arm64", docker=True)
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
IMAGES = {"1.0": WEB, "docker": CLI, "list": DOCKER_LIST}
_RESULT = re.compile(r"^(OCI Conformance Test/\S.*?): (Pass|FAIL|Disabled|Skip|\w+)$")


def conformance_binary() -> str:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(root / "scripts" / "local-cluster"), "conformance"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"building the conformance suite failed:\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def seed(import_into: StoreSink | RegistrySink) -> None:
    for tag, image in IMAGES.items():
        data = tar_bytes(good_entries(image, f"{REPO}:{tag}"))
        import_tarball(io.BytesIO(data), f"{tag}.tar", import_into)


def run_suite(binary: str, host: str, results: Path) -> list[tuple[str, str]]:
    """(test name, Pass / FAIL / Disabled / ...) in the suite's order."""
    manifests = {str(image.digest) for image in IMAGES.values()}
    manifests |= {str(c.digest) for image in IMAGES.values() for c in image.children}
    blobs = {
        str(d) for image in IMAGES.values() for d in image.all_blobs() if str(d) not in manifests
    }
    env = {
        **os.environ,
        "OCI_REGISTRY": host,
        "OCI_TLS": "disabled",
        "OCI_REPO1": REPO,
        "OCI_REPO2": REPO,
        "OCI_RESULTS_DIR": str(results),
        "OCI_API_PUSH": "false",
        "OCI_API_BLOBS_DELETE": "false",
        "OCI_API_MANIFESTS_DELETE": "false",
        "OCI_API_TAGS_DELETE": "false",
        "OCI_RO_DATA_TAGS": " ".join(IMAGES),
        "OCI_RO_DATA_MANIFESTS": " ".join(sorted(manifests)),
        "OCI_RO_DATA_BLOBS": " ".join(sorted(blobs)),
    }
    results.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [binary], env=env, cwd=results, capture_output=True, text=True, timeout=600, check=False
    )
    (results / "stdout.txt").write_text(out.stdout)
    # The report on stdout, one line per test in a fixed order (names repeat, one per content
    # item). The suite's results.yaml and junit.xml are not used: this version panics writing
    # them in read-only mode, after the report is printed.
    tests = [
        (m.group(1), m.group(2))
        for line in out.stdout.splitlines()
        if (m := _RESULT.match(line.strip()))
    ]
    assert tests, f"the suite reported nothing:\n{out.stdout}\n{out.stderr}"
    return tests


def test_we_pass_every_pull_test_distribution_passes(tmp_path: Path) -> None:
    binary = conformance_binary()
    store = tmp_path / "store"
    seed(StoreSink(store))
    distribution = Distribution(tmp_path / "distribution")
    try:
        seed(RegistrySink(RegistryClient(), distribution.endpoint))
        theirs = run_suite(binary, distribution.host, tmp_path / "results-distribution")
    finally:
        distribution.stop()
    with RegistryServer(store).start() as ours_server:
        ours = run_suite(binary, ours_server.url.removeprefix("http://"), tmp_path / "results-ours")

    # Per test name, as many passes as Distribution: the suite runs a test once per seeded
    # item, in an order that changes between runs (tags come from a Go map).
    def passes(results: list[tuple[str, str]]) -> Counter[str]:
        return Counter(name for name, result in results if result == "Pass")

    theirs_passed, ours_passed = passes(theirs), passes(ours)
    assert sum(theirs_passed.values()) > 10, f"Distribution passed too little: {theirs}"
    missing = {n: c - ours_passed[n] for n, c in theirs_passed.items() if ours_passed[n] < c}
    assert not missing, f"Distribution passes these (times) more often than we do: {missing}"
    print(
        f"Distribution passed {sum(theirs_passed.values())}/{len(theirs)}, "
        f"we passed {sum(r == 'Pass' for _, r in ours)}/{len(ours)}"
    )
