"""Apply's guarantees on a real API server where it skips requests (issue 14).

Creates of inert kinds are not dry-run, a lone workload create neither, live objects may come
from a cache that lags or holds metadata only: a refusal must still leave nothing behind, an
object of another owner is never written, and a lagging cache never makes a write or an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.apply import CREATED, UNCHANGED, Applier, LiveScope
from gitops_kubepkg.reconcile.objects import LABEL_PACKAGE, LABEL_PACKAGE_NAMESPACE
from gitops_kubepkg.reconcile.status import STALLED
from gitops_kubepkg.spec import KubeObject
from tests.integration.test_reconcile import apply, cm, condition, get_pkg, kubepkg
from tests.integration.test_reconcile_health import deployment

pytestmark = pytest.mark.integration


def sa(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}  # fmt: skip


def test_a_refused_lone_deployment_undoes_the_inert_creates_before_it(
    kube: Kube, namespace: str
) -> None:
    bad = deployment("web", namespace, 1)
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}  # selector does not match
    outcome, _ = apply(kube, kubepkg("app", "1.0.0", cm("a", namespace), sa("a", namespace), bad), namespace)  # fmt: skip
    assert outcome.kind == STALLED
    stalled = condition(get_pkg(kube, "app", namespace), "Stalled")
    assert stalled["reason"] == "ApplyRefused", stalled
    assert f"Deployment {namespace}/web" in stalled["message"]
    assert kube.get("apps/v1", "Deployment", "web", namespace) is None
    assert kube.get("v1", "ConfigMap", "a", namespace) is None  # created, then undone
    assert kube.get("v1", "ServiceAccount", "a", namespace) is None


def test_an_object_of_another_owner_is_not_written_and_the_creates_are_undone(
    kube: Kube, namespace: str
) -> None:
    kube.apply(cm("taken", namespace, owner="someone"), field_manager="someone-else")
    outcome, _ = apply(
        kube,
        kubepkg("app", "1.0.0", cm("new", namespace), cm("taken", namespace, owner="me")),
        namespace,
    )
    assert outcome.kind == STALLED
    stalled = condition(get_pkg(kube, "app", namespace), "Stalled")
    assert stalled["reason"] == "OwnedElsewhere", stalled
    assert f"ConfigMap {namespace}/taken" in stalled["message"]
    assert "someone-else" in stalled["message"]
    taken = kube.get("v1", "ConfigMap", "taken", namespace)
    assert taken is not None and taken["data"] == {"owner": "someone"}
    assert "labels" not in taken["metadata"]
    assert kube.get("v1", "ConfigMap", "new", namespace) is None


class Source:
    """A live source as the controller's cache can be: ``lag`` sees nothing yet, ``metadata``
    holds only metadata (``kube.list_metadata``)."""

    def __init__(self, kube: Kube, mode: str) -> None:
        self.kube, self.mode, self.asked = kube, mode, 0

    def objects(
        self, scope: LiveScope, package: str, namespace: str
    ) -> tuple[list[KubeObject], bool] | None:
        self.asked += 1
        if self.mode == "lag":
            return [], True
        api_version, kind, ns = scope
        items = self.kube.list_metadata(api_version, kind, ns)
        ours = [o for o in items if (o["metadata"].get("labels") or {}).get(LABEL_PACKAGE) == package]  # fmt: skip
        return ours, False


def labelled(obj: dict[str, Any], package: str, namespace: str) -> dict[str, Any]:
    meta = {
        **obj["metadata"],
        "labels": {LABEL_PACKAGE: package, LABEL_PACKAGE_NAMESPACE: namespace},
    }
    return {**obj, "metadata": meta}


@pytest.fixture
def applier(kube: Kube) -> Iterator[Applier]:
    a = Applier(kube)
    yield a
    a.close()


def test_a_lagging_cache_plans_again_from_a_list_and_writes_nothing_more(
    kube: Kube, namespace: str, applier: Applier
) -> None:
    desired = [labelled(cm(n, namespace, v="1"), "p", namespace) for n in ("a", "b")]
    first = applier.apply(desired, [], package="p", namespace=namespace)
    assert {c.action for c in first.changes} == {CREATED}
    versions = {n: kube.get("v1", "ConfigMap", n, namespace)["metadata"]["resourceVersion"] for n in "ab"}  # type: ignore[index]  # fmt: skip
    source = Source(kube, "lag")
    again = applier.apply(desired, [], package="p", namespace=namespace, live_source=source)
    assert source.asked >= 1
    assert {c.action for c in again.changes} == {UNCHANGED}, again.changes
    for n in "ab":
        assert kube.get("v1", "ConfigMap", n, namespace)["metadata"]["resourceVersion"] == versions[n]  # type: ignore[index]  # fmt: skip


def test_metadata_only_live_objects_are_read_whole_before_an_update(
    kube: Kube, namespace: str, applier: Applier
) -> None:
    desired = [labelled(cm(n, namespace, v="1"), "p", namespace) for n in ("a", "b")]
    applier.apply(desired, [], package="p", namespace=namespace)
    changed = [desired[0], labelled(cm("b", namespace, v="2"), "p", namespace)]
    changes = applier.apply(changed, [], package="p", namespace=namespace, live_source=Source(kube, "metadata"))  # fmt: skip
    actions = {c.ref.name: c.action for c in changes.changes}
    assert actions == {"a": UNCHANGED, "b": "configured"}
    assert kube.get("v1", "ConfigMap", "b", namespace)["data"] == {"v": "2"}  # type: ignore[index]
