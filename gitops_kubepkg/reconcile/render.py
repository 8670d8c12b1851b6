"""Render: a KubePkg becomes the Kubernetes objects it stands for. Pure.

First step of a reconcile pass (render > plan > apply > prune > status). Every ``spec.manifests``
entry is copied, then: namespaced objects without a namespace land in the KubePkg's namespace; the
ownership labels and the config digest annotation are added; namespaced objects in the KubePkg's
own namespace get an ownerReference to it (so the garbage collector backs up our prune); container
images are pinned to ``ref@digest`` wherever ``spec.images`` gives a digest (the seed's rule) and,
for airgapped clusters, rewritten to a local registry that keeps the source host in the path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gitops_kubepkg.reconcile.objects import (
    ANNOTATION_DIGEST,
    LABEL_PACKAGE,
    LABEL_PACKAGE_NAMESPACE,
    LABEL_VERSION,
    config_digest,
    label_value,
)
from gitops_kubepkg.spec import API_VERSION, KIND, ImageRef, KubeObject, KubePkg, parse_image

# Built-in kinds that are not namespaced; anything else is assumed namespaced unless the caller's
# ``namespaced`` function (discovery, in the cluster) says otherwise.
CLUSTER_SCOPED = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CSINode",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)

Namespaced = Callable[[str, str], bool]


def builtin_namespaced(api_version: str, kind: str) -> bool:
    return kind not in CLUSTER_SCOPED


@dataclass(frozen=True)
class RenderOptions:
    """How to render. ``owner_uid`` comes from the live KubePkg; empty when rendering offline."""

    namespace: str = "default"
    owner_uid: str = ""
    registry: str = ""
    namespaced: Namespaced = builtin_namespaced


def image_for(used: str, refs: Mapping[str, ImageRef], registry: str = "") -> str:
    """The image a container should run: pinned by digest when known, maybe in a local registry."""
    try:
        parsed = parse_image(used)
    except ValueError:
        return used
    pinned = parsed
    if not parsed.digest:
        for ref in refs.values():
            if ref.repository == parsed.repository and ref.tag == parsed.tag and ref.digest:
                pinned = parsed.with_digest(ref.digest)
                break
    if not registry:
        return used if pinned is parsed else str(pinned)
    suffix = str(pinned)[len(pinned.repository) :]
    return f"{registry.rstrip('/')}/{pinned.mirror_repository}{suffix}"


def _rewrite_images(node: Any, refs: Mapping[str, ImageRef], registry: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("initContainers", "containers", "ephemeralContainers") and isinstance(
                value, list
            ):
                for c in value:
                    if isinstance(c, dict) and isinstance(c.get("image"), str):
                        c["image"] = image_for(c["image"], refs, registry)
            else:
                _rewrite_images(value, refs, registry)
    elif isinstance(node, list):
        for item in node:
            _rewrite_images(item, refs, registry)


def render(pkg: KubePkg, options: RenderOptions | None = None) -> list[KubeObject]:
    """The objects for ``pkg``, in the order of its manifests."""
    opts = options or RenderOptions(namespace=pkg.namespace or "default")
    namespace = pkg.namespace or opts.namespace
    refs = pkg.image_refs()
    out: list[KubeObject] = []
    for manifest in pkg.manifests.values():
        obj = copy.deepcopy(manifest)
        obj.pop("status", None)
        meta = obj.setdefault("metadata", {})
        for noise in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            meta.pop(noise, None)
        namespaced = opts.namespaced(obj["apiVersion"], obj["kind"])
        if namespaced:
            meta.setdefault("namespace", namespace)
        else:
            meta.pop("namespace", None)
        labels = meta.setdefault("labels", {})
        labels[LABEL_PACKAGE] = pkg.name
        labels[LABEL_PACKAGE_NAMESPACE] = namespace
        labels[LABEL_VERSION] = label_value(pkg.version)
        if opts.owner_uid and namespaced and meta.get("namespace") == namespace:
            owners = [
                o for o in meta.get("ownerReferences") or [] if o.get("uid") != opts.owner_uid
            ]
            owners.append(
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": pkg.name,
                    "uid": opts.owner_uid,
                    "blockOwnerDeletion": False,
                }
            )
            meta["ownerReferences"] = owners
        _rewrite_images(obj, refs, opts.registry)
        meta.setdefault("annotations", {})[ANNOTATION_DIGEST] = config_digest(obj)
        out.append(obj)
    return out
