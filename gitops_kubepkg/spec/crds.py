"""The CustomResourceDefinitions this project serves, generated here and nowhere else.

``deploy/crds/*.yaml`` are this module's output (``gitops-kubepkg crds --write deploy/crds``); a
test keeps them equal. The KubePkg schema is ``spec/schema.py``'s, the one the validator walks,
so the CRD and ``validate`` refuse the same structure; the constants (API version, kind) are the
model's own.
"""

from __future__ import annotations

from gitops_kubepkg.spec.model import API_VERSION, KIND, LIST_KIND
from gitops_kubepkg.spec.schema import (
    KUBEPKG_SPEC,
    KUBEPKG_STATUS,
    SEMVER_PATTERN,
    Schema,
    conditions,
)
from gitops_kubepkg.spec.schema import string as _string

KUBEPKG_GROUP, KUBEPKG_VERSION = API_VERSION.split("/")
GITOPS_GROUP = "gitops.kubepkg.dev"
GITOPS_VERSION = "v1alpha1"
GITOPS_API_VERSION = f"{GITOPS_GROUP}/{GITOPS_VERSION}"


def _crd(
    group: str,
    version: str,
    kind: str,
    plural: str,
    spec: Schema,
    status: Schema,
    columns: list[Schema],
    *,
    short_names: list[str],
    list_kind: str = "",
) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": list_kind or f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        *columns,
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "apiVersion": _string(),
                                "kind": _string(),
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def _ready_column() -> Schema:
    return {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    }


def _status_column() -> Schema:
    return {
        "name": "Status",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
    }


def kubepkg_crd() -> Schema:
    columns = [
        {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
        _ready_column(),
        {"name": "Upgrade", "type": "string", "priority": 1, "jsonPath": ".status.upgrade.version"},
        _status_column(),
    ]
    return _crd(
        KUBEPKG_GROUP,
        KUBEPKG_VERSION,
        KIND,
        "kubepkgs",
        KUBEPKG_SPEC,
        KUBEPKG_STATUS,
        columns,
        short_names=["kpkg"],
        list_kind=LIST_KIND,
    )


def repository_crd() -> Schema:
    spec = {
        "type": "object",
        "required": ["url", "type"],
        "properties": {
            "url": _string("Git URL: file://, git://, http(s)://, ssh:// or scp-like."),
            "branch": _string("Branch to read (deployment) or to promote into.", default="main"),
            "directory": _string("Sub-directory holding the packages.", default=""),
            "type": _string(
                "catalog: tags <package>/v<semver>; deployment: KubePkgs on the branch.",
                enum=["catalog", "deployment"],
            ),
            "interval": _string(
                "Poll interval, like 30s, 5m, 1h.",
                default="1m",
                pattern=r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$",
            ),
            "secretRef": {
                "type": "object",
                "description": "Secret with username/password, bearerToken, or identity (SSH key) and known_hosts.",
                "required": ["name"],
                "properties": {"name": _string()},
            },
            "webhookSecretRef": {
                "type": "object",
                "description": "Secret whose `token` verifies push webhooks.",
                "required": ["name"],
                "properties": {"name": _string()},
            },
            "suspend": {"type": "boolean", "default": False},
            "airgap": {
                "type": "boolean",
                "default": False,
                "description": "Never fetch: read only what `airgap import` put into the mirror.",
            },
            "verify": {
                "type": "object",
                "description": (
                    "Apply or publish only signed git objects. HEAD: the commit (a deployment's "
                    "branch head, a catalog revision's commit); Tag: the catalog tag (a signed "
                    "annotated tag); TagAndHEAD: both."
                ),
                "required": ["mode", "secretRef"],
                "properties": {
                    "mode": _string(enum=["HEAD", "Tag", "TagAndHEAD"]),
                    "secretRef": {
                        "type": "object",
                        "description": (
                            "Secret holding `allowed_signers` (OpenSSH format) and/or armored "
                            "OpenPGP public keys (any other entry name)."
                        ),
                        "required": ["name"],
                        "properties": {"name": _string()},
                    },
                },
            },
            **_repository_promotion_fields(),
        },
    }
    status = {
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "conditions": conditions(),
            "lastFetchedCommit": _string(),
            "packageCount": {"type": "integer"},
            "lastSyncTime": _string(format="date-time"),
            "lastHandledReconcileAt": _string(
                "The gitops.kubepkg.dev/requestedAt annotation value of the last requested "
                "sync this controller finished (`gitops-kubepkg reconcile repository`)."
            ),
        },
    }
    columns = [
        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
        {"name": "URL", "type": "string", "jsonPath": ".spec.url"},
        {"name": "Packages", "type": "integer", "jsonPath": ".status.packageCount"},
        _ready_column(),
        _status_column(),
    ]
    return _crd(
        GITOPS_GROUP,
        GITOPS_VERSION,
        "Repository",
        "repositories",
        spec,
        status,
        columns,
        short_names=["gitrepo"],
    )


def package_revision_crd() -> Schema:
    spec = {
        "type": "object",
        "required": ["repository", "packageName", "revision", "lifecycle"],
        "properties": {
            "repository": _string(
                "The Repository object's name: a catalog (a tag) or a deployment repository (a "
                "promotion branch)."
            ),
            "packageName": _string("The package path inside the catalog repository."),
            "revision": _string("Semantic version from the tag.", pattern=SEMVER_PATTERN),
            "lifecycle": _string(
                "Published: a catalog tag, or a promotion merged into a deployment repository; "
                "Proposed: an open promotion branch (setting it on a deployment revision opens "
                "one); setting Published on a Proposed deployment revision merges it.",
                enum=["Draft", "Proposed", "Published"],
            ),
            "commit": _string(
                "Catalog: the commit the tag pointed at when first seen. Deployment: the "
                "promotion branch's commit (Proposed) or the merge commit (Published).",
                pattern="^[0-9a-f]{40,64}$",
            ),
            "tag": _string("The catalog tag <package>/v<revision>."),
            "url": _string("The repository URL."),
            **_lifecycle_spec_fields(),
        },
    }
    status = {
        "type": "object",
        "properties": {
            "conditions": conditions(),
            "observedGeneration": {"type": "integer", "format": "int64"},
            **_lifecycle_status_fields(),
        },
    }
    columns: list[Schema] = [
        {"name": "Package", "type": "string", "jsonPath": ".spec.packageName"},
        {"name": "Revision", "type": "string", "jsonPath": ".spec.revision"},
        {"name": "Lifecycle", "type": "string", "jsonPath": ".spec.lifecycle"},
        {"name": "Repository", "type": "string", "jsonPath": ".spec.repository"},
        {"name": "Target", "type": "string", "jsonPath": ".spec.target"},
        {"name": "Commit", "type": "string", "priority": 1, "jsonPath": ".spec.commit"},
        {"name": "Request", "type": "string", "priority": 1, "jsonPath": ".status.requestURL"},
    ]
    return _crd(
        GITOPS_GROUP,
        GITOPS_VERSION,
        "PackageRevision",
        "packagerevisions",
        spec,
        status,
        columns,
        short_names=["pkgrev"],
    )


def _repository_promotion_fields() -> dict[str, Schema]:
    """How the controller opens a promotion into a deployment Repository (``promote --forge``)."""
    return {
        "forge": _string(
            "Deployment repositories: where a promotion opened through the API asks for a merge "
            "request (auto: by host name; the Secret's password is the forge token).",
            enum=["auto", "gitlab", "gitea", "github", "none"],
        ),
    }


def _lifecycle_spec_fields() -> dict[str, Schema]:
    """What a deployment repository's PackageRevision adds: the promotion it stands for."""
    return {
        "catalog": _string(
            "Deployment revisions: the catalog Repository (same namespace) the package is "
            "promoted from; needed to open a promotion through the API."
        ),
        "target": _string(
            "Deployment revisions: the branch the promotion merges into (default: the "
            "Repository's spec.branch)."
        ),
        "path": _string("Deployment revisions: the directory in the deployment repository."),
        "upgrade": {
            "type": "boolean",
            "description": (
                "Deployment revisions: merge three ways into the deployed copy of the package, "
                "keeping its local edits (promote --upgrade); conflicts fail the promotion."
            ),
        },
    }


def _lifecycle_status_fields() -> dict[str, Schema]:
    return {
        "branch": _string("The promotion branch, promote/<package>/<version>."),
        "author": _string("Who wrote the promotion commit, 'Name <email>'."),
        "requestURL": _string("The merge request on the forge, when known."),
        "lifecycle": _string(
            "The lifecycle git shows now (spec.lifecycle is what is asked for).",
            enum=["Draft", "Proposed", "Published"],
        ),
    }


RESOURCES_LIMIT = 256 * 1024
"""The most bytes of file and rendered text one PackageRevisionResources holds."""


def package_revision_resources_crd() -> Schema:
    spec = {
        "type": "object",
        "required": ["repository", "packageName", "revision"],
        "properties": {
            "repository": _string("The PackageRevision's repository."),
            "packageName": _string(),
            "revision": _string(),
            "tag": _string(),
            "commit": _string("The commit the content was read at."),
            "path": _string("The directory the KubePkg file was read from."),
            "resources": {
                "type": "object",
                "description": "File name -> content: the package's KubePkg file.",
                "additionalProperties": {"type": "string"},
            },
            "rendered": _string(
                "The objects the KubePkg renders to (multi-document YAML), as the controller "
                "would apply them."
            ),
            "renderError": _string("Why the package does not render, when it does not."),
            "truncated": {
                "type": "boolean",
                "description": f"Content over {RESOURCES_LIMIT // 1024} KiB was left out.",
            },
        },
    }
    status = {"type": "object", "properties": {"conditions": conditions()}}
    columns: list[Schema] = [
        {"name": "Package", "type": "string", "jsonPath": ".spec.packageName"},
        {"name": "Revision", "type": "string", "jsonPath": ".spec.revision"},
        {"name": "Repository", "type": "string", "jsonPath": ".spec.repository"},
        {"name": "Truncated", "type": "boolean", "priority": 1, "jsonPath": ".spec.truncated"},
    ]
    return _crd(
        GITOPS_GROUP,
        GITOPS_VERSION,
        "PackageRevisionResources",
        "packagerevisionresources",
        spec,
        status,
        columns,
        short_names=["pkgrevres"],
    )


def all_crds() -> dict[str, Schema]:
    """File name in ``deploy/crds/`` -> CRD."""
    return {
        "kubepkg.yaml": kubepkg_crd(),
        "repository.yaml": repository_crd(),
        "packagerevision.yaml": package_revision_crd(),
        "packagerevisionresources.yaml": package_revision_resources_crd(),
    }
