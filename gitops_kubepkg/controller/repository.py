"""The Repository object read into a value, and a sync's outcome written back as its status.

First and last step of a repository pass: ``parse`` turns the API object into a ``RepositorySpec``
(errors name the object and field); ``status_patch`` maps a ``SyncResult`` to the status (Ready with
its reason, lastFetchedCommit, packageCount, lastSyncTime, lastHandledReconcileAt) and returns None
when the status already says it, so an idle pass writes nothing. ``pending_request`` reads the
``gitops.kubepkg.dev/requestedAt`` annotation that ``gitops-kubepkg reconcile repository`` (or a
webhook on a standby replica) sets to ask for an immediate sync, as Flux's
``reconcile.fluxcd.io/requestedAt``. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gitops_kubepkg.clock import SYSTEM, timestamp
from gitops_kubepkg.conventions import ERROR, READY, Outcome, condition, find_condition
from gitops_kubepkg.errors import InputError
from gitops_kubepkg.reconcile.objects import ANNOTATION_REQUESTED_AT
from gitops_kubepkg.sources.catalog import RepositoryRef
from gitops_kubepkg.spec import KubeObject
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION

KIND = "Repository"
API_VERSION = GITOPS_API_VERSION
TYPES = ("catalog", "deployment")
REQUESTED_AT = ANNOTATION_REQUESTED_AT
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_interval(text: str) -> float:
    """``1m30s`` -> 90.0 seconds (the Go duration subset the CRD accepts)."""
    text = text.strip()
    if not text or _DURATION.sub("", text):
        raise InputError(f"interval {text!r}: want a duration like 30s, 5m or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    if seconds <= 0:
        raise InputError(f"interval {text!r}: must be more than zero")
    return seconds


@dataclass(frozen=True)
class RepositorySpec:
    namespace: str
    name: str
    url: str
    type: str
    branch: str = "main"
    directory: str = ""
    interval: float = 60.0
    secret: str = ""
    webhook_secret: str = ""
    suspend: bool = False
    airgap: bool = False
    verify_mode: str = ""
    """``spec.verify.mode``: HEAD, Tag or TagAndHEAD; empty: nothing is verified."""
    verify_secret: str = ""
    uid: str = ""
    generation: int = 0
    forge: str = "auto"
    """``spec.forge``: where a promotion opened through the API asks for the merge request."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ref(self) -> RepositoryRef:
        return RepositoryRef(self.namespace, self.name, self.uid, self.url, self.directory)


def parse(obj: KubeObject) -> RepositorySpec:
    meta = obj.get("metadata") or {}
    where = f"Repository {meta.get('namespace', '')}/{meta.get('name', '')}"
    spec = obj.get("spec") or {}
    url = spec.get("url")
    if not isinstance(url, str) or not url:
        raise InputError(f"{where}: spec.url: required")
    kind = spec.get("type")
    if kind not in TYPES:
        raise InputError(f"{where}: spec.type: must be catalog or deployment, got {kind!r}")
    try:
        interval = parse_interval(str(spec.get("interval") or "1m"))
    except InputError as e:
        raise InputError(f"{where}: spec.{e}") from e
    verify_mode, verify_secret = _verify(spec.get("verify"), str(kind), where)
    return RepositorySpec(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        url=url,
        type=str(kind),
        branch=str(spec.get("branch") or "main"),
        directory=str(spec.get("directory") or "").strip("/"),
        interval=interval,
        secret=str((spec.get("secretRef") or {}).get("name", "")),
        webhook_secret=str((spec.get("webhookSecretRef") or {}).get("name", "")),
        suspend=bool(spec.get("suspend", False)),
        airgap=bool(spec.get("airgap", False)),
        verify_mode=verify_mode,
        verify_secret=verify_secret,
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        forge=_forge(spec.get("forge"), where),
    )


FORGES = ("auto", "gitlab", "gitea", "github", "none")


def _forge(value: Any, where: str) -> str:
    if value in (None, ""):
        return "auto"
    if value not in FORGES:
        raise InputError(f"{where}: spec.forge: want one of {', '.join(FORGES)}, got {value!r}")
    return str(value)


def _verify(verify: Any, kind: str, where: str) -> tuple[str, str]:
    if verify is None:
        return "", ""
    if not isinstance(verify, dict):
        raise InputError(f"{where}: spec.verify: want an object with mode and secretRef")
    mode = verify.get("mode")
    if mode not in ("HEAD", "Tag", "TagAndHEAD"):
        raise InputError(f"{where}: spec.verify.mode: want HEAD, Tag or TagAndHEAD, got {mode!r}")
    if kind == "deployment" and mode != "HEAD":
        raise InputError(
            f"{where}: spec.verify.mode: {mode} verifies catalog tags; a deployment follows a "
            "branch, use HEAD"
        )
    secret = (verify.get("secretRef") or {}).get("name")
    if not isinstance(secret, str) or not secret:
        raise InputError(f"{where}: spec.verify.secretRef.name: required")
    return str(mode), secret


@dataclass(frozen=True)
class SyncResult:
    """How one pass over one repository ended (its ``Outcome``: ready, stalled until something
    changes, or error: retried with backoff) and what the pass did."""

    key: str
    outcome: Outcome
    commit: str = ""
    package_count: int | None = None
    synced: bool = False
    """True when this pass read the tree and applied (lastSyncTime moves)."""
    fetched: bool = False
    changes: list[str] = field(default_factory=list)
    handled: str = ""
    """The requestedAt value this pass answered (written as status.lastHandledReconcileAt)."""

    @property
    def ready(self) -> bool:
        return self.outcome.kind == READY

    @property
    def failed(self) -> bool:
        """A transient failure (fetch, auth, API): retry with backoff, delete nothing."""
        return self.outcome.kind == ERROR

    @property
    def reason(self) -> str:
        return self.outcome.reason

    @property
    def message(self) -> str:
        return self.outcome.message


def pending_request(obj: KubeObject) -> str:
    """The requestedAt value not yet answered in status, or "" when there is none."""
    requested = str(((obj.get("metadata") or {}).get("annotations") or {}).get(REQUESTED_AT, ""))
    handled = (obj.get("status") or {}).get("lastHandledReconcileAt", "")
    return requested if requested and requested != handled else ""


def request_patch(token: str) -> dict[str, Any]:
    """The merge patch that asks for a sync; ``token`` must differ from the last one."""
    return {"metadata": {"annotations": {REQUESTED_AT: token}}}


def status_patch(
    spec: RepositorySpec, outcome: SyncResult, live: KubeObject, now: str = ""
) -> dict[str, Any] | None:
    """The merge patch for ``status``, or None when the live status already says all of it."""
    status = live.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    now = now or timestamp(SYSTEM.now())
    ready = condition(
        "Ready",
        outcome.ready,
        outcome.reason,
        outcome.message[:4000],
        now=now,
        generation=spec.generation,
        previous=conditions,
    )
    patch: dict[str, Any] = {}
    if find_condition(conditions, "Ready") != ready:
        others = [c for c in conditions if c.get("type") != "Ready"]
        patch["conditions"] = [ready, *others]
    if status.get("observedGeneration") != spec.generation:
        patch["observedGeneration"] = spec.generation
    if outcome.commit and status.get("lastFetchedCommit") != outcome.commit:
        patch["lastFetchedCommit"] = outcome.commit
    if outcome.package_count is not None and status.get("packageCount") != outcome.package_count:
        patch["packageCount"] = outcome.package_count
    if outcome.synced:
        patch["lastSyncTime"] = now
    if outcome.handled and status.get("lastHandledReconcileAt") != outcome.handled:
        patch["lastHandledReconcileAt"] = outcome.handled
    return {"status": patch} if patch else None
