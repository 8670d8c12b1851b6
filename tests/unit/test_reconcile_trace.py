"""Trace's pure parts: drift named by field path, digests and what fixed them, who manages what."""

from __future__ import annotations

import copy
import json
from typing import Any

from gitops_kubepkg.reconcile.plan import differences, is_subset
from gitops_kubepkg.reconcile.render import RenderOptions, render
from gitops_kubepkg.reconcile.trace import describe, managed_by, trace_object
from gitops_kubepkg.spec import KubePkg, parse_kubepkgs

DIGEST = "sha256:" + "a" * 64
SOURCE = {
    "repository": "prod/deploy",
    "url": "https://git.example/deploy.git",
    "branch": "main",
    "commit": "c" * 40,
    "path": "apps/web/kubepkg.json",
    "catalogUrl": "https://git.example/catalog.git",
    "catalogTag": "web/v1.0.0",
    "catalogCommit": "d" * 40,
}


def package() -> KubePkg:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}},
    }
    doc = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": {
            "version": "1.0.0",
            "images": {"nginx:1.25": DIGEST},
            "manifests": {"web.prod.deployment": deployment},
        },
    }
    (pkg,) = parse_kubepkgs(json.dumps(doc).encode(), "web.json")
    return pkg


def kubepkg_object() -> dict[str, Any]:
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web", "namespace": "prod", "uid": "u-1"},
        "spec": {"version": "1.0.0"},
        "status": {"source": SOURCE, "lastAppliedRevision": f"main@sha1:{'c' * 40}"},
    }


def live(registry: str = "") -> dict[str, Any]:
    obj = render(package(), RenderOptions("prod", "u-1", registry))[0]
    out = copy.deepcopy(obj)
    out["metadata"]["managedFields"] = [
        {"manager": "gitops-kubepkg", "operation": "Apply", "time": "2026-01-01T00:00:00Z"},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"},
    ]
    out["spec"]["replicas"] = 1  # a server default: not drift
    return out


def test_differences_name_every_path_and_is_subset_agrees() -> None:
    want = {"data": {"a": "1", "b": "2"}, "spec": {"ports": [{"port": 80}]}, "x.y/z": {"k": 1}}
    have = {"data": {"a": "1", "b": "3"}, "spec": {"ports": [{"port": 81}]}, "x.y/z": {}}
    assert list(differences(want, have)) == ["data.b", "spec.ports[0].port", '["x.y/z"].k']
    assert not is_subset(want, have) and is_subset(want, copy.deepcopy(want) | {"more": 1})


def test_an_applied_object_traces_to_its_commit_catalog_tag_and_digest_in_sync() -> None:
    trace = trace_object(live(), kubepkg_object(), package())
    assert trace.managed and trace.in_sync and trace.drifted == []
    assert trace.applied == {"fieldManager": "gitops-kubepkg", "time": "2026-01-01T00:00:00Z"}
    (image,) = trace.images
    assert image.digest == DIGEST and image.ref == "nginx:1.25"
    assert [f["by"] for f in image.fixed_by] == ["catalog", "spec.images"]
    text = "\n".join(describe(trace))
    assert "catalog:     https://git.example/catalog.git tag web/v1.0.0" in text


def test_a_hand_edit_is_drift_named_by_path_with_its_writer() -> None:
    edited = live()
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:latest"
    edited["metadata"]["managedFields"].append(
        {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-02T00:00:00Z"}
    )
    trace = trace_object(edited, kubepkg_object(), package())
    assert trace.in_sync is False
    assert trace.drifted == ["spec.template.spec.containers[0].image"]
    assert [w["manager"] for w in trace.written_by] == ["kubectl-edit"]
    assert trace.images[0].digest == "" and trace.images[0].fixed_by == []
    assert "(no digest: what runs can change under this tag)" in "\n".join(describe(trace))


def test_an_airgap_registry_rewrite_is_recognised_and_named() -> None:
    trace = trace_object(
        live("10.0.0.5:5000"), kubepkg_object(), package(), airgap_repository="prod/deploy"
    )
    assert trace.in_sync and trace.drifted == []
    assert trace.images[0].fixed_by[-1] == {
        "by": "airgap import",
        "registry": "10.0.0.5:5000",
        "repository": "prod/deploy",
    }


def test_an_object_we_did_not_apply_says_what_manages_it() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "x",
            "namespace": "prod",
            "annotations": {"meta.helm.sh/release-name": "redis"},
            "managedFields": [{"manager": "helm", "operation": "Update"}],
        },
    }
    trace = trace_object(obj, None, None)
    assert trace.to_dict()["message"] == "not managed by gitops-kubepkg"
    assert managed_by(obj) == ["Helm release redis", "field manager helm (Update)"]


def test_trace_shows_the_health_the_last_pass_recorded() -> None:
    assert trace_object(live(), kubepkg_object(), package()).health == {}
    kubepkg = kubepkg_object()
    message = "0/1 replicas available; pod web-1: container web: ImagePullBackOff (...)"
    kubepkg["status"]["resources"] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "prod", "name": "other"},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": "prod",
            "name": "web",
            "state": "InProgress",
            "message": message,
            "reason": "ImagePullFailed",
        },
    ]
    trace = trace_object(live(), kubepkg, package())
    assert trace.health == {"state": "InProgress", "message": message, "reason": "ImagePullFailed"}
    assert trace.to_dict()["health"]["reason"] == "ImagePullFailed"
    assert f"health:      InProgress [ImagePullFailed]: {message}" in "\n".join(describe(trace))
