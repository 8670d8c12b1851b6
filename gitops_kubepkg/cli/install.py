"""``gitops-kubepkg install [DIR]``: put the CRDs (or the whole deploy/ directory) into a cluster.

Without DIR: the CRDs this version generates, applied and waited for until they serve (what the
demo and tests use). With DIR (``deploy/``): every file its ``kustomization.yaml`` lists, in that
order, by server-side apply; CRDs are waited for before the objects after them. Only the
``resources`` and ``images`` (new name and tag) fields of the kustomization are read; for anything
more use ``kubectl apply -k``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from gitops_kubepkg.cli._cluster import add_cluster_flags, connect
from gitops_kubepkg.errors import InputError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "install", help="install the CRDs, or the controller from a deploy/ directory"
    )
    p.add_argument(
        "directory",
        nargs="?",
        type=Path,
        metavar="DIR",
        help="a directory with kustomization.yaml (deploy/); default: only the CRDs",
    )
    p.add_argument(
        "--image",
        default="",
        metavar="IMAGE",
        help="the controller image to run (overrides the kustomization's images)",
    )
    p.add_argument("--dry-run", action="store_true", help="ask the server, change nothing")
    add_cluster_flags(p)
    p.set_defaults(run=run)


def _load_yaml(path: Path) -> list[dict[str, Any]]:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not YAML: {e}") from e
    out = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise InputError(f"{path}: document {i + 1}: not a Kubernetes object")
        out.append(doc)
    return out


def manifests(directory: Path, image: str = "") -> list[dict[str, Any]]:
    """The objects of ``directory/kustomization.yaml``'s resources, in order, images set."""
    kustomization = directory / "kustomization.yaml"
    docs = _load_yaml(kustomization)
    spec = docs[0] if docs else {}
    resources = spec.get("resources") or []
    if not resources:
        raise InputError(f"{kustomization}: resources: empty")
    images = {i.get("name"): i for i in spec.get("images") or [] if isinstance(i, dict)}
    objects = []
    for name in resources:
        path = directory / str(name)
        if path.is_dir():
            raise InputError(f"{kustomization}: {name}: directories need kubectl apply -k")
        objects += _load_yaml(path)
    for obj in objects:
        if obj["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        for container in obj["spec"]["template"]["spec"].get("containers") or []:
            container["image"] = image or _rewrite(container["image"], images)
    return objects


def _rewrite(ref: str, images: dict[Any, dict[str, Any]]) -> str:
    name, _, tag = ref.partition(":")
    rule = images.get(name)
    if rule is None:
        return ref
    return f"{rule.get('newName') or name}:{rule.get('newTag') or tag}"


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.controller.install import CRD_API, install_crds
    from gitops_kubepkg.kube import describe

    kube = connect(args)
    try:
        if args.directory is None:
            if args.dry_run:
                raise InputError("--dry-run needs DIR (the CRDs alone are applied and waited for)")
            for name in install_crds(kube):
                print(f"installed CustomResourceDefinition {name}")
            return 0
        objects = manifests(args.directory, args.image)
        pending: list[str] = []
        for obj in objects:
            if pending and obj["kind"] != "CustomResourceDefinition":
                for name in pending:
                    kube.wait_for(
                        CRD_API, "CustomResourceDefinition", name, condition="Established"
                    )
                kube.forget_discovery()
                pending = []
            kube.apply(obj, dry_run=args.dry_run)
            if obj["kind"] == "CustomResourceDefinition" and not args.dry_run:
                pending.append(obj["metadata"]["name"])
            print(f"{'would apply' if args.dry_run else 'applied'} {describe(obj)}")
    finally:
        kube.close()
    return 0
