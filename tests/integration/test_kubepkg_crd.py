"""The KubePkg CRD on a real kube-apiserver gives the verdict our validator gives.

Every upstream KubePkg file and the seed are applied with ``kubectl apply`` (strict field
validation) and read back unchanged; a file with an unknown field is refused; and for every
document of the structured-spec unit table, the API server refuses exactly when the schema walk
in ``spec/schema.py`` reports a problem (the semantic checks of ``model.py`` are ours alone).
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.spec.schema import KUBEPKG
from gitops_kubepkg.spec.schema import check as check_schema
from tests.integration import cluster
from tests.unit.test_spec_structured import CASES, upstream_documents, upstream_files

pytestmark = pytest.mark.integration

SEED = cluster.REPO / "examples" / "kubepkg.seed.json"


def kubectl(
    kubeconfig: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cluster.kubectl_path(), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def in_namespace(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out.setdefault("metadata", {})["namespace"] = namespace
    return out


def kubepkgs_of(path: Path) -> list[dict[str, Any]]:
    """The file's KubePkgs; a KubePkgList's items one by one (kubectl applies objects)."""
    out: list[dict[str, Any]] = []
    for doc in upstream_documents(path) if path != SEED else [json.loads(SEED.read_text())]:
        out.extend(doc["items"] if doc.get("kind") == "KubePkgList" else [doc])
    return out


ACCEPTED = [p for p in upstream_files() if not p.name.endswith(".invalid.json")] + [SEED]


@pytest.mark.parametrize("path", ACCEPTED, ids=[str(p.relative_to(cluster.REPO)) for p in ACCEPTED])
def test_kubectl_apply_accepts_every_upstream_kubepkg_and_keeps_its_spec(
    kube: object, kubeconfig: str, namespace: str, path: Path
) -> None:
    for doc in kubepkgs_of(path):
        doc = in_namespace(doc, namespace)
        applied = kubectl(
            kubeconfig, "apply", "--validate=strict", "-f", "-", stdin=json.dumps(doc)
        )
        assert applied.returncode == 0, applied.stderr
        got = kubectl(
            kubeconfig, "get", "kubepkg", doc["metadata"]["name"], "-n", namespace, "-o", "json"
        )
        assert got.returncode == 0, got.stderr
        # Nothing pruned: the API server kept every field of the spec as written.
        assert json.loads(got.stdout).get("spec") == doc.get("spec")


def test_kubectl_apply_refuses_an_unknown_field(
    kube: object, kubeconfig: str, namespace: str
) -> None:
    doc = in_namespace(json.loads(SEED.read_text()), namespace)
    doc["spec"]["imagez"] = {}
    applied = kubectl(kubeconfig, "apply", "--validate=strict", "-f", "-", stdin=json.dumps(doc))
    assert applied.returncode != 0
    assert 'unknown field "spec.imagez"' in applied.stderr


AGREEMENT = [(name, doc) for name, doc, _ in CASES]


@pytest.mark.parametrize(("doc"), [d for _, d in AGREEMENT], ids=[n for n, _ in AGREEMENT])
def test_the_api_server_and_the_schema_walk_agree(
    kube: object, kubeconfig: str, namespace: str, doc: dict[str, Any]
) -> None:
    doc = in_namespace(doc, namespace)
    # The API server never validates status on the main resource (the status subresource
    # owns it), so agreement is about everything else.
    doc.pop("status", None)
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    walked = list(check_schema(body, KUBEPKG, ""))
    applied = kubectl(
        kubeconfig,
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=json.dumps(doc),
    )
    assert (applied.returncode != 0) == bool(walked), (walked, applied.stderr)


def test_kubectl_explain_describes_the_structured_spec(kube: object, kubeconfig: str) -> None:
    explained = kubectl(kubeconfig, "explain", "kubepkg.spec.containers.image")
    assert explained.returncode == 0, explained.stderr
    assert "A container image: name[:tag][@digest]." in explained.stdout
    assert "pullPolicy" in explained.stdout
