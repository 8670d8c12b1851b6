"""The structured KubePkg spec (gen 2/3, kubepkgspec), field by field, and upstream's own files.

Table-driven: each case is a sentence, a change to a valid structured package and the problems
(``file: field.path: message``) the model reports; an empty list means the package is valid.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kubepkg.errors import ValidationError
from gitops_kubepkg.spec import parse_kubepkgs
from gitops_kubepkg.spec.crds import kubepkg_crd
from gitops_kubepkg.spec.document import read_documents
from gitops_kubepkg.spec.model import KubePkg, check_documents
from gitops_kubepkg.spec.schema import KUBEPKG

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = REPO / "tests" / "upstream"
DIGEST = "sha256:" + "b" * 64
OTHER = "sha256:" + "c" * 64

STRUCTURED: dict[str, Any] = {
    "apiVersion": "octohelm.tech/v1alpha1",
    "kind": "KubePkg",
    "metadata": {"name": "demo", "namespace": "default"},
    "spec": {
        "version": "0.0.2",
        "deploy": {"kind": "Deployment", "spec": {"replicas": 1}},
        "config": {"X": "x"},
        "containers": {
            "web": {
                "image": {"name": "docker.io/library/nginx", "tag": "1.25.0-alpine"},
                "ports": {"http": 80},
                "env": {"POD": "@field/metadata.name"},
            }
        },
        "services": {"#": {"ports": {"http": 80}, "paths": {"http": "/"}}},
        "volumes": {
            "html": {
                "type": "ConfigMap",
                "mountPath": "/usr/share/nginx/html",
                "spec": {"data": {"index.html": "<div>hello</div>"}},
            }
        },
    },
}

WEB = 'spec.containers["web"]'


def pkg(**changes: Any) -> dict[str, Any]:
    """The structured package with ``a__b`` dotted changes under spec (None deletes)."""
    doc = copy.deepcopy(STRUCTURED)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = doc["spec"]
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


def problems_of(doc: Any) -> list[str]:
    try:
        parse_kubepkgs(json.dumps(doc).encode(), "pkg.json")
    except ValidationError as e:
        return [str(p) for p in e.problems]
    return []


def load(doc: Any) -> KubePkg:
    return parse_kubepkgs(json.dumps(doc).encode(), "pkg.json")[0]


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("a structured package is valid", pkg(), []),
    ("a leading v in the version is accepted", pkg(version="v1.29.0-alpine"), []),
    (
        "an unknown container field is named",
        pkg(containers__web__imag="nginx"),
        [f"pkg.json: {WEB}.imag: unknown field"],
    ),
    (
        "an unknown spec field is named",
        pkg(deploymnet={}),
        ["pkg.json: spec.deploymnet: unknown field"],
    ),
    (
        "a container without image is refused",
        pkg(containers__web__image=None),
        [f"pkg.json: {WEB}.image: required"],
    ),
    (
        "an image without name is refused",
        pkg(containers__web__image={"tag": "1"}),
        [f"pkg.json: {WEB}.image.name: required"],
    ),
    (
        "an image name that does not parse is named",
        pkg(containers__web__image={"name": "Not An Image"}),
        [
            f"pkg.json: {WEB}.image.name: 'Not An Image' is not an image reference ([host/]path[:tag][@digest])"
        ],
    ),
    (
        "a malformed image digest is named",
        pkg(containers__web__image={"name": "nginx", "digest": "sha256:1"}),
        [f"pkg.json: {WEB}.image.digest: 'sha256:1': sha256 wants 64 lowercase hex characters"],
    ),
    (
        "a pull policy outside the enum is named",
        pkg(containers__web__image={"name": "nginx", "pullPolicy": "Sometimes"}),
        [
            f"pkg.json: {WEB}.image.pullPolicy: must be one of Always, Never, IfNotPresent; got 'Sometimes'"
        ],
    ),
    (
        "a container field of the wrong type is named",
        pkg(containers__web__command="nginx"),
        [f"pkg.json: {WEB}.command: must be list, got string"],
    ),
    (
        "a port number must be an integer",
        pkg(containers__web__ports={"http": "80"}),
        [f'pkg.json: {WEB}.ports["http"]: must be integer, got string'],
    ),
    (
        "a port number must be a port",
        pkg(containers__web__ports={"http": 70000}),
        [f'pkg.json: {WEB}.ports["http"]: must be at most 65535'],
    ),
    (
        "a port key with protocol and host port is accepted",
        pkg(containers__web__ports={"udp-dns:53": 53, "sctp-x": 9}),
        [],
    ),
    (
        "a bad port key is named",
        pkg(containers__web__ports={"HTTP": 80}),
        [
            f"pkg.json: {WEB}.ports[\"HTTP\"]: 'HTTP' is not a port name ([udp-|sctp-]<name>[:<hostPort>], lowercase letters, digits and '-')"
        ],
    ),
    (
        "a host port out of range is named",
        pkg(containers__web__ports={"http:0": 80}),
        [f"pkg.json: {WEB}.ports[\"http:0\"]: 'http:0': host port 0 is not between 1 and 65535"],
    ),
    (
        "a port name longer than 15 characters is named",
        pkg(services__a={"ports": {"a-very-long-port-name": 1}}),
        [
            'pkg.json: spec.services["a"].ports["a-very-long-port-name"]: '
            "'a-very-long-port-name': a port name has at most 15 characters"
        ],
    ),
    (
        "env references of every kind are accepted",
        pkg(
            containers__web__env={
                "A": "@field/metadata.name",
                "B": "@resource/limits.cpu",
                "C": "@configMap/cluster-info/id?",
                "D": "@secret/db/password",
                "E": "plain value",
            }
        ),
        [],
    ),
    (
        "an unknown env reference kind is named",
        pkg(containers__web__env={"A": "@configmap/x/y"}),
        [
            f"pkg.json: {WEB}.env[\"A\"]: '@configmap/x/y': unknown reference @configmap/ "
            "(want @field/, @resource/, @configMap/ or @secret/)"
        ],
    ),
    (
        "a secret reference without key is named",
        pkg(config={"A": "@secret/db"}),
        ["pkg.json: spec.config[\"A\"]: '@secret/db': want @secret/<name>/<key>[?]"],
    ),
    (
        "an env name that is not one is named",
        pkg(config={"1 X": "x"}),
        ["pkg.json: spec.config[\"1 X\"]: '1 X' is not an environment variable name"],
    ),
    (
        "a container name that is not a DNS label is named",
        pkg(containers={"Web": STRUCTURED["spec"]["containers"]["web"]}),
        ["pkg.json: spec.containers[\"Web\"]: 'Web' is not a container name (a DNS-1123 label)"],
    ),
    (
        "a bad deploy kind is named",
        pkg(deploy={"kind": "Pod"}),
        [
            "pkg.json: spec.deploy.kind: must be one of Deployment, DaemonSet, StatefulSet, Job, "
            "CronJob, ConfigMap, Secret, EndpointSlice; got 'Pod'"
        ],
    ),
    ("an empty deploy is accepted", pkg(deploy={}), []),
    (
        "a deploy without kind is refused",
        pkg(deploy={"spec": {}}),
        [
            "pkg.json: spec.deploy.kind: required when deploy is not empty",
            "pkg.json: spec.deploy.spec: only for kind Deployment, DaemonSet, StatefulSet, Job, CronJob",
        ],
    ),
    (
        "a ConfigMap deploy has no spec",
        pkg(deploy={"kind": "ConfigMap", "spec": {"replicas": 1}}),
        [
            "pkg.json: spec.deploy.spec: only for kind Deployment, DaemonSet, StatefulSet, Job, CronJob"
        ],
    ),
    (
        "an EndpointSlice deploy needs addressType and ports",
        pkg(deploy={"kind": "EndpointSlice", "addresses": ["10.0.0.1"]}),
        [
            "pkg.json: spec.deploy.addressType: required for kind EndpointSlice",
            "pkg.json: spec.deploy.ports: required for kind EndpointSlice",
        ],
    ),
    (
        "deploy labels and annotations are string maps",
        pkg(deploy={"kind": "Job", "labels": {"a": 1}, "annotations": {"b": "c"}}),
        ['pkg.json: spec.deploy.labels["a"]: must be string, got number'],
    ),
    (
        "an unknown deploy field is named",
        pkg(deploy={"kind": "Deployment", "replicas": 1}),
        ["pkg.json: spec.deploy.replicas: unknown field"],
    ),
    (
        "a bad volume type is named",
        pkg(volumes={"data": {"type": "NFS", "mountPath": "/d"}}),
        [
            'pkg.json: spec.volumes["data"].type: must be one of EmptyDir, HostPath, ConfigMap, '
            "Secret, PersistentVolumeClaim, Image; got 'NFS'"
        ],
    ),
    (
        "a volume needs a mountPath",
        pkg(volumes={"data": {"type": "EmptyDir"}}),
        ['pkg.json: spec.volumes["data"].mountPath: required'],
    ),
    (
        "a PersistentVolumeClaim volume needs a spec",
        pkg(volumes={"data": {"type": "PersistentVolumeClaim", "mountPath": "/d"}}),
        ['pkg.json: spec.volumes["data"].spec: required for type PersistentVolumeClaim'],
    ),
    (
        "an EmptyDir volume has no spec",
        pkg(volumes={"data": {"type": "EmptyDir", "mountPath": "/d", "spec": {"data": {}}}}),
        [
            'pkg.json: spec.volumes["data"].spec: only for type ConfigMap, Secret, PersistentVolumeClaim'
        ],
    ),
    (
        "a mount propagation outside the enum is named",
        pkg(volumes={"d": {"type": "EmptyDir", "mountPath": "/d", "mountPropagation": "None"}}),
        [
            'pkg.json: spec.volumes["d"].mountPropagation: must be one of Bidirectional, '
            "HostToContainer; got 'None'"
        ],
    ),
    (
        "an Image volume needs a reference",
        pkg(volumes={"m": {"type": "Image", "mountPath": "/m", "opt": {}}}),
        ['pkg.json: spec.volumes["m"].opt.reference: required for type Image'],
    ),
    (
        "service paths may be a list of strings",
        pkg(services={"#": {"ports": {"http": 80}, "paths": {"http": ["/a", "/b"]}}}),
        [],
    ),
    (
        "service paths of another type are refused",
        pkg(services={"#": {"paths": {"http": 1}}}),
        ['pkg.json: spec.services["#"].paths["http"]: must be a string or a list of strings'],
    ),
    (
        "an Ingress expose with gateway and options is accepted",
        pkg(
            services={
                "#": {"expose": {"type": "Ingress", "gateway": "public", "options": {"a": "b"}}}
            }
        ),
        [],
    ),
    (
        "a NodePort expose has no gateway",
        pkg(services={"#": {"expose": {"type": "NodePort", "gateway": ["public"]}}}),
        ['pkg.json: spec.services["#"].expose.gateway: only for type Ingress'],
    ),
    (
        "Ingress options on a NodePort are refused",
        pkg(services={"#": {"expose": {"type": "NodePort", "options": {"a": "b"}}}}),
        ['pkg.json: spec.services["#"].expose.options: only for type Ingress'],
    ),
    (
        "a gateway list of other types is refused",
        pkg(services={"#": {"expose": {"type": "Ingress", "gateway": [1]}}}),
        ['pkg.json: spec.services["#"].expose.gateway: must be a string or a list of strings'],
    ),
    (
        "a deploy with only annotations needs a kind",
        pkg(deploy={"annotations": {"a": "b"}}),
        ["pkg.json: spec.deploy.kind: required when deploy is not empty"],
    ),
    (
        "an expose type outside the enum is named",
        pkg(services={"#": {"expose": {"type": "LoadBalancer"}}}),
        [
            "pkg.json: spec.services[\"#\"].expose.type: must be one of NodePort, Ingress; got 'LoadBalancer'"
        ],
    ),
    (
        "a service name prefixed ~ is accepted",
        pkg(services={"~global": {"clusterIP": "None"}}),
        [],
    ),
    (
        "a service account needs rules",
        pkg(serviceAccount={"scope": "Cluster"}),
        ["pkg.json: spec.serviceAccount.rules: required"],
    ),
    (
        "a service account scope outside the enum is named",
        pkg(serviceAccount={"scope": "World", "rules": []}),
        ["pkg.json: spec.serviceAccount.scope: must be one of Cluster, Namespace; got 'World'"],
    ),
    (
        "kubepkgspec image entries are accepted beside gen 1 ones",
        pkg(
            images={
                "docker.io/library/redis:7": "",
                "busybox": {"name": "docker.io/library/busybox", "tag": "1.36"},
            }
        ),
        [],
    ),
    (
        "an unknown field in a kubepkgspec image entry is named",
        pkg(images={"busybox": {"name": "busybox", "tga": "1"}}),
        ['pkg.json: spec.images["busybox"].tga: unknown field'],
    ),
    (
        "nested manifests with free-form keys are accepted",
        pkg(
            manifests={
                "services": {
                    "extra": {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": {"name": "extra"},
                    }
                },
                "off": None,
                "list": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}],
            }
        ),
        [],
    ),
    (
        "a manifest leaf that is not an object is named",
        pkg(manifests={"services": {"extra": "x"}}),
        [
            'pkg.json: spec.manifests["services"]["extra"]: must be a Kubernetes object or a map or list of them'
        ],
    ),
    (
        "a nested KubePkg in manifests is validated as a KubePkg",
        pkg(
            manifests={
                "child": {
                    "apiVersion": "octohelm.tech/v1alpha1",
                    "kind": "KubePkg",
                    "metadata": {"name": "child"},
                    "spec": {"version": "1.0.0", "containers": {"c": {"imag": {}}}},
                }
            }
        ),
        [
            'pkg.json: spec.manifests["child"].spec.containers["c"].image: required',
            'pkg.json: spec.manifests["child"].spec.containers["c"].imag: unknown field',
        ],
    ),
    (
        "status images must be digests",
        {**pkg(), "status": {"images": {"nginx:1": "latest"}}},
        ["pkg.json: status.images[\"nginx:1\"]: 'latest' is not a digest (want sha256:<64 hex>)"],
    ),
    (
        "an unknown status field is named",
        {**pkg(), "status": {"endpoints": {}}},
        ["pkg.json: status.endpoints: unknown field"],
    ),
    (
        "an unknown top-level field is named",
        {**pkg(), "sepc": {}},
        ["pkg.json: sepc: unknown field"],
    ),
]


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_structured_validation(doc: dict[str, Any], expected: list[str]) -> None:
    assert problems_of(doc) == expected


def test_the_version_is_normalised_in_the_model_and_its_spec() -> None:
    loaded = load(pkg(version="v1.29.0-alpine"))
    assert loaded.version == "1.29.0-alpine"
    assert loaded.spec["version"] == "1.29.0-alpine"


def test_to_object_returns_the_spec_as_written() -> None:
    doc = pkg()
    assert load(doc).to_object() == doc


def test_images_are_the_union_of_every_image_the_package_names_or_runs() -> None:
    doc = pkg(
        images={"docker.io/library/redis:7": "", "tools": {"name": "busybox", "digest": DIGEST}},
        containers__sidecar={"image": {"name": "envoy", "tag": "1.30"}},
        volumes={"m": {"type": "Image", "mountPath": "/m", "opt": {"reference": "models:v1"}}},
        manifests={
            "jobs": {
                "nightly": {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "metadata": {"name": "nightly"},
                    "spec": {
                        "jobTemplate": {
                            "spec": {
                                "template": {
                                    "spec": {
                                        "initContainers": [{"name": "i", "image": "alpine:3"}],
                                        "containers": [{"name": "c", "image": f"curl:8@{OTHER}"}],
                                    }
                                }
                            }
                        }
                    },
                }
            }
        },
    )
    doc["status"] = {"images": {"docker.io/library/redis:7": DIGEST, "extra:1": ""}}
    assert dict(load(doc).images) == {
        "docker.io/library/redis:7": DIGEST,
        "busybox": DIGEST,
        "envoy:1.30": "",
        "docker.io/library/nginx:1.25.0-alpine": "",
        "models:v1": "",
        "alpine:3": "",
        "curl:8": OTHER,
        "extra:1": "",
    }


def test_a_digest_the_spec_pins_twice_differently_is_refused() -> None:
    doc = pkg(
        images={"nginx:1": DIGEST},
        containers={"web": {"image": {"name": "nginx", "tag": "1", "digest": OTHER}}},
    )
    assert problems_of(doc) == [
        f'pkg.json: {WEB}.image: digest {OTHER} differs from {DIGEST} at spec.images["nginx:1"]'
    ]


def test_status_keeps_images_and_digests_as_written() -> None:
    digests = [{"type": "blob", "digest": DIGEST, "name": "docker.io/library/nginx", "size": 3}]
    doc = {**pkg(), "status": {"images": {"nginx:1": DIGEST}, "digests": digests}}
    loaded = load(doc)
    assert dict(loaded.status_images) == {"nginx:1": DIGEST}
    assert list(loaded.status_digests) == digests


def test_nested_kubepkg_images_join_the_parent() -> None:
    child = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "child"},
        "spec": {"version": "1.0.0", "images": {"redis:7": DIGEST}},
    }
    loaded = load(pkg(manifests={"child": child}))
    assert loaded.images["redis:7"] == DIGEST
    assert loaded.manifests["child"] == child


def upstream_files() -> list[Path]:
    return sorted(p for p in UPSTREAM.rglob("*") if p.suffix in (".json", ".yaml"))


def upstream_documents(path: Path) -> list[Any]:
    """The file's documents; upstream's type tests decode into the KubePkg type, which supplies
    the apiVersion and kind a bare ``{metadata, spec}`` file leaves out."""
    docs = read_documents(path)
    for doc in docs:
        if isinstance(doc, dict) and "apiVersion" not in doc and "kind" not in doc:
            doc.update({"apiVersion": "octohelm.tech/v1alpha1", "kind": "KubePkg"})
    return docs


def test_every_upstream_kubepkg_file_is_read() -> None:
    files = upstream_files()
    assert len(files) >= 12  # every generation: kubepkg v0.0.1 .. v0.5.4, kubepkgspec, crpe
    for path in files:
        pkgs, problems = check_documents(upstream_documents(path), str(path))
        if path.name.endswith(".invalid.json"):
            # kube_pkg_test.go: refused at /spec/services/#/paths/http
            assert [p.path for p in problems] == ['spec.services["#"].paths["http"]'], path
        else:
            assert [str(p) for p in problems] == [], path
            assert pkgs, path


def test_the_crd_carries_the_one_schema_the_validator_walks() -> None:
    (version,) = kubepkg_crd()["spec"]["versions"]
    assert version["schema"]["openAPIV3Schema"] == KUBEPKG
    on_disk = yaml.safe_load((REPO / "deploy" / "crds" / "kubepkg.yaml").read_text())
    assert on_disk["spec"]["versions"][0]["schema"]["openAPIV3Schema"] == json.loads(
        json.dumps(KUBEPKG)
    )


def test_an_images_only_package_is_exported_with_its_lock_in_status() -> None:
    from gitops_kubepkg.airgap.export import pinned_kubepkg_json

    k0s = UPSTREAM / "kubepkg@v0.5.4" / "testdata" / "demo.k0s.yaml"
    (loaded,) = parse_kubepkgs(k0s.read_bytes(), str(k0s))
    assert loaded.version == "" and "registry.k8s.io/pause:3.8" in loaded.images
    written = json.loads(pinned_kubepkg_json([loaded], []))
    assert "spec" not in written
    assert written["status"]["images"] == dict(loaded.images)
    (again,) = parse_kubepkgs(json.dumps(written).encode(), "kubepkg.json")
    assert again.images == loaded.images
