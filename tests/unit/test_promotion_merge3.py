"""The per-field three-way merge of KubePkg documents: pure, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from gitops_kubepkg.promotion.merge3 import MISSING, Strategy, field_path, merge3


def deployment(replicas: int = 1, image: str = "nginx:1.25", **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": image, **extra}
    return {
        "spec": {
            "manifests": {
                "web.default.deployment": {
                    "spec": {
                        "replicas": replicas,
                        "template": {"spec": {"containers": [container]}},
                    }
                }
            }
        }
    }


REPLICAS = 'spec.manifests["web.default.deployment"].spec.replicas'
CONTAINER = 'spec.manifests["web.default.deployment"].spec.template.spec.containers[name="web"]'


@pytest.mark.parametrize(
    ("base", "ours", "theirs", "want"),
    [
        pytest.param({"a": 1}, {"a": 1}, {"a": 2}, {"a": 2}, id="only the catalog changed a field"),
        pytest.param({"a": 1}, {"a": 5}, {"a": 1}, {"a": 5}, id="only the deployment changed it"),
        pytest.param({"a": 1}, {"a": 5}, {"a": 5}, {"a": 5}, id="both made the same change"),
        pytest.param(
            {"a": 1, "b": 1},
            {"a": 5, "b": 1},
            {"a": 1, "b": 2},
            {"a": 5, "b": 2},
            id="different fields of one object merge",
        ),
        pytest.param(
            {"a": 1},
            {"a": 1, "mine": True},
            {"a": 1, "new": True},
            {"a": 1, "new": True, "mine": True},
            id="fields added on each side are both kept",
        ),
        pytest.param(
            {"a": 1, "gone": 1},
            {"a": 1, "gone": 1},
            {"a": 1},
            {"a": 1},
            id="a field the catalog removed goes",
        ),
        pytest.param(
            {"m": {"x": {"v": 1}}},
            {"m": {"x": {"v": 1}, "local": {"v": 9}}},
            {"m": {"x": {"v": 2}}},
            {"m": {"x": {"v": 2}, "local": {"v": 9}}},
            id="a manifest the deployment added survives an upstream change to another",
        ),
        pytest.param(
            deployment(),
            deployment(replicas=5),
            deployment(image="nginx:1.27"),
            deployment(replicas=5, image="nginx:1.27"),
            id="a local replica count and a new upstream image both hold",
        ),
        pytest.param(
            deployment(),
            deployment(env=[{"name": "DEBUG", "value": "1"}]),
            deployment(image="nginx:1.27"),
            deployment(image="nginx:1.27", env=[{"name": "DEBUG", "value": "1"}]),
            id="containers merge by name, field by field",
        ),
        pytest.param(
            {"l": [1, 2]},
            {"l": [1, 2]},
            {"l": [1, 2, 3]},
            {"l": [1, 2, 3]},
            id="a plain list changed on one side only is taken whole",
        ),
    ],
)
def test_merges_without_conflict(base: Any, ours: Any, theirs: Any, want: Any) -> None:
    merged = merge3(base, ours, theirs)
    assert merged.conflicts == []
    assert merged.value == want


@pytest.mark.parametrize(
    ("base", "ours", "theirs", "path", "described"),
    [
        pytest.param(
            deployment(),
            deployment(replicas=5),
            deployment(replicas=3),
            REPLICAS,
            f"{REPLICAS}: catalog 1.1.0 says 3, deployment says 5 (was 1)",
            id="both changed the replica count",
        ),
        pytest.param(
            deployment(),
            deployment(image="nginx:local"),
            deployment(image="nginx:1.27"),
            f"{CONTAINER}.image",
            f'{CONTAINER}.image: catalog 1.1.0 says "nginx:1.27", deployment says "nginx:local" '
            '(was "nginx:1.25")',
            id="both changed the image of the named container",
        ),
        pytest.param(
            {"m": {"x": {"v": 1}}},
            {"m": {"x": {"v": 2}}},
            {"m": {}},
            "m.x",
            'm.x: catalog 1.1.0 says nothing (removed), deployment says {"v":2} (was {"v":1})',
            id="the catalog removed what the deployment edited",
        ),
        pytest.param(
            {"l": [1]},
            {"l": [1, 2]},
            {"l": [1, 3]},
            "l",
            "l: catalog 1.1.0 says [1,3], deployment says [1,2] (was [1])",
            id="a plain list changed on both sides is one conflict",
        ),
        pytest.param(
            {},
            {"new": "a"},
            {"new": "b"},
            "new",
            'new: catalog 1.1.0 says "b", deployment says "a" (neither had it)',
            id="both added the same field with different values",
        ),
    ],
)
def test_conflicts_are_named_by_field_path(
    base: Any, ours: Any, theirs: Any, path: str, described: str
) -> None:
    merged = merge3(base, ours, theirs)
    assert [c.path for c in merged.conflicts] == [path]
    assert merged.conflicts[0].describe("catalog 1.1.0", "deployment") == described


@pytest.mark.parametrize(
    ("strategy", "replicas"),
    [
        pytest.param(Strategy.THEIRS, 3, id="theirs: the catalog wins"),
        pytest.param(Strategy.OURS, 5, id="ours: the deployment wins"),
    ],
)
def test_a_strategy_settles_conflicts_and_still_reports_them(
    strategy: Strategy, replicas: int
) -> None:
    merged = merge3(deployment(), deployment(replicas=5), deployment(replicas=3), strategy)
    assert [c.path for c in merged.conflicts] == [REPLICAS]
    assert merged.value == deployment(replicas=replicas)


def test_a_strategy_does_not_touch_fields_without_conflict() -> None:
    merged = merge3(
        deployment(),
        deployment(replicas=5, image="nginx:local"),
        deployment(replicas=3),
        Strategy.THEIRS,
    )
    assert merged.value == deployment(replicas=3, image="nginx:local")


@pytest.mark.parametrize(
    ("parent", "key", "want"),
    [
        pytest.param("", "spec", "spec", id="a top-level identifier"),
        pytest.param("spec", "replicas", "spec.replicas", id="an identifier under a parent"),
        pytest.param(
            "spec.manifests",
            "web.default.deployment",
            'spec.manifests["web.default.deployment"]',
            id="a manifest key is quoted",
        ),
        pytest.param(
            "spec.images",
            "docker.io/library/nginx:1.25",
            'spec.images["docker.io/library/nginx:1.25"]',
            id="an image reference is quoted",
        ),
    ],
)
def test_field_paths_read_like_the_validator_s(parent: str, key: str, want: str) -> None:
    assert field_path(parent, key) == want


def test_missing_is_not_null() -> None:
    merged = merge3({"a": None}, {"a": None}, {})
    assert merged.value == {}
    assert MISSING is not None
