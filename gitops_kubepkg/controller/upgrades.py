"""Upgrade discovery on KubePkg status: does the catalog a KubePkg was promoted from hold a newer
revision?

Runs inside repository sync. A deployed KubePkg records its catalog origin (promotion's
``gitops.kubepkg.dev/catalog-url`` and ``catalog-tag`` annotations); the catalog's refs are the
ones its mirror already holds, so this never fetches. After a catalog pass every KubePkg promoted
from that catalog is checked; after a deployment pass, that deployment's KubePkgs are. The status
field ``upgrade`` (version, tag, repository) is written only when it changes, and removed when
the KubePkg is current again. Prereleases never count here (``upgrades --pre`` shows them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from gitops_kubepkg.errors import KubeError
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.promotion.record import Origin, origin_of
from gitops_kubepkg.promotion.revisions import newer
from gitops_kubepkg.spec import API_VERSION, KIND, KubeObject

log = logging.getLogger(__name__)

RefsOf = Callable[[str], tuple[str, Mapping[str, str]] | None]
"""catalog url -> (the catalog Repository's namespace/name, its refs), or None when unknown."""


def upgrade_for(origin: Origin, repository: str, refs: Mapping[str, str]) -> dict[str, str] | None:
    """The ``status.upgrade`` for a KubePkg promoted from ``origin``, None when nothing is newer."""
    try:
        found = newer(refs, origin.package, origin.version)
    except ValueError:
        return None  # the recorded tag is not semver: promotion refuses those, nothing to offer
    if not found:
        return None
    latest = found[-1]
    return {"version": latest.version, "tag": latest.tag, "repository": repository}


def report_upgrades(kube: Kube, kubepkgs: Iterable[KubeObject], refs_of: RefsOf) -> int:
    """Write ``status.upgrade`` where it changed; returns how many KubePkgs were written.

    KubePkgs whose catalog this pass knows nothing of are left for the pass that does.
    """
    written = 0
    for obj in kubepkgs:
        origin = origin_of(obj)
        known = refs_of(origin.url) if origin is not None and origin.version else None
        if origin is None or known is None:
            continue
        want = upgrade_for(origin, *known)
        have = (obj.get("status") or {}).get("upgrade") or None
        if have == want:
            continue
        meta = obj["metadata"]
        try:
            kube.patch(
                API_VERSION,
                KIND,
                meta["name"],
                meta["namespace"],
                {"status": {"upgrade": want}},
                subresource="status",
            )
            written += 1
        except KubeError as e:
            log.warning(
                "KubePkg %s/%s: upgrade status not written: %s", meta["namespace"], meta["name"], e
            )
    return written
