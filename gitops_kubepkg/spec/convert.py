"""Convert: a KubePkg API object becomes the Kubernetes objects upstream renders from it. Pure.

Sits between the model (``model.py`` checks the file) and render (``reconcile/render.py`` adds our
ownership labels, ownerReferences and digest pinning on top). This module holds upstream's rules
only, so its output can be compared object for object with upstream's own expectations
(``tests/upstream``). Every KubePkg generation goes through the same path:

- gen 1 (flat ``spec.manifests``) and later nested ``spec.manifests``: walked with ``manifests.walk``
  and patched as kubepkgspec does (namespace forced, also on RoleBinding subjects; ConfigMap and
  Secret ``spec/digest``; arch nodeAffinity from ``octohelm.tech/platform``);
- gen 2/3 and kubepkgspec structured specs (``deploy``, ``containers``, ``config``, ``volumes``,
  ``services``, ``serviceAccount``): converted as kubepkgspec HEAD converts them
  (``pkg/kubepkg/convert``), with kubepkg HEAD's Ingress gateway templates and endpoint ConfigMaps
  when templates are configured (``ingress.octohelm.tech/gateway`` or the ``gateways`` argument).

Then reload digests are written on pod templates (kubepkgspec ``pkg/reloader``), every object is
labelled ``app.kubernetes.io/instance``/``version``, the package's Namespace is added and the list is
sorted in upstream's install order. docs/kubepkg.md ("How structured KubePkgs render") lists where
we deliberately differ from upstream.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitops_kubepkg.errors import InputError
from gitops_kubepkg.spec.manifests import walk

KubeObject = dict[str, Any]

LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_APP_VERSION = "app.kubernetes.io/version"
ANNOTATION_PLATFORM = "octohelm.tech/platform"
ANNOTATION_GATEWAY = "ingress.octohelm.tech/gateway"
ANNOTATION_SPEC_DIGEST = "spec/digest"
ANNOTATION_REVISION_DIGEST = "revision/digest"
ANNOTATION_CONFIGMAP_RELOAD = "configmap.reloader.octohelm.tech/reload"
ANNOTATION_SECRET_RELOAD = "secret.reloader.octohelm.tech/reload"
SCOPE_CONFIGMAP_DIGEST = "digest.configmap.reloader.octohelm.tech/"
SCOPE_SECRET_DIGEST = "digest.secret.reloader.octohelm.tech/"
ANNOTATION_HTTPROUTE_OPTIONS = "path-rule.kubepkg.octohelm.tech/options"

INSTALL_ORDER = (
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ServiceAccount",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "Job",
    "CronJob",
    "Ingress",
    "APIService",
    "Gateway",
    "HTTPRoute",
)
"""kubepkgspec ``pkg/install`` order; kinds not listed come last, by kind then name."""

WORKLOADS = {
    "Deployment": "apps/v1",
    "DaemonSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}
RELOADED_KINDS = frozenset({"Deployment", "DaemonSet", "StatefulSet"})
"""kubepkgspec's reloader patches these only (Jobs run to completion; a rollout means nothing)."""

DEPLOY_KINDS = frozenset({*WORKLOADS, "ConfigMap", "Secret", "EndpointSlice"})
VOLUME_TYPES = frozenset(
    {"EmptyDir", "HostPath", "Image", "PersistentVolumeClaim", "Secret", "ConfigMap"}
)
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
CONTAINER_FIELDS = frozenset(
    {
        "image",
        "workingDir",
        "command",
        "args",
        "env",
        "ports",
        "stdin",
        "stdinOnce",
        "tty",
        "resources",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "securityContext",
        "terminationMessagePath",
        "terminationMessagePolicy",
    }
)
POD_FIELDS_FROM_SPEC = (
    "containers",
    "initContainers",
    "ephemeralContainers",
    "volumes",
    "serviceAccountName",
    "serviceAccount",
)
"""Pod spec fields the KubePkg's own sections own; ``deploy.spec`` may not set them."""

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm"}
_KNOWN_ARCHES = frozenset(
    {"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le", "loong64"}
)
_TEMPLATE_FIELD = re.compile(r"\{\{-?\s*\.(Name|Namespace)\s*-?\}\}")


class ConvertError(InputError):
    """The KubePkg cannot be converted; the message names the package and the field."""


# --- small pieces ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    name: str
    namespace: str
    version: str
    annotations: Mapping[str, str]
    spec: Mapping[str, Any]

    def fail(self, path: str, message: str) -> ConvertError:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return ConvertError(f"KubePkg {where}: {path}: {message}")

    def sub_name(self, key: str) -> str:
        return sub_resource_name(self.name, key)


def is_global_ref(key: str) -> bool:
    """``~x``, ``/x`` and ``@x`` name an object outside the package's naming (kubepkgspec)."""
    return key[:1] in ("~", "/", "@")


def sub_resource_name(package: str, key: str) -> str:
    """Upstream ``SubResourceName``: ``#``/"" -> package, global refs -> the rest, else joined."""
    if key in ("#", ""):
        return package
    if is_global_ref(key):
        return key[1:]
    return f"{package}-{key}"


def values_digest(values: Mapping[str, str] | None) -> str:
    """kubepkgspec ``reloader.DigestFromValues``: sha256 of compact JSON, keys in byte order.

    Go's jsontext encoder ends the top-level value with a newline; it is part of the digest.
    """
    items = values or {}
    pairs = ",".join(_json_string(k) + ":" + _json_string(items[k]) for k in sorted(items))
    text = "{" + pairs + "}\n"
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _json_string(value: str) -> str:
    # Go's jsontext: UTF-8 kept as is, short escapes for \b \f \n \r \t, \u00XX for other controls.
    return json.dumps(value, ensure_ascii=False)


def merge(base: Any, patch: Any) -> Any:
    """kubepkgspec ``Merge``: objects merge deeply, lists of objects by ``name``, empties as null.

    A patch list replaces a list of scalars; items of a list of objects match by ``name`` and
    merge, unmatched base items stay, unmatched patch items are appended. ``null`` and empty
    objects in the patch are ignored; an object left empty is dropped.
    """
    if isinstance(patch, dict):
        if not isinstance(base, dict):
            return _clone(patch)
        return _merge_object(base, patch)
    if isinstance(patch, list):
        if not isinstance(base, list):
            return _clone(patch)
        return _merge_list(base, patch)
    return patch


_DROP = object()


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: c for k, v in value.items() if (c := _clone(v)) is not _DROP and v is not None}
        return out if out else _DROP
    if isinstance(value, list):
        return [c for v in value if (c := _clone(v)) is not _DROP]
    return value


def _merge_object(base: Mapping[str, Any], patch: Mapping[str, Any]) -> Any:
    if not patch:
        return _DROP if not base else dict(base)
    out: dict[str, Any] = {}
    for key, value in base.items():
        if key in patch and patch[key] is not None:
            p = patch[key]
            if isinstance(p, dict):
                value = _merge_object(value, p) if isinstance(value, dict) else _clone(p)
            elif isinstance(p, list):
                value = _merge_list(value, p) if isinstance(value, list) else _clone(p)
            else:
                value = p
        if value is not _DROP and value is not None:
            out[key] = value
    for key, value in patch.items():
        if key in base or value is None:
            continue
        cloned = _clone(value)
        if cloned is not _DROP:
            out[key] = cloned
    return out if out else _DROP


def _merge_list(base: Sequence[Any], patch: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    used: set[int] = set()
    for item in base:
        if not isinstance(item, dict):
            continue  # a list of scalars is replaced by the patch's
        if "name" in item:
            match = next(
                (
                    i
                    for i, p in enumerate(patch)
                    if isinstance(p, dict) and p.get("name") == item["name"] and i not in used
                ),
                None,
            )
            if match is not None:
                used.add(match)
                merged = _merge_object(item, patch[match])
                if merged is not _DROP:
                    out.append(merged)
                continue
        out.append(item)
    for i, p in enumerate(patch):
        if i not in used:
            cloned = _clone(p)
            if cloned is not _DROP:
                out.append(cloned)
    return out


def _arch_of(platform: str) -> str:
    parts = platform.strip().split("/")
    arch = parts[1] if len(parts) >= 2 else parts[0]
    arch = _ARCH_ALIASES.get(arch.lower(), arch.lower())
    return arch if arch in _KNOWN_ARCHES else ""


def _set_arch_affinity(pod_spec: dict[str, Any], arches: Sequence[str]) -> None:
    """Add ``kubernetes.io/arch In arches`` unless the pod already has nodeSelectorTerms."""
    if not arches:
        return
    required = (
        pod_spec.setdefault("affinity", {})
        .setdefault("nodeAffinity", {})
        .setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    )
    if required.get("nodeSelectorTerms"):
        return
    required["nodeSelectorTerms"] = [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": list(arches)}
            ]
        }
    ]


def pod_template_of(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pod template of a workload object (CronJob: under ``jobTemplate``), or None."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return None
    if obj.get("kind") == "CronJob":
        job = spec.get("jobTemplate")
        spec = job.get("spec") if isinstance(job, dict) else None
        if not isinstance(spec, dict):
            return None
    template = spec.get("template")
    return template if isinstance(template, dict) else None


def _port_protocol(name: str) -> str:
    if name.startswith("udp-"):
        return "UDP"
    if name.startswith("sctp-"):
        return "SCTP"
    return "TCP"


def _decode_port_name(key: str) -> tuple[str, str, int]:
    """``[udp-|sctp-]name[:hostPort]`` -> (name, protocol, hostPort or 0)."""
    protocol = _port_protocol(key)
    i = key.find(":")
    if i > 0:
        try:
            host_port = int(key[i + 1 :])
        except ValueError:
            host_port = 0
        return key[:i], protocol, host_port
    return key, protocol, 0


# --- typed reads of the spec ----------------------------------------------------------------------


def _map(ctx: _Ctx, value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.fail(path, "must be a map")
    return value


def _str(ctx: _Ctx, value: Any, path: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise ctx.fail(path, "must be a string")
    return value


def _int(ctx: _Ctx, value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.fail(path, "must be an integer")
    return value


def _str_list(ctx: _Ctx, value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ctx.fail(path, "must be a string or a list of strings")


def _str_map(ctx: _Ctx, value: Any, path: str) -> dict[str, str]:
    out = _map(ctx, value, path)
    for k, v in out.items():
        if not isinstance(v, str):
            raise ctx.fail(f"{path}.{k}", "must be a string")
    return out


@dataclass(frozen=True)
class EnvValue:
    """One ``EnvVarValueOrFrom``: a plain value, or a ``valueFrom`` source."""

    value: str = ""
    value_from: Mapping[str, Any] | None = None


def parse_env_value(ctx: _Ctx, raw: Any, path: str) -> EnvValue:
    """``@field/p``, ``@resource/r``, ``@configMap/name/key[?]``, ``@secret/name/key[?]``, else
    a plain value. Split on the last ``/``, as upstream does."""
    if isinstance(raw, dict) and ("value" in raw or "valueFrom" in raw):
        return EnvValue(_str(ctx, raw.get("value"), f"{path}.value"), raw.get("valueFrom"))
    text = _str(ctx, raw, path)
    if not text.startswith("@") or "/" not in text:
        return EnvValue(text)
    idx = text.rindex("/")
    src, key = text[1:idx], text[idx + 1 :]
    if src.startswith("field"):
        return EnvValue(value_from={"fieldRef": {"fieldPath": key}})
    if src.startswith("resource"):
        return EnvValue(value_from={"resourceFieldRef": {"resource": key}})
    for prefix, field_name in (("configMap", "configMapKeyRef"), ("secret", "secretKeyRef")):
        if src.startswith(prefix):
            if not src.startswith(prefix + "/") or len(src) == len(prefix) + 1:
                raise ctx.fail(path, f"must be @{prefix}/<name>/<key>[?]")
            ref: dict[str, Any] = {"name": src[len(prefix) + 1 :], "key": key.rstrip("?")}
            if key.endswith("?"):
                ref["optional"] = True
            return EnvValue(value_from={field_name: ref})
    return EnvValue(text)


# --- volumes --------------------------------------------------------------------------------------


@dataclass
class _Volume:
    key: str
    type: str
    resource_name: str
    raw: Mapping[str, Any]
    external: bool = False
    data: dict[str, str] | None = None

    @property
    def mount_path(self) -> str:
        return str(self.raw.get("mountPath") or "")

    @property
    def opt(self) -> dict[str, Any]:
        opt = self.raw.get("opt")
        return copy.deepcopy(opt) if isinstance(opt, dict) else {}

    @property
    def is_zero(self) -> bool:
        return not self.data

    @property
    def optional(self) -> bool:
        return bool(self.opt.get("optional"))


def _volumes(ctx: _Ctx) -> list[_Volume]:
    out: dict[str, _Volume] = {}
    raw_volumes = _map(ctx, ctx.spec.get("volumes"), "spec.volumes")
    for key in sorted(raw_volumes):
        path = f'spec.volumes["{key}"]'
        raw = _map(ctx, raw_volumes[key], path)
        vtype = _str(ctx, raw.get("type"), f"{path}.type")
        if vtype not in VOLUME_TYPES:
            raise ctx.fail(f"{path}.type", f"must be one of {', '.join(sorted(VOLUME_TYPES))}")
        _str(ctx, raw.get("mountPath"), f"{path}.mountPath")
        if not raw.get("mountPath"):
            raise ctx.fail(f"{path}.mountPath", "required")
        if raw["mountPath"] == "export" and vtype not in ("ConfigMap", "Secret"):
            raise ctx.fail(f"{path}.mountPath", "export is only for ConfigMap and Secret volumes")
        data = None
        if vtype in ("ConfigMap", "Secret"):
            spec = _map(ctx, raw.get("spec"), f"{path}.spec")
            data = _str_map(ctx, spec.get("data"), f"{path}.spec.data")
        out[key] = _Volume(key, vtype, ctx.sub_name(key), raw, is_global_ref(key), data)
    if _deploy_kind(ctx) not in ("ConfigMap", "Secret"):
        config = {k: v.value for k, v in _config(ctx).items() if v.value_from is None}
        out["#"] = _Volume(
            "#", "ConfigMap", ctx.sub_name("#"), {"mountPath": "export"}, data=config
        )
    return [out[k] for k in sorted(out)]


def _volume_resource(ctx: _Ctx, v: _Volume) -> KubeObject | None:
    meta: dict[str, Any] = {"name": v.resource_name, **_ns(ctx)}
    if v.type in ("ConfigMap", "Secret"):
        if v.external or v.is_zero:
            return None
        data = dict(v.data or {})
        meta["annotations"] = {ANNOTATION_SPEC_DIGEST: values_digest(data)}
        if v.type == "ConfigMap":
            return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": data}
    if v.type == "PersistentVolumeClaim":
        path = f'spec.volumes["{v.key}"].spec'
        spec = merge({}, _map(ctx, v.raw.get("spec"), path))
        obj: KubeObject = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta}
        if spec is not _DROP:
            obj["spec"] = spec
        return obj
    return None


def _mount(v: _Volume) -> dict[str, Any]:
    m: dict[str, Any] = {"name": v.resource_name, "mountPath": v.mount_path}
    if v.raw.get("subPath"):
        m["subPath"] = v.raw["subPath"]
    if v.raw.get("readOnly"):
        m["readOnly"] = True
    if v.raw.get("mountPropagation") in ("Bidirectional", "HostToContainer"):
        m["mountPropagation"] = v.raw["mountPropagation"]
    return m


def _mount_into(v: _Volume, container: dict[str, Any]) -> dict[str, Any] | None:
    """Mount ``v`` into ``container``; the pod volume it needs, if any (kubepkgspec MountTo)."""
    if v.type in ("ConfigMap", "Secret"):
        if v.mount_path == "export":
            if v.is_zero:
                return None
            ref: dict[str, Any] = {"name": v.resource_name}
            if v.raw.get("optional") is not None:
                ref["optional"] = bool(v.raw["optional"])
            source: dict[str, Any] = {}
            if v.raw.get("prefix"):
                source["prefix"] = v.raw["prefix"]
            source["configMapRef" if v.type == "ConfigMap" else "secretRef"] = ref
            container.setdefault("envFrom", []).append(source)
            return None
        if not v.external and v.is_zero and not v.optional:
            return None
        opt = v.opt
        if v.type == "ConfigMap":
            opt["name"] = v.resource_name
            volume = {"name": v.resource_name, "configMap": opt}
        else:
            opt["secretName"] = v.resource_name
            volume = {"name": v.resource_name, "secret": opt}
    elif v.type == "EmptyDir":
        volume = {"name": v.resource_name, "emptyDir": v.opt}
    elif v.type == "HostPath":
        volume = {"name": v.resource_name, "hostPath": v.opt}
    elif v.type == "Image":
        volume = {"name": v.resource_name, "image": v.opt}
    else:
        opt = v.opt
        opt["claimName"] = v.resource_name
        volume = {"name": v.resource_name, "persistentVolumeClaim": opt}
    mounts = container.setdefault("volumeMounts", [])
    mounts.append(_mount(v))
    mounts.sort(key=lambda m: m["name"])
    return volume


# --- the deploy object ----------------------------------------------------------------------------


def _ns(ctx: _Ctx) -> dict[str, str]:
    return {"namespace": ctx.namespace} if ctx.namespace else {}


def _deploy(ctx: _Ctx) -> dict[str, Any]:
    return _map(ctx, ctx.spec.get("deploy"), "spec.deploy")


def _deploy_kind(ctx: _Ctx) -> str:
    deploy = _deploy(ctx)
    if not deploy:
        return ""
    kind = _str(ctx, deploy.get("kind"), "spec.deploy.kind")
    if kind not in DEPLOY_KINDS:
        raise ctx.fail("spec.deploy.kind", f"must be one of {', '.join(sorted(DEPLOY_KINDS))}")
    return kind


def _config(ctx: _Ctx) -> dict[str, EnvValue]:
    raw = _map(ctx, ctx.spec.get("config"), "spec.config")
    return {k: parse_env_value(ctx, v, f"spec.config.{k}") for k, v in raw.items()}


def _container(
    ctx: _Ctx, name: str, raw: Mapping[str, Any], template: dict[str, Any], volumes: list[_Volume]
) -> dict[str, Any]:
    path = f'spec.containers["{name}"]'
    unknown = sorted(set(raw) - CONTAINER_FIELDS)
    if unknown:
        raise ctx.fail(f"{path}.{unknown[0]}", "unknown container field")
    image = _map(ctx, raw.get("image"), f"{path}.image")
    ref = _str(ctx, image.get("name"), f"{path}.image.name")
    if not ref:
        raise ctx.fail(f"{path}.image.name", "required")
    if image.get("tag"):
        ref += ":" + _str(ctx, image["tag"], f"{path}.image.tag")
    if image.get("digest"):
        ref += "@" + _str(ctx, image["digest"], f"{path}.image.digest")
    c: dict[str, Any] = {"name": name, "image": ref}
    if image.get("pullPolicy"):
        c["imagePullPolicy"] = image["pullPolicy"]
    for key in (
        "workingDir",
        "command",
        "args",
        "resources",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "securityContext",
        "terminationMessagePath",
        "terminationMessagePolicy",
    ):
        value = _clone(raw.get(key))
        if value not in (None, _DROP, [], ""):
            c[key] = value
    for key in ("stdin", "stdinOnce", "tty"):
        if raw.get(key):
            c[key] = True
    env = {k: v for k, v in _config(ctx).items() if v.value_from is not None}
    raw_env = _map(ctx, raw.get("env"), f"{path}.env")
    env.update({k: parse_env_value(ctx, v, f"{path}.env.{k}") for k, v in raw_env.items()})
    if env:
        c["env"] = [
            {"name": k, "valueFrom": copy.deepcopy(dict(v.value_from))}
            if v.value_from is not None
            else ({"name": k, "value": v.value} if v.value else {"name": k})
            for k, v in sorted(env.items())
        ]
    ports = _map(ctx, raw.get("ports"), f"{path}.ports")
    if ports:
        c["ports"] = []
        for key in sorted(ports):
            port_name, protocol, host_port = _decode_port_name(key)
            p: dict[str, Any] = {
                "name": port_name,
                "containerPort": _int(ctx, ports[key], f"{path}.ports.{key}"),
                "protocol": protocol,
            }
            if host_port:
                p["hostPort"] = host_port
            c["ports"].append(p)
    pod_volumes = template["spec"].setdefault("volumes", [])
    for v in volumes:
        volume = _mount_into(v, c)
        if volume is not None and all(pv["name"] != volume["name"] for pv in pod_volumes):
            pod_volumes.append(volume)
            pod_volumes.sort(key=lambda pv: pv["name"])
    if not pod_volumes:
        template["spec"].pop("volumes")
    return c


def _pod_template(ctx: _Ctx, deploy_labels: Mapping[str, str]) -> dict[str, Any]:
    containers = _map(ctx, ctx.spec.get("containers"), "spec.containers")
    if not containers:
        raise ctx.fail("spec.containers", f"required for deploy kind {_deploy_kind(ctx)}")
    annotations = {
        k: ctx.annotations[k]
        for k in (ANNOTATION_SPEC_DIGEST, ANNOTATION_REVISION_DIGEST)
        if k in ctx.annotations
    }
    template: dict[str, Any] = {"metadata": {"labels": {"app": ctx.name}}, "spec": {}}
    if annotations:
        template["metadata"]["annotations"] = annotations
    volumes = _volumes(ctx)
    platforms = list(DEFAULT_PLATFORMS)
    for name in sorted(containers):
        raw = _map(ctx, containers[name], f'spec.containers["{name}"]')
        wanted = _str_list(
            ctx, _map(ctx, raw.get("image"), "").get("platforms"), f'spec.containers["{name}"]'
        )
        if wanted:
            platforms = [p for p in wanted if p in platforms]
    init = sorted(n for n in containers if n.startswith("init-"))
    main = sorted(n for n in containers if not n.startswith("init-"))
    for field_name, names in (("initContainers", init), ("containers", main)):
        for name in names:
            c = _container(ctx, name, containers[name], template, volumes)
            template["spec"].setdefault(field_name, []).append(c)
    if ctx.spec.get("serviceAccount") is not None:
        template["spec"]["serviceAccountName"] = ctx.name
    _set_arch_affinity(template["spec"], [a for p in platforms if (a := _arch_of(p))])
    template["metadata"]["labels"].update(deploy_labels)
    return template


def _user_spec(ctx: _Ctx, kind: str, deploy: Mapping[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(_map(ctx, deploy.get("spec"), "spec.deploy.spec"))
    if kind == "CronJob" and "template" in spec:
        # kubepkgspec names the CronJob's job template ``template``; kubepkg gen 2 ``jobTemplate``.
        if "jobTemplate" in spec:
            raise ctx.fail("spec.deploy.spec.template", "give either template or jobTemplate")
        spec["jobTemplate"] = spec.pop("template")
    pod_path = "spec.deploy.spec.template.spec"
    pod: Any = spec
    if kind == "CronJob":
        pod = _map(ctx, pod.get("jobTemplate"), "spec.deploy.spec.jobTemplate").get("spec")
        pod_path = "spec.deploy.spec.jobTemplate.spec.template.spec"
    template = _map(ctx, (pod or {}).get("template"), pod_path.rsplit(".", 1)[0])
    pod_spec = _map(ctx, template.get("spec"), pod_path)
    for name in POD_FIELDS_FROM_SPEC:
        if name in pod_spec:
            raise ctx.fail(
                f"{pod_path}.{name}",
                "not allowed here: containers, volumes and the service account come from "
                "spec.containers, spec.volumes and spec.serviceAccount",
            )
    return spec


def _deploy_object(ctx: _Ctx) -> KubeObject | None:
    kind = _deploy_kind(ctx)
    if not kind or kind == "EndpointSlice":
        return None
    deploy = _deploy(ctx)
    labels = dict(_str_map(ctx, deploy.get("labels"), "spec.deploy.labels"))
    annotations = _str_map(ctx, deploy.get("annotations"), "spec.deploy.annotations")
    meta: dict[str, Any] = {"name": ctx.name, **_ns(ctx)}
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    if kind in ("ConfigMap", "Secret"):
        data = _config_data(ctx, annotations.get("configuration.octohelm.tech/type", ""))
        if not data:
            return None
        meta.setdefault("annotations", {})[ANNOTATION_SPEC_DIGEST] = values_digest(data)
        body = "data" if kind == "ConfigMap" else "stringData"
        return {"apiVersion": "v1", "kind": kind, "metadata": meta, body: data}
    # kubepkgspec labels the pod template with the deploy's labels plus instance and version.
    template = _pod_template(ctx, {**labels, **_instance_labels(ctx)})
    spec: dict[str, Any]
    if kind == "CronJob":
        spec = {"jobTemplate": {"spec": {"template": template}}}
    elif kind == "Job":
        spec = {"template": template}
    else:
        spec = {"selector": {"matchLabels": {"app": ctx.name}}, "template": template}
    merged = merge(spec, _user_spec(ctx, kind, deploy))
    obj: KubeObject = {"apiVersion": WORKLOADS[kind], "kind": kind, "metadata": meta}
    if merged is not _DROP:
        obj["spec"] = merged
    return obj


def _config_data(ctx: _Ctx, configuration_type: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for k, v in _config(ctx).items():
        if v.value_from is not None:
            raise ctx.fail(f"spec.config.{k}", "a reference is not allowed for this deploy kind")
        values[k] = v.value
    if configuration_type == "database":
        endpoint = values.get("scheme", "") + "://"
        user, password = values.get("username", ""), values.get("password", "")
        endpoint += user + (":" + password if password else "") + ("@" if user or password else "")
        endpoint += values.get("host", "")
        endpoint += "/" + values["name"] if values.get("name") else ""
        endpoint += "?" + values["extra"] if values.get("extra") else ""
        values["endpoint"] = endpoint
    return values


def _instance_labels(ctx: _Ctx) -> dict[str, str]:
    return {LABEL_INSTANCE: ctx.name, LABEL_APP_VERSION: ctx.version}


# --- services -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayTemplate:
    """kubepkg HEAD ``name+http[s]://<host template>[?always=true]``."""

    name: str
    host: str
    https: bool
    always: bool

    def host_for(self, service: str, namespace: str) -> str:
        values = {"Name": service, "Namespace": namespace}
        return _TEMPLATE_FIELD.sub(lambda m: values[m.group(1)], self.host)


def parse_gateway_template(text: str) -> GatewayTemplate:
    """One gateway template; ValueError when it is not ``name+scheme://host``."""
    parts = text.split("://")
    if len(parts) != 2:
        raise ValueError(f"invalid gateway template {text!r}: want name+https://host")
    head, rest = parts
    host, _, query = rest.partition("?")
    if "{{" in _TEMPLATE_FIELD.sub("", host):
        raise ValueError(
            f"invalid gateway template {text!r}: only {{{{ .Name }}}} and "
            "{{ .Namespace }} are supported"
        )
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    return GatewayTemplate(
        head.split("+")[0], host, head.endswith("https"), params.get("always") == "true"
    )


def _gateway_templates(ctx: _Ctx, gateways: Sequence[str]) -> dict[str, GatewayTemplate]:
    entries = list(gateways) or ctx.annotations.get(ANNOTATION_GATEWAY, "").split(",")
    out: dict[str, GatewayTemplate] = {}
    for entry in entries:
        if not entry:
            continue
        try:
            t = parse_gateway_template(entry)
        except ValueError as e:
            raise ctx.fail(f"metadata.annotations[{ANNOTATION_GATEWAY}]", str(e)) from None
        out[t.name] = t
    return out


def _services(ctx: _Ctx, gateways: Sequence[str]) -> list[KubeObject]:
    out: list[KubeObject] = []
    services = _map(ctx, ctx.spec.get("services"), "spec.services")
    templates = _gateway_templates(ctx, gateways)
    deploy_kind = _deploy_kind(ctx)
    for key in sorted(services):
        path = f'spec.services["{key}"]'
        s = _map(ctx, services[key], path)
        name = ctx.sub_name(key)
        spec: dict[str, Any] = {}
        if deploy_kind == "EndpointSlice":
            spec["clusterIP"] = "None"
        else:
            spec["selector"] = {"app": ctx.name}
            if s.get("clusterIP"):
                spec["clusterIP"] = _str(ctx, s["clusterIP"], f"{path}.clusterIP")
        raw_paths = _map(ctx, s.get("paths"), f"{path}.paths")
        user_paths = {
            k: _str_list(ctx, v, f"{path}.paths.{k}") for k, v in sorted(raw_paths.items())
        }
        paths = dict(user_paths)
        ports = _map(ctx, s.get("ports"), f"{path}.ports")
        for port_name in sorted(ports):
            number = _int(ctx, ports[port_name], f"{path}.ports.{port_name}")
            spec.setdefault("ports", []).append(
                {
                    "name": port_name,
                    "port": number,
                    "protocol": _port_protocol(port_name),
                    "targetPort": port_name,
                }
            )
            if port_name.startswith("http"):
                paths.setdefault(port_name, ["/"])
        expose = _map(ctx, s.get("expose"), f"{path}.expose")
        expose_type = _str(ctx, expose.get("type"), f"{path}.expose.type")
        if expose and expose_type not in ("NodePort", "Ingress"):
            raise ctx.fail(f"{path}.expose.type", "must be NodePort or Ingress")
        use_templates = key == "#" and bool(templates)
        if use_templates and not expose and paths:
            expose_type = "Ingress"  # kubepkg HEAD: gateways configured turn Ingress on
        endpoints: dict[str, str] = {}
        if expose_type != "NodePort":
            endpoints["default"] = f"http://{name}"
        named = _str_list(ctx, expose.get("gateway"), f"{path}.expose.gateway")
        if expose_type == "NodePort":
            spec["type"] = "NodePort"
            for p in spec.get("ports", []):
                p["nodePort"] = p["port"]
        elif expose_type == "Ingress":
            route_gateways = named
            if use_templates:
                enabled = {n: t for n, t in templates.items() if t.always}
                route_gateways = []
                for g in named:
                    if g in templates:
                        enabled[g] = templates[g]
                    elif "+" in g:
                        try:
                            inline = parse_gateway_template(g)
                        except ValueError as e:
                            raise ctx.fail(f"{path}.expose.gateway", str(e)) from None
                        enabled[inline.name] = inline
                    else:
                        route_gateways.append(g)
                for t in templates.values():
                    host = t.host_for(name, ctx.namespace)
                    endpoints[t.name] = f"{'https' if t.https else 'http'}://{host}" if host else ""
                ingress = _ingress(ctx, name, enabled, paths)
                if ingress is not None:
                    out.append(ingress)
            if route_gateways and user_paths:
                options = _str_map(ctx, expose.get("options"), f"{path}.expose.options")
                out.append(_http_route(ctx, name, route_gateways, user_paths, ports, options))
        meta = {"name": name, **_ns(ctx)}
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec})
        if deploy_kind == "EndpointSlice":
            out.append(_endpoint_slice(ctx, name))
        if templates and endpoints:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"endpoint-{name}", **_ns(ctx)},
                    "data": endpoints,
                }
            )
    return out


def _ingress(
    ctx: _Ctx, name: str, gateways: Mapping[str, GatewayTemplate], paths: Mapping[str, list[str]]
) -> KubeObject | None:
    rules = []
    for gateway in sorted(gateways):
        host = gateways[gateway].host_for(name, ctx.namespace)
        for port_name, values in sorted(paths.items()):
            rule: dict[str, Any] = {"host": host} if host else {}
            rule["http"] = {
                "paths": [
                    {
                        "path": value,
                        "pathType": "ImplementationSpecific",
                        "backend": {"service": {"name": name, "port": {"name": port_name}}},
                    }
                    for value in values
                ]
            }
            rules.append(rule)
    if not rules:
        return None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, **_ns(ctx)},
        "spec": {"rules": rules},
    }


def _http_route(
    ctx: _Ctx,
    name: str,
    gateways: Sequence[str],
    paths: Mapping[str, list[str]],
    ports: Mapping[str, Any],
    options: Mapping[str, str],
) -> KubeObject:
    parents = []
    for gateway in gateways:
        parts = gateway.split(".")
        parent = {"name": parts[0]}
        if len(parts) > 1:
            parent["namespace"] = parts[1]
        parents.append(parent)
    rules = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": v}} for v in values],
            "backendRefs": [{"name": name, "port": ports.get(port_name, 80)}],
        }
        for port_name, values in sorted(paths.items())
        if values
    ]
    meta: dict[str, Any] = {"name": name, **_ns(ctx)}
    if options:
        text = json.dumps(dict(sorted(options.items())), separators=(",", ":"), ensure_ascii=False)
        meta["annotations"] = {ANNOTATION_HTTPROUTE_OPTIONS: text}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta,
        "spec": {"parentRefs": parents, "rules": rules},
        "status": {"parents": []},
    }


def _endpoint_slice(ctx: _Ctx, service: str) -> KubeObject:
    deploy = _deploy(ctx)
    labels = dict(_str_map(ctx, deploy.get("labels"), "spec.deploy.labels"))
    labels["kubernetes.io/service-name"] = service
    labels["endpointslice-controller.k8s.io"] = "manual"
    meta: dict[str, Any] = {"name": service, **_ns(ctx), "labels": labels}
    annotations = _str_map(ctx, deploy.get("annotations"), "spec.deploy.annotations")
    if annotations:
        meta["annotations"] = dict(annotations)
    raw_ports = _map(ctx, deploy.get("ports"), "spec.deploy.ports")
    ports = []
    for key in sorted(raw_ports):
        port_name, protocol, _ = _decode_port_name(key)
        number = _int(ctx, raw_ports[key], f"spec.deploy.ports.{key}")
        ports.append({"name": port_name, "protocol": protocol, "port": number})
    endpoint: dict[str, Any] = {"conditions": {"ready": True}}
    addresses = _str_list(ctx, deploy.get("addresses"), "spec.deploy.addresses")
    if addresses:
        endpoint["addresses"] = addresses
    obj: KubeObject = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": _str(ctx, deploy.get("addressType"), "spec.deploy.addressType"),
        "endpoints": [endpoint],
    }
    if ports:
        obj["ports"] = ports
    return obj


# --- RBAC -----------------------------------------------------------------------------------------


def _rbac(ctx: _Ctx) -> list[KubeObject]:
    raw = ctx.spec.get("serviceAccount")
    if raw is None:
        return []
    sa = _map(ctx, raw, "spec.serviceAccount")
    scope = _str(ctx, sa.get("scope"), "spec.serviceAccount.scope", "Namespace")
    if scope not in ("Cluster", "Namespace"):
        raise ctx.fail("spec.serviceAccount.scope", "must be Cluster or Namespace")
    rules = sa.get("rules") or []
    if not isinstance(rules, list):
        raise ctx.fail("spec.serviceAccount.rules", "must be a list")
    meta = {"name": ctx.name, **_ns(ctx)}
    role_kind = "ClusterRole" if scope == "Cluster" else "Role"
    subject = {"kind": "ServiceAccount", "name": ctx.name, **_ns(ctx)}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": role_kind,
            "metadata": dict(meta),
            "rules": copy.deepcopy(rules),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": role_kind + "Binding",
            "metadata": dict(meta),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": role_kind,
                "name": ctx.name,
            },
            "subjects": [subject],
        },
    ]


# --- spec.manifests -------------------------------------------------------------------------------


def _manifests(ctx: _Ctx) -> list[KubeObject]:
    out = []
    for leaf in walk(ctx.spec.get("manifests"), "spec.manifests"):
        if leaf.problem:
            raise ctx.fail(leaf.path, leaf.problem)
        obj = leaf.value
        if not (isinstance(obj.get("apiVersion"), str) and isinstance(obj.get("kind"), str)):
            raise ctx.fail(leaf.path, "apiVersion and kind must be strings")
        obj = copy.deepcopy(obj)
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            raise ctx.fail(f"{leaf.path}.metadata.name", "required")
        # kubepkgspec forces the package's namespace on every object it extracts.
        if ctx.namespace:
            meta["namespace"] = ctx.namespace
        else:
            meta.pop("namespace", None)
        if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects") or []:
                if isinstance(subject, dict):
                    if ctx.namespace:
                        subject["namespace"] = ctx.namespace
                    else:
                        subject.pop("namespace", None)
        if obj["kind"] in ("ConfigMap", "Secret") and obj["apiVersion"] == "v1":
            values = obj.get("data" if obj["kind"] == "ConfigMap" else "stringData")
            digest = values_digest(values if isinstance(values, dict) else None)
            annotations = meta.get("annotations")
            meta["annotations"] = {**(annotations or {}), ANNOTATION_SPEC_DIGEST: digest}
        if obj["kind"] in WORKLOADS:
            annotations = meta.get("annotations") or {}
            platforms = annotations.get(ANNOTATION_PLATFORM) or ctx.annotations.get(
                ANNOTATION_PLATFORM, ""
            )
            template = pod_template_of(obj)
            if platforms and template is not None:
                arches = [a for p in str(platforms).split(",") if (a := _arch_of(p))]
                _set_arch_affinity(template.setdefault("spec", {}), arches)
        out.append(obj)
    return out


# --- reload digests -------------------------------------------------------------------------------


def _patch_reload(objects: Iterable[KubeObject]) -> None:
    """kubepkgspec reloader: pod templates name the ConfigMaps/Secrets they use, with digests."""
    objects = list(objects)
    digests: dict[str, dict[str, str]] = {"ConfigMap": {}, "Secret": {}}
    for obj in objects:
        if obj["kind"] in digests:
            value = ((obj.get("metadata") or {}).get("annotations") or {}).get(
                ANNOTATION_SPEC_DIGEST
            )
            if value:
                digests[obj["kind"]][obj["metadata"]["name"]] = value
    for obj in objects:
        if obj["kind"] not in RELOADED_KINDS:
            continue
        template = pod_template_of(obj)
        if template is None:
            continue
        used: dict[str, set[str]] = {"ConfigMap": set(), "Secret": set()}
        pod = template.get("spec") or {}
        for c in pod.get("containers") or []:
            for source in c.get("envFrom") or []:
                if source.get("configMapRef"):
                    used["ConfigMap"].add(source["configMapRef"].get("name", ""))
                if source.get("secretRef"):
                    used["Secret"].add(source["secretRef"].get("name", ""))
            for env in c.get("env") or []:
                ref = env.get("valueFrom") or {}
                if ref.get("configMapKeyRef"):
                    used["ConfigMap"].add(ref["configMapKeyRef"].get("name", ""))
                if ref.get("secretKeyRef"):
                    used["Secret"].add(ref["secretKeyRef"].get("name", ""))
        for v in pod.get("volumes") or []:
            if isinstance(v.get("configMap"), dict):
                used["ConfigMap"].add(v["configMap"].get("name", ""))
            if isinstance(v.get("secret"), dict):
                used["Secret"].add(v["secret"].get("secretName", ""))
        for kind, reload_key, scope in (
            ("ConfigMap", ANNOTATION_CONFIGMAP_RELOAD, SCOPE_CONFIGMAP_DIGEST),
            ("Secret", ANNOTATION_SECRET_RELOAD, SCOPE_SECRET_DIGEST),
        ):
            if not used[kind]:
                continue
            annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
            annotations[reload_key] = ",".join(sorted(used[kind]))
            for name in sorted(used[kind]):
                if name in digests[kind]:
                    annotations[scope + name] = digests[kind][name]


# --- entry point ----------------------------------------------------------------------------------


def _sort_key(obj: KubeObject) -> tuple[int, str, str]:
    kind = obj["kind"]
    rank = INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)
    return (rank, kind if rank == len(INSTALL_ORDER) else "", obj["metadata"]["name"])


@dataclass
class _Registry:
    ctx: _Ctx
    objects: dict[tuple[str, str], KubeObject] = field(default_factory=dict)

    def add(self, obj: KubeObject | None) -> None:
        """Label and keep ``obj``; a later object with the same kind and name replaces it."""
        if obj is None:
            return
        labels = obj["metadata"].setdefault("labels", {})
        labels.update(_instance_labels(self.ctx))
        self.objects[(obj["kind"].lower(), obj["metadata"]["name"])] = obj


def convert(kubepkg: Mapping[str, Any], *, gateways: Sequence[str] = ()) -> list[KubeObject]:
    """The objects upstream renders for ``kubepkg`` (the API object as a dict), in install order.

    ``gateways`` are Ingress gateway templates (``name+https://{{ .Name }}.example``) that
    override the ``ingress.octohelm.tech/gateway`` annotation, like kubepkg's operator flag.
    Raises ConvertError naming the field for a spec upstream would refuse.
    """
    meta = kubepkg.get("metadata") if isinstance(kubepkg.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ConvertError("KubePkg: metadata.name: required")
    namespace = meta.get("namespace") or ""
    annotations = meta.get("annotations") or {}
    spec = kubepkg.get("spec")
    probe = _Ctx(name, str(namespace), "", {}, {})
    spec = _map(probe, spec, "spec")
    ctx = _Ctx(
        name,
        _str(probe, namespace, "metadata.namespace"),
        _str(probe, spec.get("version"), "spec.version"),
        _str_map(probe, annotations, "metadata.annotations"),
        spec,
    )
    registry = _Registry(ctx)
    registry.add(_deploy_object(ctx))
    for v in _volumes(ctx):
        registry.add(_volume_resource(ctx, v))
    for obj in _services(ctx, gateways):
        registry.add(obj)
    for obj in _rbac(ctx):
        registry.add(obj)
    for obj in _manifests(ctx):
        registry.add(obj)
    objects = list(registry.objects.values())
    _patch_reload(objects)
    if ctx.namespace and ("namespace", ctx.namespace) not in registry.objects:
        objects.append(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ctx.namespace}}
        )
    return sorted(objects, key=_sort_key)
