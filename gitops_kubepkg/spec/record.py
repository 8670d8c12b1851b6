"""The record a pass leaves on a KubePkg: the revision it applied, the history, consistency. Pure.

Part of the KubePkg model's status, beside the CRD schema that holds it: the reconcile pass
writes it with the status, once per pass (``reconcile.status`` and ``reconcile.kubepkg``), and
``trace``, ``history`` and ``rollback`` (promotion) read it. ``status.source`` (from ``sources.deployment.source_of``) says where the KubePkg came from;
this module adds what was applied from it:

- ``lastAppliedRevision``: ``<branch>@sha1:<commit>`` of the deployment repository (Flux's form),
  or ``<version>`` for a KubePkg applied by hand (``gitops-kubepkg apply``);
- ``history``: the last applied revisions, newest first, each with an ``id`` that only grows (as
  Argo CD numbers its history), the version, commit, file, image digests, when it was first
  applied and how its last pass ended. A new entry starts when the applied *content* changes
  (the spec's digest), not when the deployment branch merely moved, so a pass with nothing new
  to apply writes nothing. Bounded in entries and in bytes; ``rollback`` reads it;
- ``checks``: what does not add up in the record (images without a digest, a catalog tag whose
  version is not the KubePkg's, digests that differ from those the catalog revision pinned as
  ``promote`` recorded them), reported as the ``Consistent`` condition.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HISTORY_LIMIT = 10
HISTORY_BYTES = 16 * 1024
"""A history never grows past this (JSON bytes); the oldest entries go first."""

RESULTS = {"ready": "Ready", "progressing": "Progressing", "stalled": "Stalled", "error": "Failed"}
"""Outcome kind -> the ``result`` a history entry reports."""


def spec_digest(spec: Mapping[str, Any]) -> str:
    """A short digest of a KubePkg spec: equal specs apply equal objects."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def applied_revision(source: Mapping[str, str], version: str) -> str:
    """``main@sha1:<commit>`` when the KubePkg came from a deployment repository, else its
    version."""
    commit = source.get("commit", "")
    if commit:
        return f"{source.get('branch') or 'HEAD'}@sha1:{commit}"
    return version


@dataclass(frozen=True)
class Revision:
    """One history entry."""

    id: int
    version: str
    spec: str
    """``spec_digest`` of what was applied."""
    time: str
    result: str
    commit: str = ""
    path: str = ""
    digests: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "version": self.version}
        if self.commit:
            out["commit"] = self.commit
        if self.path:
            out["path"] = self.path
        if self.digests:
            out["digests"] = dict(sorted(self.digests.items()))
        out |= {"spec": self.spec, "time": self.time, "result": self.result}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Revision | None:
        """An entry as status holds it; None for one that is not (hand-edited, older build)."""
        try:
            digests = d.get("digests") or {}
            return cls(
                id=int(d["id"]),
                version=str(d.get("version", "")),
                spec=str(d.get("spec", "")),
                time=str(d.get("time", "")),
                result=str(d.get("result", "")),
                commit=str(d.get("commit", "")),
                path=str(d.get("path", "")),
                digests={str(k): str(v) for k, v in digests.items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def history_of(status: Mapping[str, Any]) -> list[Revision]:
    """The history a status records, newest first (unreadable entries left out)."""
    entries = status.get("history")
    if not isinstance(entries, list):
        return []
    return [r for d in entries if isinstance(d, Mapping) and (r := Revision.from_dict(d))]


def next_history(
    previous: Sequence[Revision],
    applied: Revision,
    *,
    limit: int = HISTORY_LIMIT,
    max_bytes: int = HISTORY_BYTES,
) -> list[Revision]:
    """``previous`` after a pass that applied ``applied`` (its ``id`` is ignored).

    The same content as the newest entry keeps that entry (its id, time and commit: the first
    commit that carried it) and only updates the result; new content becomes a new entry.
    """
    newest = previous[0] if previous else None
    if newest is not None and newest.spec == applied.spec:
        head = Revision(
            newest.id,
            newest.version,
            newest.spec,
            newest.time,
            applied.result,
            newest.commit,
            newest.path,
            newest.digests,
        )
        entries = [head, *previous[1:]]
    else:
        number = max((r.id for r in previous), default=0) + 1
        head = Revision(
            number,
            applied.version,
            applied.spec,
            applied.time,
            applied.result,
            applied.commit,
            applied.path,
            applied.digests,
        )
        entries = [head, *previous]
    entries = entries[: max(1, limit)]
    while len(entries) > 1 and len(json.dumps([r.to_dict() for r in entries])) > max_bytes:
        entries.pop()
    return entries


def find_revision(history: Sequence[Revision], wanted: str) -> Revision | None:
    """The entry ``wanted`` names: its id, a version (the newest entry of it), or a commit
    (7 or more hex digits of it)."""
    text = wanted.strip()
    if text.isdigit():
        hit = next((r for r in history if r.id == int(text)), None)
        if hit is not None:
            return hit
    hit = next((r for r in history if r.version == text.removeprefix("v")), None)
    if hit is not None:
        return hit
    if len(text) >= 7:
        return next((r for r in history if r.commit and r.commit.startswith(text.lower())), None)
    return None


@dataclass(frozen=True)
class Finding:
    """One thing in a KubePkg's record that does not add up."""

    reason: str
    message: str


def check_record(
    version: str,
    images: Mapping[str, str],
    catalog_tag: str,
    catalog_images: Mapping[str, str] | None = None,
) -> list[Finding]:
    """What the ``Consistent`` condition reports for a KubePkg at ``version`` with ``images``
    (spec.images), promoted from ``catalog_tag`` ("" when it records none) whose own
    ``spec.images`` were ``catalog_images`` (None when the promotion did not record them)."""
    findings = []
    unpinned = sorted(ref for ref, digest in images.items() if not digest and "@" not in ref)
    if unpinned:
        findings.append(
            Finding(
                "UnpinnedImages",
                f"{len(unpinned)} image(s) without a digest, so what runs can change under the "
                f"same version: {', '.join(unpinned)}",
            )
        )
    if catalog_tag and "/v" in catalog_tag:
        tagged = catalog_tag.rsplit("/v", 1)[1]
        if tagged != version:
            findings.append(
                Finding(
                    "VersionMismatch",
                    f"spec.version is {version} but the KubePkg records catalog tag "
                    f"{catalog_tag} (version {tagged})",
                )
            )
    if catalog_images is not None:
        differ = [
            f"{ref} is {images.get(ref) or 'not pinned'} here, "
            f"{catalog_images.get(ref) or 'not listed'} in the catalog"
            for ref in sorted(set(images) | set(catalog_images))
            if images.get(ref) != catalog_images.get(ref)
        ]
        if differ:
            findings.append(
                Finding(
                    "DigestMismatch",
                    f"the images differ from catalog revision {catalog_tag}: " + "; ".join(differ),
                )
            )
    return findings
