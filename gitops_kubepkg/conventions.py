"""Conventions every part shares: how a pass ends (``Outcome``), how a status condition, an
Event and an owner reference are written, how values become label values, and how URLs and messages lose their secrets. One implementation each, imported everywhere (the
label and annotation names live with what they mean: ``reconcile.objects``,
``sources.deployment``; time in ``clock``).

Pure, at the bottom of the layers: any module may use it.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

READY, PROGRESSING, STALLED, ERROR, GONE = "ready", "progressing", "stalled", "error", "gone"
"""How a pass over a KubePkg or a Repository ends: done; still rolling out; needs a human (no
retry until something changes); failed (retried with backoff); the object is gone (forget it)."""


@dataclass(frozen=True)
class Outcome:
    """How a pass ended. ``kind`` is one of READY, PROGRESSING, STALLED, ERROR, GONE; ``reason`` is
    CamelCase for conditions; ``message`` names the object; ``requeue_after``: look again then
    (0: no timed look)."""

    kind: str
    reason: str
    message: str
    requeue_after: float = 0.0


_SECRET_QUERY = re.compile(r"(?i)(sig|signature|token|credential|key|secret|password|auth)")
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` safe to show, log or store: a password or token in the userinfo is dropped with the
    user name (a user name alone, as ``ssh://git@host``, stays), and the values of query
    parameters that look secret (signatures, tokens, credentials) become ``***``. Text that is
    not a ``scheme://`` URL (an scp-like ``git@host:path``) is returned as it is."""
    if "://" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:  # a port that is not a number: keep only what is surely not userinfo
        return re.sub(r"://[^/@]*@", "://", url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = host if password is not None or ":" in user else netloc
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY.search(k) for k, _ in pairs):
            query = urllib.parse.urlencode(
                [(k, "***" if _SECRET_QUERY.search(k) else v) for k, v in pairs], safe="/:*"
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_text(text: str) -> str:
    """``text`` (an error message, a git or HTTP library's output) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def label_value(text: str) -> str:
    """``text`` as a label value (at most 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends):
    unchanged when it already is one, else cleaned and suffixed with a hash of the original, so
    two different texts never share a value (``1.2.3+build.7`` and ``1.2.3-build.7`` differ)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    if clean == text and len(clean) <= 63:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{clean[:54].rstrip('-._')}-{digest}" if clean else digest


CONDITION_MESSAGE_MAX = 32768
EVENT_MESSAGE_MAX = 1024
COMPONENT = "gitops-kubepkg"
"""What our Events name as their source and reporting component."""


def find_condition(conditions: Any, type_: str) -> Mapping[str, Any]:
    """The condition ``type_`` of a ``status.conditions`` list as the API returned it ({} when
    there is none or the list is not one)."""
    for c in conditions if isinstance(conditions, list) else []:
        if isinstance(c, Mapping) and c.get("type") == type_:
            return c
    return {}


def condition(
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int | None = None,
    previous: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One status condition as Kubernetes writes them (every status we write uses this):
    ``lastTransitionTime`` stays the previous condition's of this type while its status holds,
    else it is ``now`` (``clock.timestamp``); ``observedGeneration`` when given; the message is
    bounded."""
    value = "True" if status else "False"
    old = find_condition(list(previous), type_)
    since = old.get("lastTransitionTime") if old.get("status") == value else None
    out: dict[str, Any] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:CONDITION_MESSAGE_MAX],
        "lastTransitionTime": since or now,
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def event(
    involved: Mapping[str, str],
    type_: str,
    reason: str,
    message: str,
    *,
    now: str,
    instance: str = "",
    name: str = "",
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (apiVersion, kind, name, namespace, and uid /
    resourceVersion when known), as every part of ours posts them: ``name`` makes it once-only
    (a second create is a 409), else the server generates one from the object's name."""
    meta: dict[str, str] = {"namespace": involved["namespace"]}
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = f"{involved['name']}."
    out: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": meta,
        "involvedObject": {k: v for k, v in involved.items() if v},
        "type": type_,
        "reason": reason,
        "message": message[:EVENT_MESSAGE_MAX],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    if instance:
        out["reportingInstance"] = instance
    return out


def owner_reference(
    api_version: str, kind: str, name: str, uid: str, *, block_owner_deletion: bool | None = None
) -> dict[str, Any]:
    """An ``ownerReferences`` entry: the garbage collector deletes the object with its owner
    (``block_owner_deletion``: whether a foreground deletion of the owner waits for it)."""
    out: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}
    if block_owner_deletion is not None:
        out["blockOwnerDeletion"] = block_owner_deletion
    return out
