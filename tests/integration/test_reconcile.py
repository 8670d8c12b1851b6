"""Reconcile against a real kube-apiserver: apply, prune, refuse, finalize, revert drift, no-op."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kubepkg.conventions import PROGRESSING, READY, STALLED, Outcome
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.apply import ChangeSet
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.reconcile.objects import ANNOTATION_PRUNE, FINALIZER, LABEL_PACKAGE
from tests.integration.controllers import edit_config_map_by_hand

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SEED = json.loads((REPO / "examples" / "kubepkg.seed.json").read_text())


def key(obj: dict[str, Any]) -> str:
    ns = obj["metadata"].get("namespace")
    kind = obj["kind"].lower()
    return f"{obj['metadata']['name']}.{ns}.{kind}" if ns else f"{obj['metadata']['name']}.{kind}"


def kubepkg(
    name: str, version: str, *objects: dict[str, Any], images: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "images": images or {},
            "manifests": {key(o): o for o in objects},
        },
    }


def cm(name: str, namespace: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def apply(kube: Kube, doc: dict[str, Any], namespace: str) -> tuple[Outcome, ChangeSet | None]:
    obj = copy.deepcopy(doc)
    obj["metadata"]["namespace"] = namespace
    kube.apply(obj)
    reconciler = KubePkgReconciler(kube)
    try:
        return reconciler.reconcile(namespace, doc["metadata"]["name"])
    finally:
        reconciler.applier.close()


def get_pkg(kube: Kube, name: str, namespace: str) -> dict[str, Any]:
    obj = kube.get("octohelm.tech/v1alpha1", "KubePkg", name, namespace)
    assert obj is not None
    return obj


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in obj["status"]["conditions"]:
        if c["type"] == type_:
            return dict(c)
    raise AssertionError(f"no {type_} condition in {obj['status']['conditions']}")


def test_the_seed_example_applies(kube: Kube, namespace: str) -> None:
    outcome, changes = apply(kube, SEED, namespace)
    assert changes is not None and changes.count("created") == 1
    # upstream forces the KubePkg's namespace on what it renders: the seed's "default" is not kept
    web = kube.get("apps/v1", "Deployment", "web", namespace)
    assert web is not None
    assert web["metadata"]["labels"][LABEL_PACKAGE] == "demo"
    pkg = get_pkg(kube, "demo", namespace)
    assert FINALIZER in pkg["metadata"]["finalizers"]
    assert pkg["status"]["inventory"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": namespace, "names": ["web"]}
    ]
    assert pkg["status"]["observedGeneration"] == pkg["metadata"]["generation"]
    # Pods do run here (kwok plays the kubelet), but rarely within the first pass: while the
    # Deployment rolls out, Ready says what it waits for; later passes see it Available.
    reconciler = KubePkgReconciler(kube)
    try:
        deadline = time.monotonic() + 120
        while outcome.kind == PROGRESSING and time.monotonic() < deadline:
            assert condition(pkg, "Ready")["status"] == "False"
            assert f"waiting for Deployment {namespace}/web" in condition(pkg, "Ready")["message"]
            assert pkg["status"]["resources"][0]["state"] == "InProgress"
            time.sleep(0.5)
            outcome, _ = reconciler.reconcile(namespace, "demo")
            pkg = get_pkg(kube, "demo", namespace)
    finally:
        reconciler.applier.close()
    assert outcome.kind == READY, outcome
    assert condition(pkg, "Ready")["status"] == "True"
    assert pkg["status"]["resources"][0]["state"] == "Current"
    kube.delete("octohelm.tech/v1alpha1", "KubePkg", "demo", namespace)
    KubePkgReconciler(kube).reconcile(namespace, "demo")
    assert kube.get("apps/v1", "Deployment", "web", namespace) is None


def test_a_new_version_adds_changes_and_prunes(kube: Kube, namespace: str) -> None:
    apply(
        kube,
        kubepkg("app", "1.0.0", cm("a", namespace, v="1"), cm("b", namespace, v="1")),
        namespace,
    )
    outcome, changes = apply(
        kube,
        kubepkg("app", "1.1.0", cm("a", namespace, v="2"), cm("c", namespace, v="1")),
        namespace,
    )
    assert outcome.kind == READY
    assert changes is not None
    assert {(c.action, c.ref.name) for c in changes.changes} == {
        ("configured", "a"),
        ("created", "c"),
        ("deleted", "b"),
    }
    assert kube.get("v1", "ConfigMap", "a", namespace)["data"] == {"v": "2"}  # type: ignore[index]
    assert kube.get("v1", "ConfigMap", "b", namespace) is None
    pkg = get_pkg(kube, "app", namespace)
    assert condition(pkg, "Ready")["status"] == "True"
    assert pkg["status"]["lastAppliedVersion"] == "1.1.0"


def test_foreign_and_kept_objects_are_not_pruned(kube: Kube, namespace: str) -> None:
    apply(
        kube,
        kubepkg(
            "app", "1.0.0", cm("mine", namespace), cm("taken", namespace), cm("kept", namespace)
        ),
        namespace,
    )
    # Someone else takes "taken" over (our labels replaced); "kept" is annotated to stay.
    kube.patch(
        "v1", "ConfigMap", "taken", namespace, {"metadata": {"labels": {LABEL_PACKAGE: "other"}}}
    )
    kube.patch(
        "v1",
        "ConfigMap",
        "kept",
        namespace,
        {"metadata": {"annotations": {ANNOTATION_PRUNE: "disabled"}}},
    )
    _, changes = apply(kube, kubepkg("app", "2.0.0", cm("mine", namespace)), namespace)
    assert kube.get("v1", "ConfigMap", "taken", namespace) is not None
    assert kube.get("v1", "ConfigMap", "kept", namespace) is not None
    assert changes is not None
    assert {c.ref.name for c in changes.changes if c.action == "kept"} == {"kept"}


def test_a_refused_object_stops_the_whole_apply_and_is_named(kube: Kube, namespace: str) -> None:
    apply(kube, kubepkg("app", "1.0.0", cm("a", namespace, v="1")), namespace)
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "broken", "namespace": namespace},
        "spec": {"ports": [{"port": 99999}]},
    }
    outcome, _ = apply(
        kube,
        kubepkg("app", "2.0.0", cm("a", namespace, v="2"), cm("new", namespace), bad),
        namespace,
    )
    assert outcome.kind == STALLED
    assert kube.get("v1", "ConfigMap", "a", namespace)["data"] == {"v": "1"}  # type: ignore[index]
    assert kube.get("v1", "ConfigMap", "new", namespace) is None
    pkg = get_pkg(kube, "app", namespace)
    stalled = condition(pkg, "Stalled")
    assert stalled["reason"] == "ApplyRefused"
    assert f"Service {namespace}/broken" in stalled["message"]
    assert "99999" in stalled["message"]


def test_an_invalid_kubepkg_stalls_and_touches_nothing(kube: Kube, namespace: str) -> None:
    apply(kube, kubepkg("app", "1.0.0", cm("a", namespace)), namespace)
    # The CRD accepts it (manifests are Kubernetes objects the API server checks when applied);
    # the model refuses it before anything is applied.
    invalid = kubepkg("app", "2.0.0", cm("Not_A_Name", namespace))
    outcome, _ = apply(kube, invalid, namespace)
    assert outcome.kind == STALLED
    assert (
        "metadata.name: 'Not_A_Name' is not a valid object name"
        in condition(get_pkg(kube, "app", namespace), "Stalled")["message"]
    )
    assert kube.get("v1", "ConfigMap", "a", namespace) is not None


def test_deleting_the_kubepkg_deletes_its_objects_cluster_scoped_too(
    kube: Kube, namespace: str
) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"{namespace}-reader"},
        "rules": [],
    }
    apply(kube, kubepkg("app", "1.0.0", cm("a", namespace), role), namespace)
    assert (
        kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", f"{namespace}-reader") is not None
    )
    kube.delete("octohelm.tech/v1alpha1", "KubePkg", "app", namespace)
    outcome, _ = KubePkgReconciler(kube).reconcile(namespace, "app")
    assert outcome.reason == "Deleted"
    assert kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", f"{namespace}-reader") is None
    assert kube.get("v1", "ConfigMap", "a", namespace) is None
    kube.wait_for("octohelm.tech/v1alpha1", "KubePkg", "app", namespace, gone=True, timeout=30)


def test_a_hand_edit_is_reverted_and_a_no_op_pass_writes_nothing(
    kube: Kube, namespace: str
) -> None:
    doc = kubepkg("app", "1.0.0", cm("a", namespace, v="1"), cm("b", namespace, v="1"))
    apply(kube, doc, namespace)
    before = {
        n: kube.get("v1", "ConfigMap", n, namespace)["metadata"]["resourceVersion"] for n in "ab"
    }  # type: ignore[index]
    pkg_rv = get_pkg(kube, "app", namespace)["metadata"]["resourceVersion"]
    reconciler = KubePkgReconciler(kube)
    writes = kube.writes
    outcome, changes = reconciler.reconcile(namespace, "app")
    assert outcome.kind == READY and changes is not None and not changes.changed
    assert kube.writes == writes, "a pass with nothing to do must not write"
    after = {
        n: kube.get("v1", "ConfigMap", n, namespace)["metadata"]["resourceVersion"] for n in "ab"
    }  # type: ignore[index]
    assert after == before
    assert get_pkg(kube, "app", namespace)["metadata"]["resourceVersion"] == pkg_rv

    # A hand edit through another field manager (as kubectl edit does) is reverted next pass.
    edit_config_map_by_hand(kube, namespace, "a", {"v": "edited"})
    _, changes = reconciler.reconcile(namespace, "app")
    assert changes is not None and [
        c.ref.name for c in changes.changes if c.action == "configured"
    ] == ["a"]
    assert kube.get("v1", "ConfigMap", "a", namespace)["data"] == {"v": "1"}  # type: ignore[index]
    reconciler.applier.close()


def test_a_crd_and_its_objects_apply_in_stages(kube: Kube, namespace: str) -> None:
    group = f"{namespace}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": "Widget",
                "plural": "widgets",
                "singular": "widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    other_ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{namespace}-x"}}
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": f"{namespace}-x"},
        "size": 3,
    }
    outcome, changes = apply(
        kube, kubepkg("app", "1.0.0", widget, crd, other_ns, cm("c", f"{namespace}-x")), namespace
    )
    assert outcome.kind == READY, outcome.message
    assert changes is not None and changes.count("created") == 4
    # the Widget asked for the other namespace; upstream forces the KubePkg's, which we follow
    assert kube.get(f"{group}/v1", "Widget", "w", namespace)["size"] == 3  # type: ignore[index]
    assert kube.get("v1", "ConfigMap", "c", namespace) is not None
    kube.delete("octohelm.tech/v1alpha1", "KubePkg", "app", namespace)
    KubePkgReconciler(kube).reconcile(namespace, "app")
    # CRD deletion is asynchronous (the server first removes every Widget).
    kube.wait_for(
        "apiextensions.k8s.io/v1", "CustomResourceDefinition", f"widgets.{group}", gone=True
    )


def cli(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    return subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_diff_and_apply_commands(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    path = tmp_path / "kubepkg.yaml"
    path.write_text(yaml.safe_dump(kubepkg("app", "1.0.0", cm("a", namespace, v="1"))))
    result = cli(kubeconfig, "diff", str(path), "-n", namespace)
    assert result.returncode == 1, result.stderr
    assert f"created     ConfigMap {namespace}/a" in result.stdout
    assert kube.get("v1", "ConfigMap", "a", namespace) is None, "diff must not write"

    result = cli(kubeconfig, "apply", str(path), "-n", namespace)
    assert result.returncode == 0, result.stderr
    assert f"KubePkg {namespace}/app 1.0.0: 1 created" in result.stdout
    assert cli(kubeconfig, "diff", str(path), "-n", namespace).returncode == 0

    path.write_text(yaml.safe_dump(kubepkg("app", "1.1.0", cm("b", namespace))))
    result = cli(kubeconfig, "diff", str(path), "-n", namespace, "-o", "json")
    assert result.returncode == 1
    actions = {
        (c["action"], c["name"]) for c in json.loads(result.stdout)["packages"][0]["changes"]
    }
    assert actions == {("created", "b"), ("to be pruned", "a")}

    result = cli(kubeconfig, "delete", str(path), "-n", namespace)
    assert result.returncode == 0, result.stderr
    assert f"deleted     ConfigMap {namespace}/a" in result.stdout
    assert kube.get("v1", "ConfigMap", "a", namespace) is None
    kube.wait_for("octohelm.tech/v1alpha1", "KubePkg", "app", namespace, gone=True, timeout=30)

    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [")
    result = cli(kubeconfig, "apply", str(broken))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "broken.yaml" in result.stderr


def test_a_structured_kubepkg_over_a_running_gen1_package_updates_it_in_place(
    kube: Kube, namespace: str
) -> None:
    gen1 = copy.deepcopy(SEED)
    gen1["metadata"]["name"] = "web"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
    }
    gen1["spec"]["manifests"]["web.default.service"] = service
    gen1["spec"]["manifests"]["extra.configmap"] = cm("extra", namespace, v="1")
    outcome, _ = apply(kube, gen1, namespace)
    assert outcome.kind in (READY, PROGRESSING), outcome
    before = {
        kind: kube.get(api, kind, "web", namespace)["metadata"]["uid"]  # type: ignore[index]
        for api, kind in (("apps/v1", "Deployment"), ("v1", "Service"))
    }

    # The same application as a gen 2/3 structured spec (what octohelm/kubepkg v0.2+ writes).
    structured = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web"},
        "spec": {
            "version": "v0.0.2",
            "deploy": {"kind": "Deployment", "spec": {"replicas": 1}},
            "containers": {
                "web": {
                    "image": {"name": "docker.io/library/nginx", "tag": "alpine"},
                    "ports": {"http": 80},
                }
            },
            "services": {"#": {"ports": {"http": 80}}},
        },
    }
    outcome, changes = apply(kube, structured, namespace)
    assert outcome.kind in (READY, PROGRESSING), outcome
    assert changes is not None
    actions = {(c.action, c.ref.kind, c.ref.name) for c in changes.changes}
    assert ("configured", "Deployment", "web") in actions, actions
    assert ("configured", "Service", "web") in actions, actions
    assert ("deleted", "ConfigMap", "extra") in actions, "dropped by the new version: pruned"
    assert not {a for a in actions if a[0] == "deleted" and a[2] == "web"}
    deployment = kube.get("apps/v1", "Deployment", "web", namespace)
    svc = kube.get("v1", "Service", "web", namespace)
    assert deployment is not None and svc is not None
    assert {"Deployment": deployment["metadata"]["uid"], "Service": svc["metadata"]["uid"]} == (
        before
    ), "updated in place, not deleted and created again"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "web" and labels["app.kubernetes.io/version"] == "0.0.2"
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    pkg = get_pkg(kube, "web", namespace)
    assert pkg["spec"]["version"] == "0.0.2" or pkg["spec"]["version"] == "v0.0.2"
    assert pkg["status"]["lastAppliedVersion"] == "0.0.2"


def test_an_empty_render_stalls_and_deletes_nothing_unless_allowed(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    apply(kube, kubepkg("app", "1.0.0", cm("a", namespace), cm("b", namespace)), namespace)
    empty = kubepkg("app", "1.1.0")

    outcome, changes = apply(kube, empty, namespace)
    assert (outcome.kind, outcome.reason) == (STALLED, "EmptyRender"), outcome
    assert changes is None
    assert "2 applied before would be pruned" in outcome.message
    assert kube.get("v1", "ConfigMap", "a", namespace) is not None
    assert kube.get("v1", "ConfigMap", "b", namespace) is not None
    pkg = get_pkg(kube, "app", namespace)
    assert condition(pkg, "Stalled")["reason"] == "EmptyRender"
    assert condition(pkg, "Ready")["status"] == "False"
    assert len(pkg["status"]["inventory"][0]["names"]) == 2, "the inventory is kept for later"

    path = tmp_path / "kubepkg.yaml"
    path.write_text(yaml.safe_dump(empty))
    result = cli(kubeconfig, "diff", str(path), "-n", namespace)
    assert result.returncode == 2, result
    assert "EmptyRender" in result.stderr or "renders no objects" in result.stderr
    assert kube.get("v1", "ConfigMap", "a", namespace) is not None

    # Keeping one of two is reported by diff before anything is applied.
    path.write_text(yaml.safe_dump(kubepkg("app", "1.1.0", cm("a", namespace))))
    result = cli(kubeconfig, "diff", str(path), "-n", namespace)
    assert result.returncode == 1
    assert "would be pruned" not in result.stderr  # one of two kept: at the threshold, no warning
    apply(
        kube,
        kubepkg("app", "1.0.0", *(cm(n, namespace) for n in ("a", "b", "c", "d"))),
        namespace,
    )
    result = cli(kubeconfig, "diff", str(path), "-n", namespace, "-o", "json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["packages"][0]["warning"] == (
        "renders 1 objects where 4 are applied: 3 would be pruned"
    )

    allowed = copy.deepcopy(empty)
    allowed["metadata"]["annotations"] = {"gitops.kubepkg.dev/allow-empty": "true"}
    outcome, changes = apply(kube, allowed, namespace)
    assert outcome.kind == READY, outcome
    assert changes is not None and changes.count("deleted") == 4
    assert kube.get("v1", "ConfigMap", "a", namespace) is None


def test_a_package_that_renders_nothing_and_ships_nothing_stalls(
    kube: Kube, namespace: str
) -> None:
    outcome, _ = apply(kube, kubepkg("nothing", "1.0.0"), namespace)
    assert (outcome.kind, outcome.reason) == (STALLED, "EmptyRender")
    assert "renders no objects and ships no images" in outcome.message
    images = {"docker.io/library/nginx:1.25": ""}
    outcome, _ = apply(kube, kubepkg("images-only", "1.0.0", images=images), namespace)
    assert outcome.kind == READY
    assert outcome.message == "version 1.0.0: no objects to apply"


def test_an_unreachable_cluster_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    result = cli(str(config), "diff", str(REPO / "examples" / "kubepkg.seed.json"))
    assert result.returncode == 2
    assert "cannot reach https://127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr
