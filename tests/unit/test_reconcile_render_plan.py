"""Render, plan and status are functions of data: tested here without a cluster."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.conventions import PROGRESSING, READY, STALLED, Outcome, label_value
from gitops_kubepkg.reconcile.objects import (
    ANNOTATION_DIGEST,
    ANNOTATION_PRUNE,
    LABEL_PACKAGE,
    LABEL_PACKAGE_NAMESPACE,
    LABEL_VERSION,
    ObjectRef,
)
from gitops_kubepkg.reconcile.plan import (
    apply_order,
    is_subset,
    normalised,
    plan,
    untouched_since_applied,
)
from gitops_kubepkg.reconcile.render import RenderOptions, image_for, render
from gitops_kubepkg.reconcile.status import (
    CURRENT,
    FAILED,
    IN_PROGRESS,
    Health,
    KubePkgStatus,
    conditions,
    health,
    inventory_of,
    outcome_for,
    same_status,
)
from gitops_kubepkg.spec import parse_image, parse_kubepkgs

REPO = Path(__file__).resolve().parents[2]
SEED = json.loads((REPO / "examples" / "kubepkg.seed.json").read_text())
DIGEST = "sha256:" + "b" * 64


def pkg_of(doc: dict[str, Any]) -> Any:
    (pkg,) = parse_kubepkgs(json.dumps(doc).encode(), "pkg.json")
    return pkg


def with_manifests(*objects: dict[str, Any], images: dict[str, str] | None = None) -> Any:
    doc = copy.deepcopy(SEED)
    doc["spec"]["manifests"] = {
        f"{o['metadata']['name']}.{o['metadata']['namespace']}.{o['kind'].lower()}"
        if o["metadata"].get("namespace")
        else f"{o['metadata']['name']}.{o['kind'].lower()}": o
        for o in objects
    }
    doc["spec"]["images"] = images or {}
    return pkg_of(doc)


def cm(name: str, namespace: str | None = "default", **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


class TestRender:
    def test_the_seed_renders_its_deployment_with_ownership_labels(self) -> None:
        (obj,) = render(pkg_of(SEED))
        labels = obj["metadata"]["labels"]
        assert labels[LABEL_PACKAGE] == "demo"
        assert labels[LABEL_PACKAGE_NAMESPACE] == "default"
        assert labels[LABEL_VERSION] == "0.0.1"
        assert obj["metadata"]["annotations"][ANNOTATION_DIGEST].startswith("sha256:")
        assert obj["spec"] == SEED["spec"]["manifests"]["web.default.deployment"]["spec"]

    def test_an_image_with_a_listed_digest_is_pinned(self) -> None:
        doc = copy.deepcopy(SEED)
        doc["spec"]["images"]["docker.io/library/nginx:alpine"] = DIGEST
        (obj,) = render(pkg_of(doc))
        image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"docker.io/library/nginx:alpine@{DIGEST}"

    def test_a_registry_rewrite_keeps_the_source_host_in_the_path(self) -> None:
        (obj,) = render(pkg_of(SEED), RenderOptions(registry="10.0.0.1:5000"))
        image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "10.0.0.1:5000/docker.io/library/nginx:alpine"

    @pytest.mark.parametrize(
        ("used", "registry", "expected"),
        [
            ("nginx:alpine", "", f"docker.io/library/nginx:alpine@{DIGEST}"),
            ("nginx:alpine", "reg:5000", f"reg:5000/docker.io/library/nginx:alpine@{DIGEST}"),
            ("redis:7", "", "redis:7"),
            ("redis:7", "reg:5000", "reg:5000/docker.io/library/redis:7"),
            ("ghcr.io/o/app:1", "reg", "reg/ghcr.io/o/app:1"),
            ("10.0.0.5:5000/team/app:2", "reg", "reg/10.0.0.5-5000/team/app:2"),
        ],
        ids=[
            "a familiar name is pinned",
            "a pinned image moves to the local registry",
            "an unlisted image is left as written",
            "an unpinned image still moves to the local registry",
            "another host stays in the path",
            "a host's port becomes part of a valid path component",
        ],
    )
    def test_images(self, used: str, registry: str, expected: str) -> None:
        refs = {"nginx:alpine": parse_image("nginx:alpine").with_digest(DIGEST)}
        assert image_for(used, refs, registry) == expected

    def test_namespaced_objects_land_in_the_kubepkg_namespace_with_an_owner(self) -> None:
        pkg = with_manifests(
            cm("a", None),
            cm("b", "other"),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}},
        )
        # upstream's install order (Namespace first); upstream forces the KubePkg's namespace on
        # every namespaced object, so "other" given by hand does not survive
        ns, a, b = render(pkg, RenderOptions(namespace="team", owner_uid="uid-1"))
        assert a["metadata"]["namespace"] == "team"
        assert a["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert b["metadata"]["namespace"] == "team"
        assert b["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert "namespace" not in ns["metadata"] and "ownerReferences" not in ns["metadata"]

    def test_the_config_digest_changes_with_the_content_only(self) -> None:
        (one,) = render(with_manifests(cm("a", x="1")))
        (same,) = render(with_manifests(cm("a", x="1")))
        (other,) = render(with_manifests(cm("a", x="2")))
        digest = one["metadata"]["annotations"][ANNOTATION_DIGEST]
        assert digest == same["metadata"]["annotations"][ANNOTATION_DIGEST]
        assert digest != other["metadata"]["annotations"][ANNOTATION_DIGEST]

    def test_build_metadata_is_made_label_safe(self) -> None:
        assert label_value("1.2.3+build.7").startswith("1.2.3-build.7-")
        assert label_value("1.2.3+build.7") != label_value("1.2.3-build.7"), "never the same"
        assert label_value("1.2.3") == "1.2.3"


def live_of(obj: dict[str, Any], **extra_meta: Any) -> dict[str, Any]:
    """What the server would hold after applying ``obj``: defaults and bookkeeping added."""
    live = copy.deepcopy(obj)
    live["metadata"].update(uid="u", resourceVersion="1", **extra_meta)
    return live


class TestPlan:
    def test_nothing_live_means_create_everything_in_stage_order(self) -> None:
        desired = render(
            with_manifests(
                cm("a"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}
            )
        )
        p = plan(desired, {}, [], package="demo", namespace="default")
        assert [o["kind"] for o in p.to_write] == ["Namespace", "ConfigMap"]
        assert not p.unchanged and not p.prune

    def test_live_objects_holding_everything_are_unchanged(self) -> None:
        desired = render(with_manifests(cm("a", x="1")))
        live = {ObjectRef.of(desired[0]): live_of(desired[0])}
        p = plan(desired, live, [], package="demo", namespace="default")
        assert p.unchanged == [ObjectRef("v1", "ConfigMap", "default", "a")] and not p.to_write

    def test_a_hand_edit_is_checked(self) -> None:
        desired = render(with_manifests(cm("a", x="1")))
        edited = live_of(desired[0])
        edited["data"]["x"] = "changed by hand"
        p = plan(desired, {ObjectRef.of(edited): edited}, [], package="demo", namespace="default")
        assert [ObjectRef.of(o) for o in p.check] == [ObjectRef.of(edited)]

    def test_dropped_objects_are_pruned_unless_foreign_or_kept(self) -> None:
        old = render(with_manifests(cm("a"), cm("b"), cm("c"), cm("d")))
        live = {ObjectRef.of(o): live_of(o) for o in old}
        refs = list(live)
        b, c = live[refs[1]], live[refs[2]]
        b["metadata"]["labels"][LABEL_PACKAGE] = "someone-else"
        c["metadata"]["annotations"][ANNOTATION_PRUNE] = "disabled"
        new = render(with_manifests(cm("a")))
        p = plan(new, live, refs, package="demo", namespace="default")
        assert p.prune == [refs[3]]
        assert [r for r, _ in p.keep] == [refs[1], refs[2]]

    def test_an_inventoried_object_already_gone_is_not_pruned(self) -> None:
        ghost = ObjectRef("v1", "ConfigMap", "default", "ghost")
        p = plan([], {}, [ghost], package="demo", namespace="default")
        assert not p.prune and not p.keep

    def test_labelled_objects_missing_from_a_lost_inventory_are_still_pruned(self) -> None:
        (old,) = render(with_manifests(cm("orphan")))
        p = plan([], {ObjectRef.of(old): live_of(old)}, [], package="demo", namespace="default")
        assert p.prune == [ObjectRef.of(old)]

    @pytest.mark.parametrize(
        ("desired", "live", "expected"),
        [
            ({"a": 1}, {"a": 1, "b": 2}, True),
            ({"a": 1}, {"a": 2}, False),
            ({"a": [1, 2]}, {"a": [1, 2]}, True),
            ({"a": [1, 2]}, {"a": [1, 2, 3]}, False),
            ({"a": [{"x": 1}]}, {"a": [{"x": 1, "y": 0}]}, True),
            ({"a": 1}, {"a": 1.0}, True),
            ({"a": "1"}, {"a": 1}, False),
            ({"a": {}}, {}, False),
        ],
        ids=[
            "server defaults may add fields",
            "a changed value is not a subset",
            "equal lists",
            "a longer list",
            "defaults inside list items",
            "numbers of another type",
            "a string is not a number",
            "a missing key",
        ],
    )
    def test_is_subset(self, desired: Any, live: Any, expected: bool) -> None:
        assert is_subset(desired, live) is expected

    def test_stable_kind_order(self) -> None:
        objs = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d", "namespace": "n"},
            },
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"}},
            {"apiVersion": "x/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "n"}},
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": "c"},
            },
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "sa", "namespace": "n"},
            },
        ]
        kinds = [o["kind"] for o in sorted(objs, key=apply_order)]
        assert kinds == [
            "CustomResourceDefinition",
            "ServiceAccount",
            "Service",
            "Deployment",
            "Widget",
        ]


def deployment(replicas: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "generation": 2},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 2, **status},
    }


class TestHealth:
    @pytest.mark.parametrize(
        ("obj", "state"),
        [
            (deployment(updatedReplicas=2, availableReplicas=2), CURRENT),
            (deployment(updatedReplicas=2, availableReplicas=1), IN_PROGRESS),
            (deployment(updatedReplicas=1, availableReplicas=2), IN_PROGRESS),
            ({**deployment(), "status": {"observedGeneration": 1}}, IN_PROGRESS),
            (
                deployment(
                    conditions=[
                        {
                            "type": "Progressing",
                            "status": "False",
                            "reason": "ProgressDeadlineExceeded",
                            "message": "too slow",
                        }
                    ]
                ),
                FAILED,
            ),
            (
                {"kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}},
                CURRENT,
            ),
            (
                {"kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True"}]}},
                FAILED,
            ),
            ({"kind": "Job", "status": {}}, IN_PROGRESS),
            ({"kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}}, CURRENT),
            ({"kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}}, IN_PROGRESS),
            (
                {
                    "kind": "DaemonSet",
                    "status": {
                        "desiredNumberScheduled": 3,
                        "numberAvailable": 3,
                        "updatedNumberScheduled": 3,
                    },
                },
                CURRENT,
            ),
            (
                {
                    "kind": "DaemonSet",
                    "status": {
                        "desiredNumberScheduled": 3,
                        "numberAvailable": 2,
                        "updatedNumberScheduled": 3,
                    },
                },
                IN_PROGRESS,
            ),
            (
                {
                    "kind": "Widget",
                    "status": {"conditions": [{"type": "Ready", "status": "False"}]},
                },
                IN_PROGRESS,
            ),
            (
                {"kind": "Widget", "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                CURRENT,
            ),
            ({"kind": "ConfigMap"}, CURRENT),
        ],
        ids=[
            "a rolled-out Deployment is current",
            "a Deployment short of available replicas is in progress",
            "a Deployment still updating is in progress",
            "a Deployment whose controller has not seen the spec is in progress",
            "a Deployment past its progress deadline failed",
            "a complete Job is current",
            "a failed Job failed",
            "a running Job is in progress",
            "a bound PVC is current",
            "a pending PVC is in progress",
            "a DaemonSet with every pod available is current",
            "a DaemonSet short of pods is in progress",
            "an object with Ready False is in progress",
            "an object with Ready True is current",
            "an object without status is current",
        ],
    )
    def test_health(self, obj: dict[str, Any], state: str) -> None:
        assert health(obj).state == state


class TestConditions:
    def test_outcomes_map_to_kstatus_conditions(self) -> None:
        ref = ObjectRef("apps/v1", "Deployment", "default", "web")
        ready = outcome_for({ref: Health(CURRENT)}, "1.2.3")
        assert (ready.kind, ready.message) == (READY, "version 1.2.3: 1 objects ready")
        progressing = outcome_for({ref: Health(IN_PROGRESS, "0/1 replicas available")}, "1.2.3")
        assert progressing.kind == PROGRESSING and progressing.requeue_after > 0
        assert progressing.message == "waiting for Deployment default/web: 0/1 replicas available"
        assert outcome_for({ref: Health(FAILED, "boom")}, "1.2.3").kind == STALLED

        types = {c["type"]: c["status"] for c in conditions(progressing, 3, [])}
        assert types == {"Ready": "False", "Reconciling": "True"}
        stalled = conditions(Outcome(STALLED, "ApplyRefused", "x"), 3, [])
        assert {c["type"]: c["status"] for c in stalled} == {"Ready": "False", "Stalled": "True"}

    def test_a_condition_keeps_its_transition_time_while_its_status_holds(self) -> None:
        first = conditions(Outcome(READY, "ReconciliationSucceeded", "ok"), 1, [])
        first[0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
        again = conditions(Outcome(READY, "ReconciliationSucceeded", "ok"), 1, first)
        assert again[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
        assert same_status({"conditions": first}, {"conditions": again})


REFS = [
    ObjectRef("v1", "ConfigMap", "default", "b"),
    ObjectRef("v1", "ConfigMap", "default", "a"),
    ObjectRef("apps/v1", "Deployment", "default", "web"),
    ObjectRef("v1", "Namespace", "", "team"),
    ObjectRef("v1", "ConfigMap", "other", "a"),
]


class TestStatusShape:
    def test_the_inventory_groups_names_by_kind_and_namespace_and_reads_back(self) -> None:
        status = KubePkgStatus(Outcome(READY, "R", "ok"), 1, inventory=REFS).to_status({})
        assert status["inventory"] == [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "namespace": "default",
                "names": ["web"],
            },
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "names": ["a", "b"]},
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "other", "names": ["a"]},
            {"apiVersion": "v1", "kind": "Namespace", "names": ["team"]},
        ]
        assert sorted(inventory_of(status)) == sorted(REFS)

    def test_one_object_entries_of_earlier_builds_are_still_read(self) -> None:
        legacy = {
            "inventory": [
                {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": "a"},
                {"apiVersion": "v1", "kind": "Namespace", "name": "team"},
                {"kind": "ConfigMap", "name": "no-api-version"},
                "not an object",
            ]
        }
        assert inventory_of(legacy) == [
            ObjectRef("v1", "ConfigMap", "default", "a"),
            ObjectRef("v1", "Namespace", "", "team"),
        ]

    def test_resources_list_objects_with_something_to_say_about_their_health(self) -> None:
        web, cm, job = (
            ObjectRef("apps/v1", "Deployment", "default", "web"),
            ObjectRef("v1", "ConfigMap", "default", "a"),
            ObjectRef("batch/v1", "Job", "default", "migrate"),
        )
        resources = {
            web: Health(CURRENT, "1/1 replicas available"),
            cm: Health(CURRENT),
            job: Health(IN_PROGRESS, "job running"),
        }
        status = KubePkgStatus(
            Outcome(READY, "R", "ok"), 1, inventory=list(resources), resources=resources
        ).to_status({})
        assert [(r["kind"], r["state"]) for r in status["resources"]] == [
            ("Deployment", CURRENT),
            ("Job", IN_PROGRESS),
        ]
        assert len(inventory_of(status)) == 3

    def test_the_answered_request_is_recorded_and_kept_until_the_next_one(self) -> None:
        ok = Outcome(READY, "R", "ok")
        first = KubePkgStatus(ok, 1, handled="2026-01-01T00:00:00.000000Z").to_status({})
        assert first["lastHandledReconcileAt"] == "2026-01-01T00:00:00.000000Z"
        assert KubePkgStatus(ok, 1).to_status(first)["lastHandledReconcileAt"] == (
            "2026-01-01T00:00:00.000000Z"
        )


class TestFastNoOp:
    def applied(self, *extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        (desired,) = render(with_manifests(cm("a", x="1")))
        live = live_of(desired)
        live["metadata"]["managedFields"] = [
            {"manager": "gitops-kubepkg", "operation": "Apply", "time": "2026-01-01T00:00:10Z"},
            *extra,
        ]
        return desired, live

    def test_an_object_nobody_wrote_since_our_apply_is_untouched(self) -> None:
        desired, live = self.applied(
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "subresource": "status",
                "time": "2026-01-01T00:00:20Z",
            }
        )
        assert untouched_since_applied(desired, live)

    def test_a_later_write_by_another_manager_needs_a_look(self) -> None:
        desired, live = self.applied(
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-01T00:00:20Z"}
        )
        assert not untouched_since_applied(desired, live)

    def test_a_scale_needs_a_look_it_changes_spec_replicas_and_has_no_time(self) -> None:
        desired, live = self.applied(
            {
                "manager": "hpa",
                "operation": "Update",
                "subresource": "scale",
            }
        )
        assert not untouched_since_applied(desired, live)

    def test_an_older_write_by_another_manager_was_overridden_by_our_apply(self) -> None:
        desired, live = self.applied(
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-01T00:00:05Z"}
        )
        assert untouched_since_applied(desired, live)

    def test_a_new_config_digest_is_never_untouched(self) -> None:
        desired, live = self.applied()
        (newer,) = render(with_manifests(cm("a", x="2")))
        assert not untouched_since_applied(newer, live)
        assert untouched_since_applied(desired, live)

    def test_secret_string_data_compares_as_the_data_the_server_stores(self) -> None:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s"},
            "stringData": {"t": "hi"},
        }
        live = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "uid": "u"},
            "data": {"t": "aGk="},
            "type": "Opaque",
        }
        assert not is_subset(secret, live)
        assert is_subset(normalised(secret), live)
