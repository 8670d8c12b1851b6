"""The KubePkg validation rules, table-driven: each case is a sentence, an input and the problems."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.errors import InputError, ValidationError
from gitops_kubepkg.spec import load_path, parse_kubepkgs
from gitops_kubepkg.spec.document import parse_documents

REPO = Path(__file__).resolve().parents[2]
SEED = json.loads((REPO / "examples" / "kubepkg.seed.json").read_text())
DIGEST = "sha256:" + "a" * 64
WEB = 'spec.manifests["web.default.deployment"]'
CONTAINER = f"{WEB}.spec.template.spec.containers[0]"


def seed(**changes: Any) -> dict[str, Any]:
    """The seed example with dotted-path changes applied (value None deletes the field)."""
    doc = copy.deepcopy(SEED)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return doc


def problems_of(doc: Any, name: str = "pkg.json") -> list[str]:
    try:
        parse_kubepkgs(json.dumps(doc).encode(), name)
    except ValidationError as e:
        return [str(p) for p in e.problems]
    return []


def web(**changes: Any) -> dict[str, Any]:
    """The seed with changes inside the web Deployment object."""
    doc = seed()
    obj = doc["spec"]["manifests"]["web.default.deployment"]
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return doc


TPL = "spec__template__spec__containers__0"

CASES: list[tuple[str, Any, list[str]]] = [
    ("the seed example is valid", seed(), []),
    (
        "a wrong apiVersion is named",
        seed(apiVersion="octohelm.tech/v1"),
        ["pkg.json: apiVersion: must be 'octohelm.tech/v1alpha1', got 'octohelm.tech/v1'"],
    ),
    ("a missing apiVersion is required", seed(apiVersion=None), ["pkg.json: apiVersion: required"]),
    (
        "a wrong kind is named",
        seed(kind="Pkg"),
        ["pkg.json: kind: must be 'KubePkg', got 'Pkg'"],
    ),
    ("metadata is required", seed(metadata=None), ["pkg.json: metadata: required"]),
    (
        "a name that is not a DNS label is refused",
        seed(metadata={"name": "Demo_App"}),
        [
            "pkg.json: metadata.name: 'Demo_App' is not a DNS-1123 label "
            "(lowercase letters, digits and '-', at most 63)"
        ],
    ),
    (
        "a name of the wrong type says what it got",
        seed(metadata={"name": 7}),
        ["pkg.json: metadata.name: must be string, got number"],
    ),
    # Upstream's demo.k0s.yaml has no spec: it ships the images its status.images lists.
    ("a KubePkg without spec is an images-only package", seed(spec=None), []),
    (
        "spec must be an object",
        seed(spec=[1]),
        ["pkg.json: spec: must be object, got list"],
    ),
    ("spec.version is required", seed(spec__version=None), ["pkg.json: spec.version: required"]),
    (
        "spec.version must be semver",
        seed(spec__version="1.2"),
        ["pkg.json: spec.version: '1.2' is not a semantic version (like 1.2.3)"],
    ),
    (
        "a prerelease version is fine",
        seed(spec__version="1.2.3-rc.1+build.5"),
        [],
    ),
    (
        "spec.images must be a map",
        seed(spec__images=["nginx"]),
        ["pkg.json: spec.images: must be object, got list"],
    ),
    (
        "an image key that does not parse is named",
        seed(spec__images={"docker.io/library/nginx:alpine": "", "Not An Image": ""}),
        [
            "pkg.json: spec.images[\"Not An Image\"]: key: 'Not An Image' is not an image reference ([host/]path[:tag][@digest])"
        ],
    ),
    (
        "a malformed digest is refused",
        seed(spec__images={"docker.io/library/nginx:alpine": "sha256:abc"}),
        [
            "pkg.json: spec.images[\"docker.io/library/nginx:alpine\"]: 'sha256:abc': sha256 wants 64 lowercase hex characters"
        ],
    ),
    (
        "an unknown digest algorithm is refused",
        seed(spec__images={"docker.io/library/nginx:alpine": "md5:" + "a" * 32}),
        [
            'pkg.json: spec.images["docker.io/library/nginx:alpine"]: \'md5:'
            + "a" * 32
            + "': unsupported digest algorithm 'md5' (want sha256 or sha512)"
        ],
    ),
    (
        "a well-formed digest is accepted",
        seed(spec__images={"docker.io/library/nginx:alpine": DIGEST}),
        [],
    ),
    (
        "a digest value must be a string",
        seed(spec__images={"docker.io/library/nginx:alpine": 1}),
        [
            'pkg.json: spec.images["docker.io/library/nginx:alpine"]: must be a digest string, "" or an image object, got number'
        ],
    ),
    (
        "a manifest without kind is named by key and field",
        web(kind=None),
        [f"pkg.json: {WEB}.kind: required"],
    ),
    (
        "a manifest without apiVersion is named",
        web(apiVersion=None),
        [f"pkg.json: {WEB}.apiVersion: required"],
    ),
    (
        "a manifest without metadata.name is named",
        web(metadata={"namespace": "default"}),
        [f"pkg.json: {WEB}.metadata.name: required"],
    ),
    # Upstream accepted any key (the walker's dotted path names the object), so we do too.
    (
        "a manifest key that disagrees with the object is accepted",
        web(metadata={"name": "api", "namespace": "default"}),
        [],
    ),
    (
        "a manifest must be an object",
        seed(spec__manifests={"web.default.deployment": "x"}),
        [f"pkg.json: {WEB}: must be a Kubernetes object or a map or list of them"],
    ),
    # Upstream's exporter resolved images from the containers (kubepkgspec lists none in
    # spec.images): an unlisted image joins KubePkg.images instead of being refused.
    (
        "a container image missing from spec.images is accepted",
        web(**{f"{TPL}__image": "docker.io/library/redis:7"}),
        [],
    ),
    (
        "a familiar image name matches its normalised listing",
        web(**{f"{TPL}__image": "nginx:alpine"}),
        [],
    ),
    (
        "an image pinned by the listed digest matches",
        seed(
            spec__images={"docker.io/library/nginx:alpine": DIGEST},
            spec__manifests={
                "web.default.deployment": web(**{f"{TPL}__image": f"nginx@{DIGEST}"})["spec"][
                    "manifests"
                ]["web.default.deployment"]
            },
        ),
        [],
    ),
    (
        "every problem is reported at once",
        seed(apiVersion="x/v1", spec__version="one"),
        [
            "pkg.json: apiVersion: must be 'octohelm.tech/v1alpha1', got 'x/v1'",
            "pkg.json: spec.version: 'one' is not a semantic version (like 1.2.3)",
        ],
    ),
    (
        "a KubePkgList names its items",
        {
            "apiVersion": "octohelm.tech/v1alpha1",
            "kind": "KubePkgList",
            "items": [seed(), seed(spec__version="x")],
        },
        ["pkg.json: items[1].spec.version: 'x' is not a semantic version (like 1.2.3)"],
    ),
    (
        "a document that is not an object is refused",
        ["a"],
        ["pkg.json: document: must be object, got list"],
    ),
]


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation(doc: Any, expected: list[str]) -> None:
    assert problems_of(doc) == expected


def test_a_list_with_the_same_package_twice_is_refused() -> None:
    doc = {"apiVersion": "octohelm.tech/v1alpha1", "kind": "KubePkgList", "items": [seed(), seed()]}
    assert problems_of(doc) == ["pkg.json: KubePkg 'demo' is defined more than once"]


def test_the_seed_example_loads_unchanged() -> None:
    (pkg,) = parse_kubepkgs((REPO / "examples" / "kubepkg.seed.json").read_bytes(), "seed.json")
    assert pkg.name == "demo" and pkg.version == "0.0.1"
    assert pkg.to_object() == {**SEED, "spec": {**SEED["spec"]}}


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.yaml", b"", "empty.yaml: empty file, want a KubePkg or KubePkgList"),
        ("blank.yaml", b"\n  \n", "blank.yaml: empty file, want a KubePkg or KubePkgList"),
        (
            "only-separators.yaml",
            b"---\n---\n",
            "only-separators.yaml: no documents, want a KubePkg or KubePkgList",
        ),
        ("bad.yaml", b"a: [1\n", "bad.yaml:2:1: invalid YAML: did not find expected ',' or ']'"),
        ("dup.yaml", b"a: 1\nb: 2\na: 3\n", "dup.yaml:3:1: invalid YAML: duplicate key 'a'"),
        ("dup.json", b'{"a": 1, "a": 2}', "dup.json: invalid JSON: duplicate key 'a'"),
        ("bad.json", b'{"a": }', "bad.json:1:7: invalid JSON: Expecting value"),
        ("latin1.yaml", b"a: \xff\n", "latin1.yaml: not UTF-8 text (byte 3)"),
    ],
    ids=[
        "an empty file",
        "a blank file",
        "only separators",
        "bad YAML",
        "a duplicate YAML key",
        "a duplicate JSON key",
        "bad JSON",
        "bytes that are not UTF-8",
    ],
)
def test_unreadable_documents_are_named(name: str, data: bytes, message: str) -> None:
    with pytest.raises(InputError) as e:
        parse_documents(data, name)
    assert str(e.value) == message


def test_multi_document_yaml_is_read_and_problems_name_the_document() -> None:
    import yaml

    text = (
        yaml.safe_dump(seed())
        + "---\n"
        + yaml.safe_dump(seed(metadata={"name": "other"}, spec__version="2"))
    )
    with pytest.raises(ValidationError) as e:
        parse_kubepkgs(text.encode(), "two.yaml")
    assert [str(p) for p in e.value.problems] == [
        "two.yaml: documents[1].spec.version: '2' is not a semantic version (like 1.2.3)"
    ]


def test_a_directory_is_searched_for_kubepkg_files(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "kubepkg.json").write_text(json.dumps(seed()))
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "kubepkg.yaml").write_text("apiVersion: octohelm.tech/v1alpha1\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "kubepkg.json").write_text("not read")
    with pytest.raises(ValidationError) as e:
        load_path(tmp_path)
    assert [str(p) for p in e.value.problems] == [
        f"{tmp_path}/api/kubepkg.yaml: kind: must be 'KubePkg', got None",
        f"{tmp_path}/api/kubepkg.yaml: metadata: required",
    ]


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as e:
        load_path(tmp_path / "nope.yaml")
    assert "nope.yaml: cannot read: No such file or directory" in str(e.value)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args], capture_output=True, text=True, check=False
    )


def test_validate_accepts_the_seed_example() -> None:
    result = run_cli("validate", str(REPO / "examples" / "kubepkg.seed.json"))
    assert result.returncode == 0, result.stderr
    assert "demo 0.0.1" in result.stdout


def test_validate_rejects_with_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "pkgs" / "web" / "kubepkg.yaml"
    bad.parent.mkdir(parents=True)
    import yaml

    bad.write_text(
        yaml.safe_dump(web(kind=None, **{"metadata": {"name": "web", "namespace": "default"}}))
    )
    (tmp_path / "broken.yaml").write_text("a: [\n")
    result = run_cli("validate", str(tmp_path / "pkgs"), str(tmp_path / "broken.yaml"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{bad}: {WEB}.kind: required",
        f"{tmp_path}/broken.yaml:2:1: invalid YAML: did not find expected node content",
    ]


def test_validate_json_output_is_for_scripts(tmp_path: Path) -> None:
    result = run_cli("validate", "-o", "json", str(REPO / "examples" / "kubepkg.seed.json"))
    out = json.loads(result.stdout)
    assert out["valid"] is True and out["packages"][0]["name"] == "demo"
