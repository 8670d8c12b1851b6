"""The KubePkg model (octohelm.tech/v1alpha1), checked field by field.

Second step after ``document.py``: a parsed document becomes a frozen ``KubePkg`` only when every
rule holds; otherwise every problem is reported at once, each naming the file and the field path
(``pkgs/web/kubepkg.yaml: spec.containers["web"].imag: unknown field``). Every upstream generation
is read (docs/kubepkg.md): structure comes from walking ``schema.py`` (the CRD's own schema);
this module adds what a schema cannot say (image references and digests, env and port key
syntax, names, two-typed fields, the objects ``manifests.walk`` finds, nested KubePkgs) and
gathers ``KubePkg.images``. Converting a structured spec into objects is not done here. Pure: no
I/O beyond what ``load_path`` reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitops_kubepkg.errors import InputError, Problem, ValidationError
from gitops_kubepkg.spec.document import parse_documents, read_documents
from gitops_kubepkg.spec.imageref import ImageRef, digest_problem, parse_image
from gitops_kubepkg.spec.manifests import walk
from gitops_kubepkg.spec.schema import IMAGE, KUBEPKG, key_path, type_name
from gitops_kubepkg.spec.schema import check as check_schema

API_VERSION = "octohelm.tech/v1alpha1"
KIND = "KubePkg"
LIST_KIND = "KubePkgList"
FILE_NAMES = ("kubepkg.json", "kubepkg.yaml", "kubepkg.yml")

KubeObject = dict[str, Any]
"""A Kubernetes object as JSON: apiVersion, kind, metadata, ..."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_ENV_REFERENCE = re.compile(r"^@([A-Za-z]+)/(.*)$")
_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_PORT_KEY = re.compile(
    r"^(?P<name>(?:(?:udp|sctp)-)?[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)(?::(?P<host>[0-9]+))?$"
)
_SUB_RESOURCE = re.compile(r"^[~/@]?[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class KubePkg:
    """One valid package, any generation.

    ``spec`` is the spec as written (version normalised); ``manifests`` is ``spec.manifests``
    walked flat (key: the walker's dotted key); ``images`` is every image the package names or
    runs, ``ref -> digest`` ("" when nothing pins it); ``source`` is the file it came from.
    """

    name: str
    version: str
    images: Mapping[str, str]
    manifests: Mapping[str, KubeObject]
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    spec: Mapping[str, Any] = field(default_factory=dict)
    status_images: Mapping[str, str] = field(default_factory=dict)
    """``status.images`` as written: upstream's lock of resolved digests."""
    status_digests: tuple[Mapping[str, Any], ...] = ()
    """``status.digests`` as written (upstream DigestMeta: type, digest, name, size, ...)."""

    def to_object(self) -> KubeObject:
        """The KubePkg as the API object (what the CRD stores and ``kubepkg.json`` holds)."""
        metadata: dict[str, Any] = {"name": self.name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        if self.labels:
            metadata["labels"] = dict(self.labels)
        if self.annotations:
            metadata["annotations"] = dict(self.annotations)
        obj: KubeObject = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata}
        spec = dict(self.spec)
        if self.version:
            spec["version"] = self.version
        if spec:
            obj["spec"] = spec
        return obj

    def image_refs(self) -> dict[str, ImageRef]:
        """Each ``images`` key parsed, with the digest from its value when one is given."""
        out = {}
        for ref, digest in self.images.items():
            parsed = parse_image(ref)
            out[ref] = parsed.with_digest(digest) if digest else parsed
        return out


def manifest_key(obj: Mapping[str, Any]) -> str:
    """``<name>.<namespace>.<kind>`` (kind lower-cased), or ``<name>.<kind>`` without a namespace.

    The key gen 1 tools wrote; any key is accepted, this is what ``init`` and promotion write.
    """
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind", "")).lower()
    name = str(meta.get("name", ""))
    namespace = meta.get("namespace")
    return f"{name}.{namespace}.{kind}" if namespace else f"{name}.{kind}"


def normalise_version(version: str) -> str:
    """``v1.2.3`` -> ``1.2.3``: upstream files carry the ``v``; the model never does."""
    return version[1:] if version.startswith("v") else version


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def image_of(image: Mapping[str, Any]) -> tuple[str, str]:
    """A structured image (``{name, tag, digest}``) as ``(name[:tag], digest)``."""
    name = str(image.get("name", ""))
    tag = image.get("tag")
    return (f"{name}:{tag}" if tag else name), str(image.get("digest") or "")


class _Images:
    """The union of every image a package names or runs, ``ref -> digest``, in first-seen order."""

    def __init__(self, checker: _Checker) -> None:
        self.checker = checker
        self.found: dict[str, str] = {}
        self.where: dict[str, str] = {}

    def add(self, ref: str, digest: str, path: str) -> None:
        have = self.found.get(ref)
        if have is None or (not have and digest):
            self.found[ref] = digest
            self.where[ref] = path
        elif digest and digest != have:
            self.checker.add(path, f"digest {digest} differs from {have} at {self.where[ref]}")

    def add_reference(self, reference: Any, path: str) -> None:
        """A ``[host/]path[:tag][@digest]`` string from a container or volume."""
        if not isinstance(reference, str):
            self.checker.add(path, f"must be string, got {type_name(reference)}")
            return
        try:
            parsed = parse_image(reference)
        except ValueError as e:
            self.checker.add(path, str(e))
            return
        ref = reference.split("@", 1)[0] if parsed.digest else reference
        self.add(ref, parsed.digest, path)

    def add_structured(self, image: Any, path: str) -> None:
        """A ``{name, tag, digest}`` image (schema already checked)."""
        if not isinstance(image, dict) or not isinstance(image.get("name"), str):
            return
        ref, digest = image_of(image)
        try:
            parse_image(ref)
        except ValueError as e:
            self.checker.add(f"{path}.name", str(e))
            return
        if digest and (why := digest_problem(digest)):
            self.checker.add(f"{path}.digest", why)
            return
        self.add(ref, digest, path)


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
            self.add(path, f"must be {type_name(kind())}, got {type_name(value)}")
            return False
        return True

    def check_string_map(self, value: Any, path: str) -> None:
        if not self.expect(value, dict, path, required=False):
            return
        for k, v in value.items():
            if not isinstance(v, str):
                self.add(key_path(path, str(k)), f"must be string, got {type_name(v)}")

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

        # Structure (types, required, enums, unknown fields): the schema the CRD carries.
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
        for at, message in check_schema(body, KUBEPKG, path):
            self.add(at, message)

        # A KubePkg without spec ships only the images its status.images lists (upstream's
        # demo.k0s.yaml); with a spec, the schema has made version required.
        spec = _dict(doc.get("spec"))
        status = _dict(doc.get("status"))
        sp = f"{dot}spec"
        version = spec.get("version")
        version = normalise_version(version) if isinstance(version, str) else ""
        images = _Images(self)
        self.check_spec_images(spec.get("images"), f"{sp}.images", images)
        self.check_config(spec.get("config"), f"{sp}.config")
        self.check_containers(spec.get("containers"), f"{sp}.containers", images)
        self.check_volumes(spec.get("volumes"), f"{sp}.volumes", images)
        self.check_services(spec.get("services"), f"{sp}.services")
        self.check_port_keys(_dict(spec.get("deploy")).get("ports"), f"{sp}.deploy.ports")
        manifests = self.check_manifests(spec.get("manifests"), f"{sp}.manifests", images)
        status_images = self.check_status_images(status.get("images"), f"{dot}status.images")
        for ref, digest in status_images.items():
            images.add(ref, digest, key_path(f"{dot}status.images", ref))
        digests = status.get("digests")

        if len(self.problems) > before:
            return None
        return KubePkg(
            name=name,
            namespace=namespace,
            version=version,
            images=images.found,
            manifests=manifests,
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            source=self.file,
            spec={**spec, "version": version} if "version" in spec else dict(spec),
            status_images=status_images,
            status_digests=tuple(digests) if isinstance(digests, list) else (),
        )

    def check_spec_images(self, value: Any, path: str, images: _Images) -> None:
        """Gen 1 ``{ref: digest or ""}`` and kubepkgspec ``{name: Image}``, told apart per entry."""
        for key, entry in _dict(value).items():
            at = key_path(path, str(key))
            if isinstance(entry, dict):
                for p, message in check_schema(entry, IMAGE, at):
                    self.add(p, message)
                images.add_structured(entry, at)
            elif isinstance(entry, str):
                self.check_image(str(key), entry, at, images)
            elif entry is not None:
                self.add(
                    at, f'must be a digest string, "" or an image object, got {type_name(entry)}'
                )

    def check_image(self, ref: str, digest: str, path: str, images: _Images) -> None:
        try:
            parsed = parse_image(ref)
        except ValueError as e:
            self.add(path, f"key: {e}")
            return
        if digest:
            if why := digest_problem(digest):
                self.add(path, why)
                return
            if parsed.digest and parsed.digest != digest:
                self.add(path, f"digest {digest} differs from the one in the reference")
                return
        images.add(ref, digest, path)

    def check_env(self, value: Any, path: str) -> None:
        """``NAME: value`` maps (config, env): names and the ``@kind/...`` reference syntax."""
        for key, v in _dict(value).items():
            at = key_path(path, str(key))
            if not _ENV_NAME.match(str(key)):
                self.add(at, f"{key!r} is not an environment variable name")
            if isinstance(v, str) and (why := env_reference_problem(v)):
                self.add(at, why)

    def check_config(self, value: Any, path: str) -> None:
        self.check_env(value, path)

    def check_port_keys(self, value: Any, path: str) -> None:
        for key in _dict(value):
            if why := port_key_problem(str(key)):
                self.add(key_path(path, str(key)), why)

    def check_containers(self, value: Any, path: str, images: _Images) -> None:
        for name, container in _dict(value).items():
            at = key_path(path, str(name))
            if len(str(name)) > 63 or not _DNS_LABEL.match(str(name)):
                self.add(at, f"{name!r} is not a container name (a DNS-1123 label)")
            container = _dict(container)
            images.add_structured(container.get("image"), f"{at}.image")
            self.check_env(container.get("env"), f"{at}.env")
            self.check_port_keys(container.get("ports"), f"{at}.ports")

    def check_volumes(self, value: Any, path: str, images: _Images) -> None:
        for name, volume in _dict(value).items():
            at = key_path(path, str(name))
            if not _SUB_RESOURCE.match(str(name)):
                self.add(
                    at, f"{name!r} is not a volume name (a DNS-1123 label, maybe after ~ or /)"
                )
            volume = _dict(volume)
            if volume.get("type") == "Image":
                reference = _dict(volume.get("opt")).get("reference")
                if reference is None:
                    self.add(f"{at}.opt.reference", "required for type Image")
                else:
                    images.add_reference(reference, f"{at}.opt.reference")

    def check_services(self, value: Any, path: str) -> None:
        for name, service in _dict(value).items():
            at = key_path(path, str(name))
            if name != "#" and not _SUB_RESOURCE.match(str(name)):
                self.add(
                    at,
                    f"{name!r} is not a service name (#, or a DNS-1123 label maybe after ~, / or @)",
                )
            service = _dict(service)
            self.check_port_keys(service.get("ports"), f"{at}.ports")
            for port, paths in _dict(service.get("paths")).items():
                self.check_string_or_list(paths, key_path(f"{at}.paths", str(port)))
            expose = _dict(service.get("expose"))
            if expose.get("gateway") is not None:
                if expose.get("type") != "Ingress":
                    self.add(f"{at}.expose.gateway", "only for type Ingress")
                self.check_string_or_list(expose["gateway"], f"{at}.expose.gateway")

    def check_string_or_list(self, value: Any, path: str) -> None:
        """The two-typed fields the CRD cannot type (``paths``, ``expose.gateway``)."""
        if value is None or isinstance(value, str):
            return
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(path, "must be a string or a list of strings")

    def check_manifests(self, value: Any, path: str, images: _Images) -> dict[str, KubeObject]:
        """``spec.manifests`` walked flat; nested KubePkgs are checked as KubePkgs."""
        out: dict[str, KubeObject] = {}
        if value is None:
            return out
        for leaf in walk(value, path):
            if leaf.problem:
                self.add(leaf.path, leaf.problem)
                continue
            if self.check_manifest(leaf.value, leaf.path, images):
                out[leaf.key] = leaf.value
        return out

    def check_manifest(self, obj: dict[str, Any], path: str, images: _Images) -> bool:
        before = len(self.problems)
        if obj.get("apiVersion") == API_VERSION and obj.get("kind") == KIND:
            nested = self.check_kubepkg(obj, path)
            if nested is not None:
                for ref, digest in nested.images.items():
                    images.add(ref, digest, path)
            return nested is not None
        self.expect(obj.get("apiVersion"), str, f"{path}.apiVersion")
        self.expect(obj.get("kind"), str, f"{path}.kind")
        meta: Any = obj.get("metadata")
        if self.expect(meta, dict, f"{path}.metadata"):
            if self.expect(meta.get("name"), str, f"{path}.metadata.name") and not (
                _DNS_SUBDOMAIN.match(meta["name"])
            ):
                self.add(f"{path}.metadata.name", f"{meta['name']!r} is not a valid object name")
            self.expect(meta.get("namespace"), str, f"{path}.metadata.namespace", required=False)
        for image, image_path in _container_images(obj, path):
            images.add_reference(image, image_path)
        return len(self.problems) == before

    def check_status_images(self, value: Any, path: str) -> dict[str, str]:
        """``status.images``: a lock ``ref -> digest``; the digests fill what the spec leaves open."""
        out: dict[str, str] = {}
        for ref, digest in _dict(value).items():
            if not isinstance(digest, str):
                continue  # the schema said so
            at = key_path(path, str(ref))
            try:
                parse_image(str(ref))
            except ValueError as e:
                self.add(at, f"key: {e}")
                continue
            if digest and (why := digest_problem(digest)):
                self.add(at, why)
                continue
            out[str(ref)] = digest
        return out


def env_reference_problem(value: str) -> str | None:
    """Why an env or config value that starts like a reference (``@kind/...``) is not one."""
    m = _ENV_REFERENCE.match(value)
    if not m:
        return None
    kind, rest = m.group(1), m.group(2)
    if kind in ("field", "resource"):
        return (
            None
            if rest
            else f"{value!r}: @{kind}/ needs a {'field path' if kind == 'field' else 'resource'}"
        )
    if kind in ("configMap", "secret"):
        name, _, key = rest.rpartition("/")
        if not name or not key.rstrip("?"):
            return f"{value!r}: want @{kind}/<name>/<key>[?]"
        if not _DNS_SUBDOMAIN.match(name):
            return f"{value!r}: {name!r} is not a {kind} name"
        if not _DATA_KEY.match(key.removesuffix("?")):
            return f"{value!r}: {key.removesuffix('?')!r} is not a {kind} key"
        return None
    return (
        f"{value!r}: unknown reference @{kind}/ (want @field/, @resource/, @configMap/ or @secret/)"
    )


def port_key_problem(key: str) -> str | None:
    """Why ``key`` is not ``[udp-|sctp-]<name>[:<hostPort>]`` (name at most 15 characters)."""
    m = _PORT_KEY.match(key)
    if not m:
        return f"{key!r} is not a port name ([udp-|sctp-]<name>[:<hostPort>], lowercase letters, digits and '-')"
    if len(m.group("name")) > 15:
        return f"{key!r}: a port name has at most 15 characters"
    host_port = m.group("host")
    if host_port is not None and not 1 <= int(host_port) <= 65535:
        return f"{key!r}: host port {host_port} is not between 1 and 65535"
    return None


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
