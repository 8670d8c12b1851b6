"""Fields another manager owns (an HPA's replicas) are left out of what a KubePkg applies, and
``drift: detect`` only reports what another writer changed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gitops_kubepkg.conventions import READY, Outcome
from gitops_kubepkg.reconcile.objects import (
    ANNOTATION_DRIFT,
    ANNOTATION_IGNORE_FIELDS,
    detects_drift,
)
from gitops_kubepkg.reconcile.render import render
from gitops_kubepkg.reconcile.status import conditions
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


def annotated(value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {ANNOTATION_DRIFT: value}}}


def test_drift_detect_is_opt_in_and_an_unknown_mode_is_refused_by_name() -> None:
    assert detects_drift({"metadata": {}}) is False, "the default corrects drift"
    assert detects_drift(annotated("correct")) is False
    assert detects_drift(annotated("detect")) is True
    with pytest.raises(ValueError, match=r"gitops.kubepkg.dev/drift: 'report'.*'detect'"):
        detects_drift(annotated("report"))


def test_reported_drift_is_a_drifted_condition_beside_ready_and_goes_when_cleared() -> None:
    ok = Outcome(READY, "ReconciliationSucceeded", "ok")
    drift = [f"ConfigMap default/c{i}: data.mode" for i in range(12)]
    conds = {c["type"]: c for c in conditions(ok, 2, [], drift=drift)}
    assert conds["Ready"]["status"] == "True"
    assert conds["Drifted"]["status"] == "True" and conds["Drifted"]["reason"] == "DriftDetected"
    message = conds["Drifted"]["message"]
    assert "ConfigMap default/c0: data.mode" in message and message.endswith("and 2 more")
    assert "Drifted" not in {c["type"] for c in conditions(ok, 2, list(conds.values()))}
