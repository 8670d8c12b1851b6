"""The KubePkg OpenAPI v3 schema, written once, and the walker that checks a document against it.

One schema, two uses: ``crds.py`` puts ``KUBEPKG_SPEC`` and ``KUBEPKG_STATUS`` into the KubePkg
CRD (so the API server refuses what we refuse, and ``kubectl explain kubepkg.spec.containers``
reads these descriptions), and ``model.py`` runs ``check`` over every document it loads, turning
each miss into a ``Problem`` (``spec.containers["web"].imag: unknown field``). Pure.

The structure covers every upstream generation at once (UPSTREAM-KUBEPKG.md §1.2): gen 1's
``spec.images``/``spec.manifests``; gen 2/3's ``deploy``, ``config``, ``containers``, ``volumes``,
``services``, ``serviceAccount``; kubepkgspec's ``Image`` map entries, ``Image`` volumes,
``EndpointSlice`` deploys and string-or-list ``paths``. Embedded Kubernetes types (a deploy's
``spec``, probes, resources, ``PolicyRule``, a volume's ``opt``, manifests) are
``x-kubernetes-preserve-unknown-fields`` objects: the API server owns their shape.

What a structural schema cannot say (the tagged unions' per-kind fields) is written as
``x-kubernetes-validations`` CEL rules; each rule is made here by ``_rule`` together with the Python
predicate ``check`` runs for it, so the two cannot drift. A node of two types (``paths`` and
``expose.gateway``: a string or a list; a ``spec.images`` entry: a string or an image object) can
be neither typed nor seen by CEL: the CRD takes it as is and ``model.py`` checks it, beside the
semantic rules (image references, env and port key syntax, DNS names).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

Schema = dict[str, Any]

# semver 2.0.0, the official regular expression.
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)

VERSION_PATTERN = "^v?" + SEMVER_PATTERN[1:]
"""``spec.version``: semver, with the leading ``v`` upstream files carry (normalised away)."""

WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob")
DEPLOY_KINDS = (*WORKLOAD_KINDS, "ConfigMap", "Secret", "EndpointSlice")
VOLUME_TYPES = ("EmptyDir", "HostPath", "ConfigMap", "Secret", "PersistentVolumeClaim", "Image")

_PREDICATES: dict[str, Callable[[Any], bool]] = {}
"""CEL rule text -> the same rule in Python, filled by ``_rule``."""


def _rule(cel: str, message: str, predicate: Callable[[Any], bool], field: str = "") -> Schema:
    """One ``x-kubernetes-validations`` entry; ``check`` evaluates ``predicate`` in its place."""
    _PREDICATES[cel] = predicate
    rule: Schema = {"rule": cel, "message": message}
    if field:
        rule["fieldPath"] = f".{field}"
    return rule


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def string(description: str = "", **extra: Any) -> Schema:
    s: Schema = {"type": "string", **extra}
    if description:
        s["description"] = description
    return s


def _described(s: Schema, description: str) -> Schema:
    return {**s, "description": description} if description else s


def _integer(description: str = "", **extra: Any) -> Schema:
    return _described({"type": "integer", **extra}, description)


def _boolean(description: str = "") -> Schema:
    return _described({"type": "boolean"}, description)


def _strings(description: str = "") -> Schema:
    return _described({"type": "array", "items": {"type": "string"}}, description)


def _map(value: Schema, description: str = "") -> Schema:
    return _described({"type": "object", "additionalProperties": value}, description)


def _object(
    properties: dict[str, Schema],
    description: str = "",
    *,
    required: tuple[str, ...] = (),
    rules: tuple[Schema, ...] = (),
) -> Schema:
    s: Schema = {"type": "object"}
    if required:
        s["required"] = list(required)
    s["properties"] = properties
    if rules:
        s["x-kubernetes-validations"] = list(rules)
    return _described(s, description)


def kube_object(description: str) -> Schema:
    """An embedded Kubernetes type: any object, its fields checked by the API server."""
    return {
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": True,
    }


def _untyped(description: str) -> Schema:
    """A node of two types (a string or a list, a string or an object).

    A structural schema cannot type it and CEL cannot see into it, so the CRD takes any value
    here; ``model.py`` checks it.
    """
    return {"description": description, "x-kubernetes-preserve-unknown-fields": True}


def _has(v: Any, key: str) -> bool:
    return isinstance(v, dict) and v.get(key) is not None


_PORT = _integer("Port number.", minimum=1, maximum=65535)
_PORTS_DOC = "Port name -> number; a name is [udp-|sctp-]<name>[:<hostPort>] (TCP by default)."

IMAGE = _object(
    {
        "name": string("Repository, like docker.io/library/nginx."),
        "tag": string("Tag, like 1.25.0-alpine."),
        "digest": string("Pinned digest, sha256:<64 hex>."),
        "platforms": _strings("Platforms the image is built for, like linux/amd64."),
        "pullPolicy": string(
            "Kubernetes imagePullPolicy.", enum=["Always", "Never", "IfNotPresent"]
        ),
    },
    "A container image: name[:tag][@digest].",
    required=("name",),
)

_CONTAINER = _object(
    {
        "image": IMAGE,
        "workingDir": string("Working directory."),
        "command": _strings("Entrypoint."),
        "args": _strings("Arguments to the entrypoint."),
        "env": _map(
            string(),
            "Environment variable -> a value, or @field/<path>, @resource/<resource>, "
            "@configMap/<name>/<key>[?] or @secret/<name>/<key>[?] (a trailing ? makes it "
            "optional).",
        ),
        "ports": _map(_PORT, _PORTS_DOC),
        "stdin": _boolean(),
        "stdinOnce": _boolean(),
        "tty": _boolean(),
        "resources": kube_object("Kubernetes ResourceRequirements."),
        "livenessProbe": kube_object("Kubernetes Probe."),
        "readinessProbe": kube_object("Kubernetes Probe."),
        "startupProbe": kube_object("Kubernetes Probe."),
        "lifecycle": kube_object("Kubernetes Lifecycle."),
        "securityContext": kube_object("Kubernetes SecurityContext."),
        "terminationMessagePath": string(),
        "terminationMessagePolicy": string(enum=["File", "FallbackToLogsOnError"]),
    },
    "A container of the deployed workload; a name starting init- makes an init container.",
    required=("image",),
)

_DEPLOY_FIELDS = ("labels", "annotations", "spec", "addressType", "addresses", "ports")

_DEPLOY = _object(
    {
        "kind": string("What the package deploys.", enum=list(DEPLOY_KINDS)),
        "labels": _map(string(), "Labels of the deployed object."),
        "annotations": _map(string(), "Annotations of the deployed object."),
        "spec": kube_object(
            "The workload's Kubernetes spec (DeploymentSpec, JobSpec, ...), merged over the "
            "generated one; only for Deployment, DaemonSet, StatefulSet, Job, CronJob."
        ),
        "addressType": string("EndpointSlice address type.", enum=["IPv4", "IPv6", "FQDN"]),
        "addresses": _strings("EndpointSlice addresses."),
        "ports": _map(_PORT, "EndpointSlice ports: name -> number."),
    },
    "The object the package deploys, chosen by kind; an empty deploy deploys nothing.",
    rules=(
        _rule(
            "has(self.kind) || !(" + " || ".join(f"has(self.{k})" for k in _DEPLOY_FIELDS) + ")",
            "required when deploy is not empty",
            lambda v: _has(v, "kind") or not any(_has(v, k) for k in _DEPLOY_FIELDS),
            "kind",
        ),
        _rule(
            f"!has(self.spec) || self.kind in {_cel_list(WORKLOAD_KINDS)}",
            f"only for kind {', '.join(WORKLOAD_KINDS)}",
            lambda v: not _has(v, "spec") or v.get("kind") in WORKLOAD_KINDS,
            "spec",
        ),
        _rule(
            "!(has(self.addressType) || has(self.addresses) || has(self.ports))"
            " || self.kind == 'EndpointSlice'",
            "addressType, addresses and ports are only for kind EndpointSlice",
            lambda v: (
                not any(_has(v, k) for k in ("addressType", "addresses", "ports"))
                or v.get("kind") == "EndpointSlice"
            ),
        ),
        _rule(
            "!has(self.kind) || self.kind != 'EndpointSlice' || has(self.addressType)",
            "required for kind EndpointSlice",
            lambda v: v.get("kind") != "EndpointSlice" or _has(v, "addressType"),
            "addressType",
        ),
        _rule(
            "!has(self.kind) || self.kind != 'EndpointSlice' || has(self.ports)",
            "required for kind EndpointSlice",
            lambda v: v.get("kind") != "EndpointSlice" or _has(v, "ports"),
            "ports",
        ),
    ),
)

_SPEC_VOLUME_TYPES = ("ConfigMap", "Secret", "PersistentVolumeClaim")

_VOLUME = _object(
    {
        "type": string("What backs the volume.", enum=list(VOLUME_TYPES)),
        "opt": kube_object(
            "The Kubernetes volume source of the type (EmptyDirVolumeSource, "
            "ImageVolumeSource, ...)."
        ),
        "spec": _described(
            {
                "type": "object",
                "properties": {"data": _map(string(), "ConfigMap or Secret data to create.")},
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "ConfigMap, Secret: {data} creates the object; PersistentVolumeClaim: the "
            "PersistentVolumeClaimSpec.",
        ),
        "mountPath": string(
            "Where every container mounts it; export mounts a ConfigMap or Secret as envFrom."
        ),
        "mountPropagation": string(enum=["Bidirectional", "HostToContainer"]),
        "prefix": string("envFrom prefix (mountPath export)."),
        "optional": _boolean("envFrom optional (mountPath export)."),
        "readOnly": _boolean(),
        "subPath": string(),
    },
    "A volume mounted into every container, chosen by type.",
    required=("type", "mountPath"),
    rules=(
        _rule(
            "self.type != 'PersistentVolumeClaim' || has(self.spec)",
            "required for type PersistentVolumeClaim",
            lambda v: v.get("type") != "PersistentVolumeClaim" or _has(v, "spec"),
            "spec",
        ),
        _rule(
            f"!has(self.spec) || self.type in {_cel_list(_SPEC_VOLUME_TYPES)}",
            f"only for type {', '.join(_SPEC_VOLUME_TYPES)}",
            lambda v: not _has(v, "spec") or v.get("type") in _SPEC_VOLUME_TYPES,
            "spec",
        ),
    ),
)

_EXPOSE = _object(
    {
        "type": string("How the service is reachable from outside.", enum=["NodePort", "Ingress"]),
        "gateway": _untyped("Ingress: a gateway name or host template, or a list of them."),
        "options": _map(string(), "Ingress: options for the gateway."),
    },
    required=("type",),
    rules=(
        _rule(
            "!has(self.options) || self.type == 'Ingress'",
            "only for type Ingress",
            lambda v: not _has(v, "options") or v.get("type") == "Ingress",
            "options",
        ),
    ),
)

_SERVICE = _object(
    {
        "ports": _map(_PORT, "Service port name (a container port name) -> port number."),
        "paths": _map(
            _untyped("A base path, or a list of them."),
            "Port name -> base path(s) an Ingress routes.",
        ),
        "clusterIP": string("Service clusterIP, like None for a headless service."),
        "expose": _EXPOSE,
    },
    "A Service selecting the package's pods; key # is the main one.",
)

_SERVICE_ACCOUNT = _object(
    {
        "scope": string(
            "Cluster: ClusterRole; Namespace (default): Role.", enum=["Cluster", "Namespace"]
        ),
        "rules": {
            "type": "array",
            "description": "RBAC PolicyRules granted to the package's ServiceAccount.",
            "items": kube_object("Kubernetes rbac/v1 PolicyRule."),
        },
    },
    "A ServiceAccount for the pods, with a Role or ClusterRole.",
    required=("rules",),
)

KUBEPKG_SPEC = _object(
    {
        "version": string(
            "Semantic version, for upgrade checking (a leading v is accepted).",
            pattern=VERSION_PATTERN,
        ),
        "images": {
            "type": "object",
            "description": 'Images to ship: "image[:tag]" -> digest or "" (gen 1), or '
            "name -> {name, tag, digest, platforms, pullPolicy} (kubepkgspec).",
            "x-kubernetes-map-type": "atomic",
            "additionalProperties": _untyped(
                'A digest or "" (gen 1), or an image object (kubepkgspec).'
            ),
        },
        "deploy": _DEPLOY,
        "config": _map(
            string(),
            "Environment of every container (ENV_NAME -> value or @reference, as in env); "
            "plain values also make the package's ConfigMap.",
        ),
        "containers": _map(_CONTAINER, "Containers of the deployed workload, by name."),
        "volumes": _map(_VOLUME, "Volumes, by name."),
        "services": _map(_SERVICE, "Services, by name; # is the main one."),
        "serviceAccount": _SERVICE_ACCOUNT,
        "manifests": {
            "type": "object",
            "description": "Kubernetes objects, as a map or nested maps and lists of them "
            "(null entries skipped); keys are free-form.",
            # One owner writes a package whole: atomic keeps managedFields to one entry
            # instead of one per field of every manifest, which made each write of a
            # 1,000-object KubePkg cost the API server about a second.
            "x-kubernetes-map-type": "atomic",
            "x-kubernetes-preserve-unknown-fields": True,
        },
    },
    "What the package deploys.",
    required=("version",),
)


def conditions() -> Schema:
    """The kstatus conditions list every CRD of this project carries."""
    return {
        "type": "array",
        "description": "kstatus conditions: Ready, Reconciling, Stalled.",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": _object(
            {
                "type": string(),
                "status": string(enum=["True", "False", "Unknown"]),
                "reason": string(),
                "message": string(),
                "lastTransitionTime": string(format="date-time"),
                "observedGeneration": _integer(format="int64"),
            },
            required=("type", "status", "lastTransitionTime", "reason", "message"),
        ),
    }


def _object_ref(*extra: str) -> Schema:
    props = {k: string() for k in ("apiVersion", "kind", "namespace", "name", *extra)}
    return _object(props, required=("apiVersion", "kind", "name"))


KUBEPKG_STATUS = _object(
    {
        "observedGeneration": _integer(format="int64"),
        "conditions": conditions(),
        "lastAppliedVersion": string(),
        "lastAppliedRevision": string(
            "<branch>@sha1:<commit> of the deployment repository last applied (the version for "
            "a KubePkg applied by hand)."
        ),
        "source": _object(
            {
                k: string()
                for k in (
                    "repository",
                    "url",
                    "branch",
                    "commit",
                    "path",
                    "catalogUrl",
                    "catalogTag",
                    "catalogCommit",
                    "tag",
                )
            },
            "Where the applied KubePkg came from: the deployment repository (URL without "
            "credentials), branch, commit and file, and the catalog revision it was promoted from.",
        ),
        "history": {
            "type": "array",
            "description": "The last applied revisions, newest first (bounded in entries and "
            "bytes): what `gitops-kubepkg history` lists and `rollback` restores.",
            "items": _object(
                {
                    "id": _integer(format="int64"),
                    **{k: string() for k in ("version", "commit", "path", "spec", "result")},
                    "time": string(format="date-time"),
                    "digests": _map(string()),
                },
                required=("id", "version"),
            ),
        },
        "inventory": {
            "type": "array",
            "description": "Every object applied for this KubePkg: one entry per apiVersion, "
            "kind and namespace, with the names.",
            "items": _object(
                {
                    **{k: string() for k in ("apiVersion", "kind", "namespace")},
                    "names": _strings(),
                    "name": string("One object (entries written before names)."),
                },
                required=("apiVersion", "kind"),
            ),
        },
        "resources": {
            "type": "array",
            "description": "Health of each object that is not Current, or whose health "
            "has a rule (rollouts, Jobs, PVCs, Ready conditions); reason: what a workload's "
            "Pods say holds it back (ImagePullFailed, CrashLoopBackOff, ...).",
            "items": _object_ref("state", "message", "reason"),
        },
        "images": _map(
            string(),
            "Image digests: reference -> digest (upstream's lock; pins what spec leaves open).",
        ),
        "digests": {
            "type": "array",
            "description": "Every manifest and blob an airgap export ships (upstream DigestMeta).",
            "items": _object(
                {
                    "type": string(enum=["manifest", "blob"]),
                    "digest": string(),
                    "name": string("Repository, like docker.io/library/nginx."),
                    "size": _integer(format="int64"),
                    "tag": string(),
                    "platform": string("os/arch[/variant]"),
                },
                required=("type", "digest", "name", "size"),
            ),
        },
        "lastHandledReconcileAt": string(
            "The gitops.kubepkg.dev/requestedAt annotation value of the last requested "
            "pass (`gitops-kubepkg reconcile kubepkg`)."
        ),
        "upgrade": _object(
            {k: string() for k in ("version", "tag", "repository")},
            "A newer catalog revision, when there is one.",
        ),
    }
)

KUBEPKG = _object(
    {
        "apiVersion": string(),
        "kind": string(),
        "metadata": {"type": "object"},
        "spec": KUBEPKG_SPEC,
        "status": KUBEPKG_STATUS,
    }
)
"""A whole KubePkg object: the CRD's openAPIV3Schema."""


# --- the walker -------------------------------------------------------------------------------


def key_path(prefix: str, key: str) -> str:
    """``prefix["key"]``: how a map entry is named in a field path."""
    return f"{prefix}[{json.dumps(key)}]"


def _field_path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def type_name(value: Any) -> str:
    """What a JSON value is, in the words problems use."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _type_ok(value: Any, want: str) -> bool:
    if want == "object":
        return isinstance(value, dict)
    if want == "array":
        return isinstance(value, list)
    if want == "string":
        return isinstance(value, str)
    if want == "boolean":
        return isinstance(value, bool)
    if want == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if want == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise ValueError(f"schema type {want!r} is not supported by the walker")


_TYPE_WORDS = {"array": "list"}
_PATTERN_WORDS = {
    VERSION_PATTERN: "a semantic version (like 1.2.3)",
    SEMVER_PATTERN: "a semantic version (like 1.2.3)",
}


def check(value: Any, schema: Schema, path: str) -> Iterator[tuple[str, str]]:
    """Every (field path, message) where ``value`` breaks ``schema``, as the API server sees it.

    Nulls are absent (the API server prunes them before validating); a field the schema does not
    name is an ``unknown field`` unless the node preserves unknown fields.
    """
    want = schema.get("type")
    if want and not _type_ok(value, want):
        yield path, f"must be {_TYPE_WORDS.get(want, want)}, got {type_name(value)}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield path, f"must be one of {', '.join(map(str, schema['enum']))}; got {value!r}"
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        words = _PATTERN_WORDS.get(schema["pattern"], f"matching {schema['pattern']}")
        yield path, f"{value!r} is not {words}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            yield path, f"must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            yield path, f"must be at most {schema['maximum']}"
    if isinstance(value, dict):
        yield from _check_object(value, schema, path)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            if item is not None:
                yield from check(item, schema["items"], f"{path}[{i}]")
    for rule in schema.get("x-kubernetes-validations", []):
        if not _PREDICATES[rule["rule"]](value):
            yield path + rule.get("fieldPath", ""), rule["message"]


def _check_object(value: dict[str, Any], schema: Schema, path: str) -> Iterator[tuple[str, str]]:
    props: dict[str, Schema] = schema.get("properties", {})
    extra: Schema | None = schema.get("additionalProperties")
    closed = "type" in schema and not schema.get("x-kubernetes-preserve-unknown-fields")
    for name in schema.get("required", []):
        if value.get(name) is None:
            yield _field_path(path, name), "required"
    for name, item in value.items():
        if item is None:
            continue
        if name in props:
            yield from check(item, props[name], _field_path(path, name))
        elif extra is not None:
            yield from check(item, extra, key_path(path, str(name)))
        elif closed and (props or "properties" in schema):
            yield _field_path(path, str(name)), "unknown field"
