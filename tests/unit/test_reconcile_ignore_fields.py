"""Fields another manager owns (an HPA's replicas) are left out of what a KubePkg applies."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gitops_kubepkg.reconcile.objects import ANNOTATION_IGNORE_FIELDS
from gitops_kubepkg.reconcile.render import render
from gitops_kubepkg.spec.convert import ConvertError
from tests.unit.test_reconcile_render_plan import SEED, cm, pkg_of


def seed_with(annotation: str, *extra: dict[str, Any]) -> Any:
    doc = copy.deepcopy(SEED)
    doc["metadata"].setdefault("annotations", {})[ANNOTATION_IGNORE_FIELDS] = annotation
    for obj in extra:
        doc["spec"]["manifests"][f"{obj['metadata']['name']}.configmap"] = obj
    return pkg_of(doc)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def test_the_named_field_is_not_applied_and_the_rest_is() -> None:
    (plain,) = render(pkg_of(SEED))
    assert "replicas" in plain["spec"], "the seed sets replicas"
    (obj,) = render(seed_with("Deployment/*: spec.replicas"))
    assert "replicas" not in obj["spec"]
    assert obj["spec"]["template"] == plain["spec"]["template"]
    assert obj["metadata"]["annotations"] != plain["metadata"]["annotations"], "digest follows"


def test_entries_match_by_kind_and_name_and_several_paths_are_allowed() -> None:
    objects = render(
        seed_with(
            "ConfigMap/a: data.x, data.y; Deployment/other: spec.replicas",
            cm("a", None, x="1", y="2", z="3"),
            cm("b", None, x="1"),
        )
    )
    configs = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    assert configs["a"]["data"] == {"z": "3"}
    assert configs["b"]["data"] == {"x": "1"}
    assert "replicas" in by_kind(objects, "Deployment")["spec"], "another Deployment's name"


@pytest.mark.parametrize("bad", ["spec.replicas", "Deployment: spec.replicas", "Deployment/web:"])
def test_an_entry_that_does_not_read_is_named(bad: str) -> None:
    with pytest.raises(ConvertError, match=f"ignore-fields: '{bad}': want KIND/NAME: path"):
        render(seed_with(bad))
