"""The one exception tree of gitops-kubepkg.

Every layer raises from here; third-party errors (pygit2, the kubernetes client, HTTP, tar) are
translated at the one adapter that calls them, with ``raise ... from``, so callers never catch a
library's exception. The CLI turns any ``GitopsKubepkgError`` into a message and an exit code, never a
traceback.

    GitopsKubepkgError
    ├── InputError              bad user input: a file, object or field; exit 1
    │   ├── ValidationError     carries every Problem found at once
    │   ├── MergeConflict       a three-way merge needs a human: every conflict listed
    │   ├── SignatureError      unsigned, badly signed or signed by a key nobody allowed
    │   └── RollbackError       an import would move a branch back, a tag, or replay an old export
    ├── SourceError             git: fetch, clone, push, bundle
    │   ├── AuthError           credentials refused or missing
    │   ├── RefMovedError       a published tag moved (tags are immutable)
    │   └── StaleRefError       a push lease failed: the remote ref is not where we left it
    ├── KubeError               the Kubernetes API
    │   ├── NotFound            404
    │   ├── Conflict            409 (also field-manager conflicts on apply)
    │   ├── Forbidden           403 (RBAC)
    │   ├── Invalid             422 (the server refused the object)
    │   └── Unavailable         connection refused, 5xx, timeouts
    └── RegistryError           OCI; ``code`` is the distribution spec's error code
        ├── DigestMismatch      bytes do not hash to the digest that names them
        └── BlobUnknown         content that should exist does not
"""

from __future__ import annotations

from dataclasses import dataclass


class GitopsKubepkgError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 2


class InputError(GitopsKubepkgError):
    """The user gave us something we cannot use; the message names the file, object or field."""

    exit_code = 1


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one field of one file: ``file: path: message``."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        field = f"{self.path}: " if self.path else ""
        return f"{where}{field}{self.message}"


class ValidationError(InputError):
    """Every problem found in the input, reported together."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class MergeConflict(InputError):
    """A three-way merge found changes on both sides of the same field or file; none were pushed."""

    def __init__(self, message: str, conflicts: list[str]) -> None:
        self.conflicts = conflicts
        super().__init__("\n".join([message, *(f"  {c}" for c in conflicts)]))


class SignatureError(InputError):
    """A signature is missing, malformed, does not match the data, or its key is not allowed."""


class RollbackError(InputError):
    """An import would move refs backwards (or replay an older export); refused, nothing written."""


class SourceError(GitopsKubepkgError):
    """A git operation failed; the message names the repository."""


class AuthError(SourceError):
    """The remote refused our credentials, or we have none for it."""


class RefMovedError(SourceError):
    """A published tag now points at another commit; we keep the recorded one."""


class StaleRefError(SourceError):
    """A remote ref moved since we read it, so our push (a compare-and-swap) was refused."""

    def __init__(
        self, message: str, *, ref: str = "", expected: str = "", actual: str = ""
    ) -> None:
        self.ref = ref
        self.expected = expected
        self.actual = actual
        super().__init__(message)


class KubeError(GitopsKubepkgError):
    """The Kubernetes API refused or failed a request."""

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Forbidden(KubeError):
    pass


class Invalid(KubeError):
    exit_code = 1


class Unavailable(KubeError):
    pass


class RegistryError(GitopsKubepkgError):
    """An OCI registry or layout problem, with the distribution spec's error code."""

    def __init__(self, message: str, *, code: str = "UNKNOWN", status: int = 500) -> None:
        self.code = code
        self.status = status
        super().__init__(message)


class DigestMismatch(RegistryError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="DIGEST_INVALID", status=400)


class BlobUnknown(RegistryError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="BLOB_UNKNOWN", status=404)
