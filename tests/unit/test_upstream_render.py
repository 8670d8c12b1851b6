"""Conformance: we render every upstream KubePkg file as upstream does (tests/upstream/ORIGINS.md).

kubepkgspec ships its rendered objects as txtar snapshots beside its inputs; kubepkg HEAD's test
lists the object names its demo renders. ``convert`` must give exactly upstream's objects;
``render`` may add our ownership fields on top, so it must hold everything upstream's objects hold.
Every other upstream KubePkg file must convert and render without error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kubepkg.reconcile.objects import LABEL_PACKAGE
from gitops_kubepkg.reconcile.plan import is_subset
from gitops_kubepkg.reconcile.render import RenderOptions, render_objects
from gitops_kubepkg.spec.convert import ConvertError, convert

UPSTREAM = Path(__file__).resolve().parents[1] / "upstream"
SPEC = UPSTREAM / "kubepkgspec@35b39c4" / "pkg" / "manifest" / "testdata"

# extract_test.go: which input gives which snapshot.
SNAPSHOTS = {
    "example.kubepkg": "example.kubepkg.json",
    "proxy.kubepkg": "proxy.kubepkg.json",
}
NOT_OURS = {
    "example-simpled.kubepkg": "upstream re-extracts its own output as a KubePkg "
    "(kubepkg.ExtractAsKubePkg, manifests -> KubePkg), a reverse conversion we do not implement",
    "from-manifests.kubepkg": "upstream first turns the raw manifests into KubePkgs "
    "(kubepkg.ExtractAsKubePkg, a reverse conversion we do not implement) and snapshots those; "
    "the forward conversion of the same input is checked in test_from_manifests_*",
}


def txtar(path: Path) -> dict[str, Any]:
    """``-- name --`` sections of a txtar file, each parsed as YAML."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("-- ") and line.endswith(" --"):
            current = files.setdefault(line[3:-3], [])
        elif current is not None:
            current.append(line)
    return {name: yaml.safe_load("\n".join(lines)) for name, lines in files.items()}


def printed(value: Any) -> Any:
    """An object as upstream's snapshot printer writes it: empty objects and nulls left out."""
    if isinstance(value, dict):
        out = {k: printed(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v != {}}
    if isinstance(value, list):
        return [printed(v) for v in value]
    return value


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta["name"], meta.get("namespace", ""))


def load(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    out = []
    for doc in docs:
        out.extend(doc["items"] if doc.get("kind") == "KubePkgList" else [doc])
    return out


@pytest.mark.parametrize(
    "snapshot", sorted(SNAPSHOTS), ids=[f"kubepkgspec@35b39c4:{s}" for s in sorted(SNAPSHOTS)]
)
def test_convert_gives_kubepkgspec_snapshot_exactly(snapshot: str) -> None:
    kpkg = json.loads((SPEC / SNAPSHOTS[snapshot]).read_text())
    expected = list(txtar(SPEC / "__snapshots__" / f"{snapshot}.txtar").values())
    ours = [printed(o) for o in convert(kpkg)]
    assert [key(o) for o in ours] == [key(o) for o in expected]
    for mine, theirs in zip(ours, expected, strict=True):
        assert mine == theirs, key(mine)


@pytest.mark.parametrize(
    "snapshot", sorted(SNAPSHOTS), ids=[f"kubepkgspec@35b39c4:{s}" for s in sorted(SNAPSHOTS)]
)
def test_render_holds_everything_the_kubepkgspec_snapshot_holds(snapshot: str) -> None:
    kpkg = json.loads((SPEC / SNAPSHOTS[snapshot]).read_text())
    expected = list(txtar(SPEC / "__snapshots__" / f"{snapshot}.txtar").values())
    namespace = kpkg["metadata"]["namespace"]
    ours = {key(o): o for o in render_objects(kpkg, RenderOptions(namespace=namespace))}
    for theirs in expected:
        if theirs["kind"] == "Namespace" and theirs["metadata"]["name"] == namespace:
            assert key(theirs) not in ours  # never the namespace the KubePkg lives in
            continue
        theirs = {k: v for k, v in theirs.items() if k != "status"}  # render never sends status
        mine = ours[key(theirs)]
        assert mine["metadata"]["labels"][LABEL_PACKAGE] == kpkg["metadata"]["name"]
        assert is_subset(theirs, mine), key(theirs)


def test_every_kubepkgspec_snapshot_is_compared_or_skipped_with_its_reason() -> None:
    names = {p.name.removesuffix(".txtar") for p in (SPEC / "__snapshots__").glob("*.txtar")}
    assert names == set(SNAPSHOTS) | set(NOT_OURS)


@pytest.mark.parametrize("snapshot", sorted(NOT_OURS))
def test_snapshots_of_the_reverse_conversion(snapshot: str) -> None:
    pytest.skip(NOT_OURS[snapshot])


def test_kubepkg_head_demo_gives_the_names_its_test_lists() -> None:
    # kubepkg@v0.5.4 pkg/kubepkg/manifest/kubepkg_test.go; demo.yaml is the same blob at v0.5.4.
    test_go = (UPSTREAM / "kubepkg@v0.5.4/pkg/kubepkg/manifest/kubepkg_test.go").read_text()
    (kpkg,) = load(UPSTREAM / "kubepkg@v0.5.3/testdata/demo.yaml")
    names = sorted(
        f"{o['kind'].lower()}.{o['metadata']['name']}"
        for o in convert(kpkg)
        if o["kind"] != "Namespace"  # kubepkg's Extract (unlike ExtractSorted) adds none
    )
    assert names == [
        "configmap.demo",
        "configmap.demo-html",
        "configmap.endpoint-demo",
        "deployment.demo",
        "ingress.demo",
        "service.demo",
    ]
    assert all(f'"{n}"' in test_go for n in names)


def test_kubepkg_head_demo_ingress_has_a_rule_per_enabled_gateway() -> None:
    (kpkg,) = load(UPSTREAM / "kubepkg@v0.5.3/testdata/demo.yaml")
    objects = {key(o): o for o in convert(kpkg)}
    ingress = objects[("Ingress", "demo", "default")]
    # no expose given: only the always=true gateway gets a rule; every gateway gets an endpoint
    assert [r["host"] for r in ingress["spec"]["rules"]] == ["demo---default.internal"]
    assert objects[("ConfigMap", "endpoint-demo", "default")]["data"] == {
        "default": "http://demo",
        "internal": "https://demo---default.internal",
        "public": "https://demo---default.public",
    }


def upstream_kubepkg_files() -> Iterator[Path]:
    for path in sorted(UPSTREAM.rglob("*")):
        if path.suffix in (".json", ".yaml") and path.parent.name != "__snapshots__":
            yield path


CONVERT_REFUSES = {
    "simple.kube-pkg.invalid.json": re.escape('spec.services["#"].paths.http: must be a string'),
}
NOTHING_TO_RENDER = {
    "demo.k0s.yaml": "carries only status.images (an image lock list) and no spec",
}


@pytest.mark.parametrize(
    "path",
    list(upstream_kubepkg_files()),
    ids=[str(p.relative_to(UPSTREAM)) for p in upstream_kubepkg_files()],
)
def test_every_upstream_kubepkg_file_converts_and_renders(path: Path) -> None:
    for kpkg in load(path):
        if path.name in CONVERT_REFUSES:
            with pytest.raises(ConvertError, match=CONVERT_REFUSES[path.name]):
                convert(kpkg)
            continue
        objects = convert(kpkg)
        rendered = render_objects(kpkg, RenderOptions(namespace="default"))
        if path.name in NOTHING_TO_RENDER:
            assert [o["kind"] for o in objects] == ["Namespace"]
            assert rendered == []
            continue
        assert rendered
        assert all(o["metadata"]["labels"][LABEL_PACKAGE] for o in rendered)


def test_from_manifests_is_converted_forward_as_kubepkgspec_patches_manifests() -> None:
    kpkg = json.loads((SPEC / "from-manifests.kubepkg.json").read_text())
    objects = {key(o): o for o in convert(kpkg)}
    ns = "device-system"
    assert next(iter(objects)) == ("Namespace", ns, "")
    # every object lands in the package's namespace, RoleBinding subjects too
    assert all(k[2] == ns for k in objects if k[0] != "Namespace")
    binding = objects[("ClusterRoleBinding", "gpu-feature-discovery-role-binding", ns)]
    assert binding["subjects"][0]["namespace"] == ns
    # arch affinity from the platform annotation only where no nodeSelectorTerms exist
    gc = objects[("Deployment", "gpu-feature-discovery-node-feature-discovery-gc", ns)]
    terms = gc["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}
            ]
        }
    ]
    gfd = objects[("DaemonSet", "gpu-feature-discovery-gpu-feature-discovery", ns)]
    gfd_terms = gfd["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert all(t["matchExpressions"][0]["key"] != "kubernetes.io/arch" for t in gfd_terms)
    # the package's labels replace Helm's instance and version
    assert gc["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"
    assert gc["metadata"]["labels"]["helm.sh/chart"] == "node-feature-discovery-0.15.3"
    # manifest ConfigMaps get spec/digest and the Deployments mounting them a reload digest
    conf = objects[("ConfigMap", "gpu-feature-discovery-node-feature-discovery-master-conf", ns)]
    digest = conf["metadata"]["annotations"]["spec/digest"]
    master = objects[("Deployment", "gpu-feature-discovery-node-feature-discovery-master", ns)]
    annotations = master["spec"]["template"]["metadata"]["annotations"]
    assert annotations["configmap.reloader.octohelm.tech/reload"] == conf["metadata"]["name"]
    assert annotations[f"digest.configmap.reloader.octohelm.tech/{conf['metadata']['name']}"] == (
        digest
    )
