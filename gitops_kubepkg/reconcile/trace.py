"""Trace: where a live object came from, read back from the record a pass left. Pure.

The read side of the reconcile record (``gitops-kubepkg trace``, which does the reading from the
cluster). For an object a KubePkg applied it names the KubePkg and its version, the deployment
repository, branch, commit and file (``status.source``), the catalog revision it was promoted
from, the digest each container runs and what fixed it (the KubePkg's ``spec.images``, the
catalog revision, an airgap import into a local registry), when the object was last applied and
by which field manager, its health as the last pass recorded it (``status.resources``: for a workload
that is not ready, the Pod and container that hold it back), and whether the live object still
holds what render would apply now (the drifted field paths, found with the same comparison plan
uses). Any other object is said to be
not ours, with what manages it instead (ownerReferences, field managers, Helm's labels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitops_kubepkg.reconcile.objects import (
    ANNOTATION_DIGEST,
    FIELD_MANAGER,
    ObjectRef,
)
from gitops_kubepkg.reconcile.plan import differences, normalised
from gitops_kubepkg.reconcile.render import RenderOptions, builtin_namespaced, render
from gitops_kubepkg.sources.deployment import catalog_images_of
from gitops_kubepkg.spec import ImageRef, KubeObject, KubePkg, parse_image

NOT_MANAGED = "not managed by gitops-kubepkg"


def controller_owner(obj: Mapping[str, Any]) -> dict[str, str] | None:
    """The ownerReference marked controller (or the only one), or None."""
    owners = [o for o in (obj.get("metadata") or {}).get("ownerReferences") or [] if o]
    chosen = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if chosen is None:
        return None
    return {k: str(chosen.get(k, "")) for k in ("apiVersion", "kind", "name")}


def managers(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    """Who wrote the object: each managedFields entry (manager, operation, subresource, time)."""
    out = []
    for e in (obj.get("metadata") or {}).get("managedFields") or []:
        entry = {k: str(e.get(k)) for k in ("manager", "operation", "time") if e.get(k)}
        if e.get("subresource"):
            entry["subresource"] = str(e["subresource"])
        out.append(entry)
    return out


def managed_by(obj: Mapping[str, Any]) -> list[str]:
    """What manages an object that is not ours, most telling first."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    out = []
    owner = controller_owner(obj)
    if owner:
        out.append(f"owned by {owner['kind']} {owner['name']} (ownerReference)")
    if annotations.get("meta.helm.sh/release-name"):
        out.append(f"Helm release {annotations['meta.helm.sh/release-name']}")
    if labels.get("app.kubernetes.io/managed-by"):
        out.append(f"label app.kubernetes.io/managed-by={labels['app.kubernetes.io/managed-by']}")
    for m in managers(obj):
        if m.get("subresource"):
            continue
        out.append(f"field manager {m.get('manager', '?')} ({m.get('operation', '?')})")
    return out or ["nothing records who created it"]


def containers(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(container name, image) of every container in the object's pod spec (or pod template)."""
    out: list[tuple[str, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in ("initContainers", "containers", "ephemeralContainers") and isinstance(
                    value, list
                ):
                    out.extend(
                        (str(c.get("name", "")), c["image"])
                        for c in value
                        if isinstance(c, Mapping) and isinstance(c.get("image"), str)
                    )
                elif key not in ("metadata", "status"):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(obj.get("spec") or {})
    return out


def _matches(ref: ImageRef, live: ImageRef) -> bool:
    """``live`` runs ``ref``: the same repository, or the airgap mirror path of it."""
    same_repo = live.repository == ref.repository or live.path == ref.mirror_repository
    return same_repo and (not live.tag or not ref.tag or live.tag == ref.tag)


@dataclass(frozen=True)
class ImageTrace:
    container: str
    image: str
    digest: str
    ref: str
    """The ``spec.images`` key it runs ("" when none matches)."""
    fixed_by: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "image": self.image,
            "digest": self.digest,
            "specImage": self.ref,
            "fixedBy": self.fixed_by,
        }


def recorded_images(images: Mapping[str, Any]) -> dict[str, str]:
    """``status.images`` keyed by the normalised tag reference (``docker.io/library/x:1``)."""
    out = {}
    for key, digest in images.items():
        try:
            out[str(parse_image(str(key)).without_digest())] = str(digest)
        except ValueError:
            continue
    return out


def image_traces(
    obj: Mapping[str, Any],
    pkg: KubePkg,
    source: Mapping[str, str],
    *,
    airgap_repository: str = "",
    catalog_images: Mapping[str, str] | None = None,
    recorded: Mapping[str, str] | None = None,
) -> list[ImageTrace]:
    """Each container's digest and what fixed it, in the order the record was made: the catalog
    revision (unless the images ``promote`` recorded from it say it pinned another digest), the
    deployment's KubePkg file (``spec.images``), the airgap import that put it into the registry
    the node pulls from; for a tag ``spec.images`` leaves open, the controller's registry store
    (``recorded``: the KubePkg's ``status.images``, by normalised tag reference)."""
    refs = pkg.image_refs()
    by_tag = recorded_images(recorded or {})
    out = []
    for name, image in containers(obj):
        try:
            live = parse_image(image)
        except ValueError:
            out.append(ImageTrace(name, image, "", "", []))
            continue
        key = next((k for k, r in refs.items() if _matches(r, live)), "")
        ref = refs.get(key)
        fixed: list[dict[str, str]] = []
        if ref is not None and ref.digest and live.digest == ref.digest:
            from_catalog = catalog_images is None or catalog_images.get(key) == ref.digest
            if source.get("catalogTag") and from_catalog:
                fixed.append(
                    {
                        "by": "catalog",
                        "url": source.get("catalogUrl", ""),
                        "tag": source["catalogTag"],
                        "commit": source.get("catalogCommit", ""),
                    }
                )
            where = {"by": "spec.images", "key": key}
            for k in ("url", "branch", "commit", "path"):
                if source.get(k):
                    where[k] = source[k]
            fixed.append(where)
            if live.repository != ref.repository:
                entry = {"by": "airgap import", "registry": live.domain}
                if airgap_repository:
                    entry["repository"] = airgap_repository
                fixed.append(entry)
        elif (
            live.digest
            and (ref is None or not ref.digest)
            and live.digest
            == by_tag.get(str(ref.without_digest() if ref is not None else live.without_digest()))
        ):
            fixed.append({"by": "registry store", "note": "the digest the controller's store "
                          "holds for this tag (an airgap import); spec.images names no digest"})  # fmt: skip
        elif live.digest and ref is not None:
            fixed.append({"by": "live object", "note": f"spec.images says {ref.digest or 'none'}"})
        out.append(ImageTrace(name, image, live.digest, key, fixed))
    return out


def applied_by(obj: Mapping[str, Any]) -> dict[str, str]:
    """When our field manager last applied the object (``{}`` when it never did)."""
    for m in managers(obj):
        ours = m.get("manager") == FIELD_MANAGER and m.get("operation") == "Apply"
        if ours and not m.get("subresource"):
            return {"fieldManager": FIELD_MANAGER, "time": m.get("time", "")}
    return {}


def other_writers(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    """Field managers other than ours that wrote the object outside status (a hand edit)."""
    return [
        m for m in managers(obj) if m.get("manager") != FIELD_MANAGER and not m.get("subresource")
    ]


def drift(
    live: Mapping[str, Any],
    pkg: KubePkg,
    kubepkg: Mapping[str, Any],
    namespaced: Callable[[str, str], bool] = builtin_namespaced,
) -> tuple[KubeObject | None, list[str]]:
    """What render would apply for ``live`` now and the paths where live differs from it.

    The registry an airgapped controller rewrites images to is not in the record; it is read off
    the live object's images (the one whose config digest matches, else the fewest differences).
    """
    ref = ObjectRef.of(live)
    meta = kubepkg.get("metadata") or {}
    by_tag = recorded_images((kubepkg.get("status") or {}).get("images") or {})
    registries = ["", *sorted({image.split("/", 1)[0] for _, image in containers(live)})]
    best: tuple[KubeObject | None, list[str]] = (None, [])
    for registry in registries:
        options = RenderOptions(
            namespace=str(meta.get("namespace") or "default"),
            owner_uid=str(meta.get("uid") or ""),
            registry=registry,
            namespaced=namespaced,
            resolve=lambda image: by_tag.get(str(image), ""),  # what the store pinned
        )
        want = next((o for o in render(pkg, options) if ObjectRef.of(o) == ref), None)
        if want is None:
            return None, []
        paths = list(differences(normalised(want), live))
        live_digest = ((live.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_DIGEST)
        if live_digest == want["metadata"]["annotations"][ANNOTATION_DIGEST]:
            return want, paths
        if best[0] is None or len(paths) < len(best[1]):
            best = (want, paths)
    return best


@dataclass
class Trace:
    """Everything ``trace`` says about one object."""

    object: ObjectRef
    managed: bool
    kubepkg: dict[str, Any] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    revision: str = ""
    applied: dict[str, str] = field(default_factory=dict)
    written_by: list[dict[str, str]] = field(default_factory=list)
    images: list[ImageTrace] = field(default_factory=list)
    in_sync: bool | None = None
    drifted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    managed_by: list[str] = field(default_factory=list)
    via: Trace | None = None
    """For an object made by one we applied (a Pod of a Deployment): that object's trace."""
    health: dict[str, str] = field(default_factory=dict)
    """Its entry of the KubePkg's ``status.resources`` (state, message, reason); empty: Current."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object": self.object.to_dict(), "managed": self.managed}
        if not self.managed:
            out["message"] = NOT_MANAGED
            out["managedBy"] = self.managed_by
            if self.via is not None:
                out["via"] = self.via.to_dict()
            return out
        out["kubepkg"] = self.kubepkg
        out["source"] = self.source
        out["lastAppliedRevision"] = self.revision
        out["applied"] = self.applied
        if self.health:
            out["health"] = self.health
        if self.written_by:
            out["alsoWrittenBy"] = self.written_by
        out["images"] = [i.to_dict() for i in self.images]
        out["inSync"] = self.in_sync
        out["drift"] = self.drifted
        if self.notes:
            out["notes"] = self.notes
        return out


def ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == "Ready":
            return c
    return {}


def recorded_health(status: Mapping[str, Any], ref: ObjectRef) -> dict[str, str]:
    """``ref``'s entry of ``status.resources`` (state, message, reason), or {} (Current)."""
    for e in status.get("resources") or []:
        if (
            isinstance(e, Mapping)
            and ObjectRef(
                str(e.get("apiVersion", "")),
                str(e.get("kind", "")),
                str(e.get("namespace", "")),
                str(e.get("name", "")),
            )
            == ref
        ):
            return {k: str(e[k]) for k in ("state", "message", "reason") if e.get(k)}
    return {}


def trace_object(
    live: Mapping[str, Any],
    kubepkg: Mapping[str, Any] | None,
    pkg: KubePkg | None,
    *,
    airgap_repository: str = "",
    namespaced: Callable[[str, str], bool] = builtin_namespaced,
) -> Trace:
    """The trace of ``live``, applied for ``kubepkg`` (its model ``pkg``; None when invalid)."""
    ref = ObjectRef.of(live)
    if kubepkg is None:
        return Trace(ref, False, managed_by=managed_by(live))
    status = kubepkg.get("status") or {}
    meta = kubepkg.get("metadata") or {}
    ready = ready_condition(kubepkg)
    source = {str(k): str(v) for k, v in (status.get("source") or {}).items()}
    trace = Trace(
        ref,
        True,
        kubepkg={
            "namespace": str(meta.get("namespace", "")),
            "name": str(meta.get("name", "")),
            "version": str((kubepkg.get("spec") or {}).get("version", "")),
            "lastAppliedVersion": str(status.get("lastAppliedVersion", "")),
            "ready": str(ready.get("status", "Unknown")),
            "message": str(ready.get("message", "")),
        },
        source=source,
        revision=str(status.get("lastAppliedRevision", "")),
        applied=applied_by(live),
        written_by=other_writers(live),
        health=recorded_health(status, ref),
    )
    if pkg is None:
        trace.notes.append("the KubePkg's spec is invalid now: nothing to compare with")
        return trace
    trace.images = image_traces(
        live,
        pkg,
        source,
        airgap_repository=airgap_repository,
        catalog_images=catalog_images_of(kubepkg),
        recorded=status.get("images") or {},
    )
    consistent = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Consistent"), None
    )
    if consistent and consistent.get("status") == "False":
        trace.notes.append(f"{consistent.get('reason')}: {consistent.get('message')}")
    want, paths = drift(live, pkg, kubepkg, namespaced)
    if want is None:
        trace.in_sync = False
        trace.notes.append(
            f"version {pkg.version} no longer renders this object: the next pass prunes it"
        )
    else:
        trace.in_sync = not paths
        trace.drifted = paths
    return trace


def describe(trace: Trace, indent: str = "") -> list[str]:
    """The trace as lines for people."""
    lines = [f"{indent}{trace.object}"]
    if not trace.managed:
        lines.append(f"{indent}  {NOT_MANAGED}")
        lines += [f"{indent}  managed by: {m}" for m in trace.managed_by]
        if trace.via is not None:
            lines.append(f"{indent}  made by an object gitops-kubepkg applied:")
            lines += describe(trace.via, indent + "    ")
        return lines
    k, s = trace.kubepkg, trace.source
    lines.append(
        f"{indent}  KubePkg:     {k['namespace']}/{k['name']} version {k['version']} "
        f"(Ready={k['ready']}: {k['message']})"
    )
    if s.get("commit"):
        lines.append(
            f"{indent}  deployment:  {s.get('url') or s.get('repository', '')} "
            f"branch {s.get('branch', '?')} commit {s['commit']}"
        )
        lines.append(f"{indent}  file:        {s.get('path', '')}")
    else:
        lines.append(f"{indent}  deployment:  none recorded (applied with gitops-kubepkg apply?)")
    if s.get("catalogTag"):
        lines.append(
            f"{indent}  catalog:     {s.get('catalogUrl', '')} tag {s['catalogTag']} "
            f"commit {s.get('catalogCommit', '')}"
        )
    else:
        lines.append(f"{indent}  catalog:     none recorded (not promoted)")
    if trace.revision:
        lines.append(f"{indent}  revision:    {trace.revision}")
    if trace.applied:
        lines.append(
            f"{indent}  applied:     {trace.applied['time']} by field manager "
            f"{trace.applied['fieldManager']}"
        )
    if trace.health:
        h = trace.health
        why = f" [{h['reason']}]" if h.get("reason") else ""
        lines.append(f"{indent}  health:      {h.get('state', '?')}{why}: {h.get('message', '')}")
    for w in trace.written_by:
        lines.append(
            f"{indent}  also written: {w.get('time', '?')} by {w.get('manager', '?')} "
            f"({w.get('operation', '?')})"
        )
    for i in trace.images:
        pinned = "" if i.digest else " (no digest: what runs can change under this tag)"
        lines.append(f"{indent}  container {i.container}: {i.image}{pinned}")
        for f in i.fixed_by:
            detail = " ".join(f"{k}={v}" for k, v in f.items() if k != "by" and v)
            lines.append(f"{indent}    digest fixed by {f['by']}: {detail}")
    if trace.in_sync:
        lines.append(f"{indent}  in sync:     yes, live holds what version {k['version']} applies")
    elif trace.drifted:
        lines.append(f"{indent}  in sync:     no, drifted: {', '.join(trace.drifted)}")
    lines += [f"{indent}  note: {n}" for n in trace.notes]
    return lines


def history_lines(entries: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Rows of ``history``: id, version, commit, result, time, digests."""
    rows = []
    for e in entries:
        digests = e.get("digests") or {}
        rows.append(
            [
                str(e.get("id", "")),
                str(e.get("version", "")),
                str(e.get("commit", ""))[:12],
                str(e.get("result", "")),
                str(e.get("time", "")),
                ", ".join(f"{k}@{str(v)[:19]}" for k, v in sorted(digests.items())),
            ]
        )
    return rows
