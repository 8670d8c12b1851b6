"""Render: a KubePkg becomes the Kubernetes objects it stands for. Pure.

First step of a reconcile pass (render > plan > apply > prune > status). ``spec/convert.py`` gives
the objects upstream renders for every KubePkg generation (flat or nested ``spec.manifests``,
structured deploy/containers/volumes/services, in upstream's install order); then, on each: the
KubePkg's namespace on namespaced objects (the Namespace upstream emits for it is dropped, so a
prune can never delete the namespace holding the KubePkg); the ownership labels and the config
digest annotation; an ownerReference to the KubePkg (so the garbage collector backs up our
prune); every image (containers of every workload kind, init containers, ``Image`` volumes)
pinned to ``ref@digest`` wherever ``spec.images`` gives a digest (the seed's rule), else, for a
controller with a registry store, to the digest the store holds for that tag (``resolve``: after
an airgap import, Pods run what was imported, by digest, even when the KubePkg names only a tag)
and, for airgapped clusters, rewritten to a local registry that keeps the source host in the
path; and
the fields the KubePkg's ``gitops.kubepkg.dev/ignore-fields`` annotation names left out (another
manager owns them, e.g. an HPA's ``spec.replicas``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gitops_kubepkg.conventions import label_value, owner_reference
from gitops_kubepkg.reconcile.objects import (
    ANNOTATION_DIGEST,
    LABEL_PACKAGE,
    LABEL_PACKAGE_NAMESPACE,
    LABEL_VERSION,
    config_digest,
    drop_field,
    ignored_fields,
)
from gitops_kubepkg.spec import API_VERSION, KIND, ImageRef, KubeObject, KubePkg, parse_image
from gitops_kubepkg.spec.convert import ConvertError, convert

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
Resolve = Callable[[ImageRef], str]
"""The digest a tag-only image has where the caller looks (the controller's registry store), or
"" when it holds no such tag."""


def builtin_namespaced(api_version: str, kind: str) -> bool:
    return kind not in CLUSTER_SCOPED


@dataclass(frozen=True)
class RenderOptions:
    """How to render. ``owner_uid`` comes from the live KubePkg; empty when rendering offline."""

    namespace: str = "default"
    owner_uid: str = ""
    registry: str = ""
    namespaced: Namespaced = builtin_namespaced
    gateways: tuple[str, ...] = ()
    """Ingress gateway templates overriding the ``ingress.octohelm.tech/gateway`` annotation."""
    resolve: Resolve | None = None
    """Pins a tag-only image that ``spec.images`` gives no digest for (None: left as tagged)."""


def image_for(
    used: str, refs: Mapping[str, ImageRef], registry: str = "", resolve: Resolve | None = None
) -> str:
    """The image a container should run: pinned by digest when known (``spec.images``, else
    ``resolve``), maybe in a local registry."""
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
        else:
            if resolve is not None and parsed.tag and (digest := resolve(parsed)):
                pinned = parsed.with_digest(digest)
    if not registry:
        return used if pinned is parsed else str(pinned)
    suffix = str(pinned)[len(pinned.repository) :]
    return f"{registry.rstrip('/')}/{pinned.mirror_repository}{suffix}"


def _pin_containers(
    containers: Any, refs: Mapping[str, ImageRef], registry: str, resolve: Resolve | None
) -> None:
    for c in containers if isinstance(containers, list) else []:
        if isinstance(c, dict) and isinstance(c.get("image"), str):
            c["image"] = image_for(c["image"], refs, registry, resolve)


def _rewrite_images(
    node: Any, refs: Mapping[str, ImageRef], registry: str, resolve: Resolve | None = None
) -> None:
    """Every image a pod runs or mounts: containers of every workload kind, init and ephemeral
    containers, and kubepkgspec ``Image`` volumes (``volumes[].image.reference``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("initContainers", "containers", "ephemeralContainers"):
                _pin_containers(value, refs, registry, resolve)
            elif key == "volumes" and isinstance(value, list):
                for v in value:
                    image = v.get("image") if isinstance(v, dict) else None
                    if isinstance(image, dict) and isinstance(image.get("reference"), str):
                        image["reference"] = image_for(image["reference"], refs, registry, resolve)
                    else:
                        _rewrite_images(v, refs, registry, resolve)
            else:
                _rewrite_images(value, refs, registry, resolve)
    elif isinstance(node, list):
        for item in node:
            _rewrite_images(item, refs, registry, resolve)


def render(pkg: KubePkg, options: RenderOptions | None = None) -> list[KubeObject]:
    """The objects for ``pkg``, in upstream's install order."""
    opts = options or RenderOptions(namespace=pkg.namespace or "default")
    return render_objects(pkg.to_object(), opts, pkg.image_refs())


def render_objects(
    kubepkg: Mapping[str, Any],
    options: RenderOptions,
    refs: Mapping[str, ImageRef] | None = None,
) -> list[KubeObject]:
    """``convert`` the KubePkg API object, then add ours to every object it gives.

    The namespace is the KubePkg's (``options.namespace`` when it has none): upstream forces it on
    every object, and the Namespace object upstream emits for it is dropped, because applying it
    would make the namespace holding the KubePkg ours to prune.
    """
    meta = kubepkg.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or options.namespace)
    version = str((kubepkg.get("spec") or {}).get("version") or "")
    source = {**kubepkg, "metadata": {**meta, "namespace": namespace}}
    try:
        ignored = ignored_fields(kubepkg)
    except ValueError as e:
        raise ConvertError(f"KubePkg {namespace}/{name}: {e}") from e
    out: list[KubeObject] = []
    for obj in convert(source, gateways=options.gateways):
        if obj["kind"] == "Namespace" and obj["metadata"]["name"] == namespace:
            continue
        obj.pop("status", None)
        meta = obj.setdefault("metadata", {})
        for noise in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            meta.pop(noise, None)
        namespaced = options.namespaced(obj["apiVersion"], obj["kind"])
        if namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        labels = meta.setdefault("labels", {})
        labels[LABEL_PACKAGE] = name
        labels[LABEL_PACKAGE_NAMESPACE] = namespace
        labels[LABEL_VERSION] = label_value(version)
        if options.owner_uid and namespaced:
            owners = [
                o for o in meta.get("ownerReferences") or [] if o.get("uid") != options.owner_uid
            ]
            owners.append(
                owner_reference(
                    API_VERSION, KIND, name, options.owner_uid, block_owner_deletion=False
                )
            )
            meta["ownerReferences"] = owners
        _rewrite_images(obj, refs or {}, options.registry, options.resolve)
        for ignore in ignored:
            if ignore.matches(obj):
                drop_field(obj, ignore.path)  # another manager's: we never apply it
        meta.setdefault("annotations", {})[ANNOTATION_DIGEST] = config_digest(obj)
        out.append(obj)
    return out
