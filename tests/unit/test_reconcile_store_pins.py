"""Pods by digest after an airgap import when the KubePkg names only a tag: render pins a tag-only
image to the digest the controller's registry store holds (a real store on disk, as the importer
writes it), leaves one the store lacks as tagged and says so; trace reads the pin back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gitops_kubepkg.controller.process import store_digests
from gitops_kubepkg.reconcile.kubepkg import StorePins
from gitops_kubepkg.reconcile.render import RenderOptions, image_for, render
from gitops_kubepkg.reconcile.trace import trace_object
from gitops_kubepkg.registry.digest import parse_digest
from gitops_kubepkg.registry.repositories import Repositories
from gitops_kubepkg.spec import KubePkg, parse_kubepkgs

STORED = "sha256:" + "1" * 64
SPEC = "sha256:" + "2" * 64


def store(tmp_path: Path) -> Path:
    refs = Repositories(tmp_path)
    for name in ("docker.io/library/web", "10.0.0.5-5000/team/app"):
        refs.link_manifest(name, parse_digest(STORED), "application/vnd.oci.image.manifest.v1+json")
        refs.set_tag(name, "1.0", parse_digest(STORED))
    return tmp_path


def package(images: dict[str, str], containers: list[dict[str, Any]]) -> KubePkg:
    doc = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web", "namespace": "prod"},
        "spec": {
            "version": "1.0.0",
            "images": images,
            "manifests": {
                "web.deployment": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web"},
                    "spec": {"template": {"spec": {"containers": containers}}},
                }
            },
        },
    }
    (pkg,) = parse_kubepkgs(json.dumps(doc).encode(), "web.json")
    return pkg


def images_of(obj: dict[str, Any]) -> list[str]:
    return [c["image"] for c in obj["spec"]["template"]["spec"]["containers"]]


def test_tag_only_images_are_pinned_from_the_store_and_misses_are_named(tmp_path: Path) -> None:
    lookup = store_digests(store(tmp_path))
    assert lookup is not None and store_digests(None) is None
    pins = StorePins(lookup)
    pkg = package(
        {"web:1.0": "", "docker.io/library/pinned:2.0": SPEC},
        [
            {"name": "web", "image": "web:1.0"},
            {
                "name": "app",
                "image": "10.0.0.5:5000/team/app:1.0",
            },  # a port: stored as 10.0.0.5-5000
            {"name": "pinned", "image": "pinned:2.0"},  # spec.images wins over the store
            {"name": "new", "image": "web:2.0"},  # a tag the store does not hold
            {"name": "digest", "image": f"web@{SPEC}"},  # already by digest: nothing to look up
        ],
    )
    (obj,) = render(pkg, RenderOptions("prod", resolve=pins))
    assert images_of(obj) == [
        f"docker.io/library/web:1.0@{STORED}",
        f"10.0.0.5:5000/team/app:1.0@{STORED}",
        f"docker.io/library/pinned:2.0@{SPEC}",
        "web:2.0",
        f"web@{SPEC}",
    ]
    assert pins.pinned == {
        "docker.io/library/web:1.0": STORED,
        "10.0.0.5:5000/team/app:1.0": STORED,
    }
    assert pins.missing() == ["docker.io/library/web:2.0"]


def test_a_store_nothing_was_imported_into_pins_nothing_and_says_nothing(tmp_path: Path) -> None:
    pins = StorePins(store_digests(tmp_path / "empty") or (lambda name, tag: ""))
    assert image_for("web:1.0", {}, "", pins) == "web:1.0"
    assert pins.pinned == {} and pins.missing() == []


def test_store_pins_and_the_airgap_registry_rewrite_together(tmp_path: Path) -> None:
    pins = StorePins(store_digests(store(tmp_path)) or (lambda name, tag: ""))
    assert image_for("web:1.0", {}, "10.1.1.1:5000", pins) == (
        f"10.1.1.1:5000/docker.io/library/web:1.0@{STORED}"
    )
    assert image_for("web:1.0", {}, "10.1.1.1:5000") == "10.1.1.1:5000/docker.io/library/web:1.0"


def test_trace_reads_a_store_pin_back_as_in_sync_and_says_what_fixed_it(tmp_path: Path) -> None:
    pins = StorePins(store_digests(store(tmp_path)) or (lambda name, tag: ""))
    pkg = package({"web:1.0": ""}, [{"name": "web", "image": "web:1.0"}])
    (live,) = render(pkg, RenderOptions("prod", "u-1", resolve=pins))
    live["metadata"]["managedFields"] = [
        {"manager": "gitops-kubepkg", "operation": "Apply", "time": "2026-01-01T00:00:00Z"}
    ]
    kubepkg = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web", "namespace": "prod", "uid": "u-1"},
        "spec": {"version": "1.0.0"},
        "status": {"images": pins.pinned},
    }
    trace = trace_object(live, kubepkg, pkg)
    assert trace.in_sync and trace.drifted == []
    (image,) = trace.images
    assert image.digest == STORED
    assert [f["by"] for f in image.fixed_by] == ["registry store"]
    # Without the record the same live object reads as drifted: the pin is what made it differ.
    kubepkg["status"] = {}
    assert "spec.template.spec.containers[0].image" in trace_object(live, kubepkg, pkg).drifted
