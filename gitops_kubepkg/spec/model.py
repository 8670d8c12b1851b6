"""The KubePkg model (octohelm.tech/v1alpha1), checked field by field.

Second step after ``document.py``: a parsed document becomes a frozen ``KubePkg`` only when every
rule holds; otherwise every problem is reported at once, each naming the file and the field path
(``pkgs/web/kubepkg.yaml: spec.manifests["web.default.deployment"].kind: required``). Pure: no I/O
beyond what ``load_path`` reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import semver

from gitops_kubepkg.errors import InputError, Problem, ValidationError
from gitops_kubepkg.spec.document import parse_documents, read_documents
from gitops_kubepkg.spec.imageref import ImageRef, digest_problem, parse_image

API_VERSION = "octohelm.tech/v1alpha1"
KIND = "KubePkg"
LIST_KIND = "KubePkgList"
FILE_NAMES = ("kubepkg.json", "kubepkg.yaml", "kubepkg.yml")

KubeObject = dict[str, Any]
"""A Kubernetes object as JSON: apiVersion, kind, metadata, ..."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class KubePkg:
    """One valid package. ``manifests`` keep their keys; ``source`` is the file it came from."""

    name: str
    version: str
    images: Mapping[str, str]
    manifests: Mapping[str, KubeObject]
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    def to_object(self) -> KubeObject:
        """The KubePkg as the API object (what the CRD stores and ``kubepkg.json`` holds)."""
        metadata: dict[str, Any] = {"name": self.name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        if self.labels:
            metadata["labels"] = dict(self.labels)
        if self.annotations:
            metadata["annotations"] = dict(self.annotations)
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": metadata,
            "spec": {
                "version": self.version,
                "images": dict(self.images),
                "manifests": {k: v for k, v in self.manifests.items()},
            },
        }

    def image_refs(self) -> dict[str, ImageRef]:
        """Each ``spec.images`` key parsed, with the digest from its value when one is given."""
        out = {}
        for ref, digest in self.images.items():
            parsed = parse_image(ref)
            out[ref] = parsed.with_digest(digest) if digest else parsed
        return out


def manifest_key(obj: Mapping[str, Any]) -> str:
    """``<name>.<namespace>.<kind>`` (kind lower-cased), or ``<name>.<kind>`` without a namespace."""
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind", "")).lower()
    name = str(meta.get("name", ""))
    namespace = meta.get("namespace")
    return f"{name}.{namespace}.{kind}" if namespace else f"{name}.{kind}"


def _key_path(prefix: str, key: str) -> str:
    return f"{prefix}[{json.dumps(key)}]"


def _type_name(value: Any) -> str:
    return {
        dict: "object",
        list: "list",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


class _Checker:
    """Collects problems for one file; each ``check_*`` appends and never raises."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, path, message))

    def expect(self, value: Any, kind: type, path: str, *, required: bool = True) -> bool:
        if value is None:
            if required:
                self.add(path, "required")
            return False
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.add(path, f"must be {_type_name(kind())}, got {_type_name(value)}")
            return False
        return True

    def check_string_map(self, value: Any, path: str) -> None:
        if not self.expect(value, dict, path, required=False):
            return
        for k, v in value.items():
            if not isinstance(v, str):
                self.add(_key_path(path, str(k)), f"must be string, got {_type_name(v)}")

    def check_kubepkg(self, doc: Any, path: str) -> KubePkg | None:
        before = len(self.problems)
        if not self.expect(doc, dict, path or "document"):
            return None
        dot = f"{path}." if path else ""
        if doc.get("apiVersion") != API_VERSION:
            got = doc.get("apiVersion")
            self.add(
                f"{dot}apiVersion", f"must be {API_VERSION!r}, got {got!r}" if got else "required"
            )
        if doc.get("kind") != KIND:
            self.add(f"{dot}kind", f"must be {KIND!r}, got {doc.get('kind')!r}")

        meta = doc.get("metadata")
        name = namespace = ""
        if self.expect(meta, dict, f"{dot}metadata"):
            if self.expect(meta.get("name"), str, f"{dot}metadata.name"):
                name = meta["name"]
                if len(name) > 63 or not _DNS_LABEL.match(name):
                    self.add(
                        f"{dot}metadata.name",
                        f"{name!r} is not a DNS-1123 label (lowercase letters, digits and '-', at most 63)",
                    )
            if self.expect(meta.get("namespace"), str, f"{dot}metadata.namespace", required=False):
                namespace = meta["namespace"]
                if len(namespace) > 63 or not _DNS_LABEL.match(namespace):
                    self.add(f"{dot}metadata.namespace", f"{namespace!r} is not a DNS-1123 label")
            self.check_string_map(meta.get("labels"), f"{dot}metadata.labels")
            self.check_string_map(meta.get("annotations"), f"{dot}metadata.annotations")

        spec = doc.get("spec")
        if not self.expect(spec, dict, f"{dot}spec"):
            return None
        sp = f"{dot}spec"
        version = spec.get("version")
        if self.expect(version, str, f"{sp}.version") and not semver.Version.is_valid(version):
            self.add(f"{sp}.version", f"{version!r} is not a semantic version (like 1.2.3)")

        images = spec.get("images", {})
        listed: list[ImageRef] = []
        if self.expect(images, dict, f"{sp}.images"):
            for ref, digest in images.items():
                listed.extend(
                    self.check_image(str(ref), digest, _key_path(f"{sp}.images", str(ref)))
                )

        manifests = spec.get("manifests", {})
        if self.expect(manifests, dict, f"{sp}.manifests"):
            for key, obj in manifests.items():
                self.check_manifest(str(key), obj, _key_path(f"{sp}.manifests", str(key)), listed)

        if len(self.problems) > before:
            return None
        return KubePkg(
            name=name,
            namespace=namespace,
            version=version,
            images=dict(images),
            manifests=dict(manifests),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            source=self.file,
        )

    def check_image(self, ref: str, digest: Any, path: str) -> list[ImageRef]:
        try:
            parsed = parse_image(ref)
        except ValueError as e:
            self.add(path, f"key: {e}")
            return []
        if not isinstance(digest, str):
            self.add(path, f'must be a digest string or "", got {_type_name(digest)}')
            return [parsed]
        if digest:
            if why := digest_problem(digest):
                self.add(path, why)
                return [parsed]
            if parsed.digest and parsed.digest != digest:
                self.add(path, f"digest {digest} differs from the one in the reference")
            return [parsed, parsed.with_digest(digest)]
        return [parsed]

    def check_manifest(self, key: str, obj: Any, path: str, listed: list[ImageRef]) -> None:
        if not self.expect(obj, dict, path):
            return
        ok = self.expect(obj.get("apiVersion"), str, f"{path}.apiVersion")
        ok &= self.expect(obj.get("kind"), str, f"{path}.kind")
        meta = obj.get("metadata")
        if self.expect(meta, dict, f"{path}.metadata"):
            name_ok = self.expect(meta.get("name"), str, f"{path}.metadata.name")
            if name_ok and not _DNS_SUBDOMAIN.match(meta["name"]):
                self.add(f"{path}.metadata.name", f"{meta['name']!r} is not a valid object name")
            ns_ok = (
                self.expect(
                    meta.get("namespace"), str, f"{path}.metadata.namespace", required=False
                )
                or meta.get("namespace") is None
            )
            if ok and name_ok and ns_ok and key.lower() != manifest_key(obj).lower():
                self.add(path, f"key does not match the object: want {manifest_key(obj)!r}")
        for image, image_path in _container_images(obj, path):
            self.check_listed(image, image_path, listed)

    def check_listed(self, image: Any, path: str, listed: list[ImageRef]) -> None:
        if not isinstance(image, str):
            self.add(path, f"must be string, got {_type_name(image)}")
            return
        try:
            used = parse_image(image)
        except ValueError as e:
            self.add(path, str(e))
            return
        for known in listed:
            if known.repository != used.repository:
                continue
            if (used.digest and used.digest == known.digest) or (
                used.tag and used.tag == known.tag and not used.digest
            ):
                return
        self.add(path, f"image {image!r} is not listed in spec.images (an airgap export needs it)")


def _container_images(obj: Any, path: str) -> Iterator[tuple[Any, str]]:
    """Every ``image`` of every container list anywhere in ``obj`` (pod templates, CronJobs, CRDs)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            sub = f"{path}.{k}"
            if k in _CONTAINER_LISTS and isinstance(v, list):
                for i, c in enumerate(v):
                    if isinstance(c, dict) and "image" in c:
                        yield c["image"], f"{sub}[{i}].image"
            else:
                yield from _container_images(v, sub)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _container_images(v, f"{path}[{i}]")


def container_images(obj: KubeObject) -> list[str]:
    """The image strings an object's containers run, in document order."""
    return [img for img, _ in _container_images(obj, "") if isinstance(img, str)]


def check_documents(docs: list[Any], file: str) -> tuple[list[KubePkg], list[Problem]]:
    """Every KubePkg in ``docs`` (KubePkgList items unfolded) and every problem found."""
    checker = _Checker(file)
    pkgs: list[KubePkg] = []
    multi = len(docs) > 1
    for i, doc in enumerate(docs):
        prefix = f"documents[{i}]" if multi else ""
        if isinstance(doc, dict) and doc.get("kind") == LIST_KIND:
            dot = f"{prefix}." if prefix else ""
            if doc.get("apiVersion") != API_VERSION:
                checker.add(f"{dot}apiVersion", f"must be {API_VERSION!r}")
            items = doc.get("items")
            if checker.expect(items, list, f"{dot}items") and isinstance(items, list):
                for j, item in enumerate(items):
                    if (pkg := checker.check_kubepkg(item, f"{dot}items[{j}]")) is not None:
                        pkgs.append(pkg)
        elif (pkg := checker.check_kubepkg(doc, prefix)) is not None:
            pkgs.append(pkg)
    seen: dict[tuple[str, str], int] = {}
    for pkg in pkgs:
        ident = (pkg.namespace, pkg.name)
        seen[ident] = seen.get(ident, 0) + 1
        if seen[ident] == 2:
            checker.add("", f"KubePkg {pkg.name!r} is defined more than once")
    return pkgs, checker.problems


def parse_kubepkgs(data: bytes, name: str) -> list[KubePkg]:
    """Parse and validate bytes; raise ValidationError listing every problem."""
    pkgs, problems = check_documents(parse_documents(data, name), name)
    if problems:
        raise ValidationError(problems)
    return pkgs


def find_files(path: Path) -> list[Path]:
    """A file as given, or every KubePkg file below a directory (sorted, hidden dirs skipped)."""
    if not path.is_dir():
        return [path]
    found = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).parts
        if any(part.startswith(".") for part in rel):
            continue
        if p.is_file() and p.name in FILE_NAMES:
            found.append(p)
    return found


def load_path(path: Path) -> list[KubePkg]:
    """Every KubePkg in a file or directory; raise ValidationError with every problem found."""
    pkgs: list[KubePkg] = []
    problems: list[Problem] = []
    files = find_files(path)
    if not files:
        raise ValidationError([Problem(str(path), "", f"no {' or '.join(FILE_NAMES)} found")])
    for file in files:
        try:
            found, probs = check_documents(read_documents(file), str(file))
        except InputError as e:
            problems.append(Problem("", "", str(e)))
            continue
        pkgs.extend(found)
        problems.extend(probs)
    if problems:
        raise ValidationError(problems)
    return pkgs
