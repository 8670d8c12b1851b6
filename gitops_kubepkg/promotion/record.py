"""Where a deployed KubePkg came from: annotations on the object, trailers on the commit.

Every promotion stamps the KubePkg it writes with the catalog's URL, tag and commit, and says the
same in the commit's trailers; the image digests stay exactly as the catalog pinned them, and the
catalog's own ``spec.images`` is stamped beside them so the controller can tell when a deployed
digest no longer matches its catalog revision. So from
any deployed file one can name the catalog commit it was built from (``git show <commit>``), and
``upgrades`` and ``promote --upgrade`` know which revision a deployment started from. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitops_kubepkg.conventions import redact_url
from gitops_kubepkg.sources import deployment
from gitops_kubepkg.spec import KubeObject

# The names live with the deployment sync, which echoes them in status.source.
ANNOTATION_URL = deployment.ANNOTATION_CATALOG_URL
ANNOTATION_TAG = deployment.ANNOTATION_CATALOG_TAG
ANNOTATION_COMMIT = deployment.ANNOTATION_CATALOG_COMMIT
ANNOTATION_IMAGES = deployment.ANNOTATION_CATALOG_IMAGES
ANNOTATIONS = (ANNOTATION_URL, ANNOTATION_TAG, ANNOTATION_COMMIT)
STAMPED = (*ANNOTATIONS, ANNOTATION_IMAGES)

TRAILER_FROM = "Promoted-From"
TRAILER_TAG = "Catalog-Tag"
TRAILER_COMMIT = "Catalog-Commit"
TRAILER_UPGRADED = "Upgraded-From"
TRAILER_STRATEGY = "Merge-Strategy"


@dataclass(frozen=True)
class Origin:
    """One catalog revision: the repository (never with credentials), its tag and commit."""

    url: str
    tag: str
    commit: str

    @property
    def package(self) -> str:
        """The package path of the tag (``apps/web/v1.2.0`` -> ``apps/web``)."""
        return self.tag.rsplit("/v", 1)[0]

    @property
    def version(self) -> str:
        return self.tag.rsplit("/v", 1)[1] if "/v" in self.tag else ""


def make_origin(url: str, tag: str, commit: str) -> Origin:
    return Origin(redact_url(url), tag, commit)


def stamp(obj: KubeObject, origin: Origin, images: Mapping[str, str] | None = None) -> KubeObject:
    """``obj`` with the origin annotations set (a copy; the input is left alone), and with
    ``images``, the catalog revision's ``spec.images``, that the controller checks the deployed
    digests against."""
    metadata = dict(obj.get("metadata") or {})
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k != ANNOTATION_IMAGES
    }
    metadata["annotations"] = {
        **annotations,
        ANNOTATION_URL: origin.url,
        ANNOTATION_TAG: origin.tag,
        ANNOTATION_COMMIT: origin.commit,
    }
    if images is not None:
        compact = json.dumps(dict(sorted(images.items())), separators=(",", ":"))
        metadata["annotations"][ANNOTATION_IMAGES] = compact
    return {**obj, "metadata": metadata}


def unstamp(obj: KubeObject) -> KubeObject:
    """``obj`` without the origin annotations (what the catalog itself holds)."""
    metadata = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k not in STAMPED}
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return {**obj, "metadata": metadata}


def origin_of(obj: Mapping[str, Any]) -> Origin | None:
    """The origin a deployed KubePkg records, or None when it records none (or only part)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    url, tag, commit = (annotations.get(k) for k in ANNOTATIONS)
    if not (isinstance(url, str) and isinstance(tag, str) and isinstance(commit, str)):
        return None
    if not (url and tag and commit):
        return None
    return Origin(url, tag, commit)


def unpinned_images(obj: Mapping[str, Any]) -> list[str]:
    """Images the KubePkg lists without a digest: their content is not fixed by the record."""
    images = (obj.get("spec") or {}).get("images") or {}
    return sorted(ref for ref, digest in images.items() if not digest and "@" not in ref)


def commit_message(
    package: str,
    origin: Origin,
    images: Mapping[str, str],
    *,
    previous: Origin | None = None,
    settled: Sequence[str] = (),
    strategy: str = "",
) -> str:
    """The promotion commit's message: a subject, what it pins, and trailers that say the same."""
    if previous is not None:
        subject = f"Upgrade {package} {previous.version} -> {origin.version}"
    else:
        subject = f"Promote {package} {origin.version}"
    lines = [
        subject,
        "",
        f"From the catalog {origin.url} at tag {origin.tag} (commit {origin.commit}).",
    ]
    if previous is not None:
        lines.append(
            f"Three-way merge against {previous.tag} ({previous.commit[:12]}), local edits kept."
        )
    if images:
        lines += ["", "Images:"]
        lines += [f"  {ref} {digest or '(no digest pinned)'}" for ref, digest in images.items()]
    if settled:
        lines += ["", f"Conflicts settled with --strategy {strategy}:"]
        lines += [f"  {c}" for c in settled]
    lines += [
        "",
        f"{TRAILER_FROM}: {origin.url}",
        f"{TRAILER_TAG}: {origin.tag}",
        f"{TRAILER_COMMIT}: {origin.commit}",
    ]
    if previous is not None:
        lines.append(f"{TRAILER_UPGRADED}: {previous.tag} {previous.commit}")
    if settled:
        lines.append(f"{TRAILER_STRATEGY}: {strategy}")
    return "\n".join(lines) + "\n"


def trailers(message: str) -> dict[str, str]:
    """The ``Key: value`` lines of a message's last paragraph."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return {}
    out = {}
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(": ")
        if not sep or " " in key:
            return {}
        out[key] = value.strip()
    return out
