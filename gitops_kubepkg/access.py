"""Who calls, and may they: a Kubernetes bearer token checked with a TokenReview, then RBAC asked
with a SubjectAccessReview.

The one implementation every endpoint that takes a Kubernetes token shares: airgap uploads
(``airgap.upload``) and the dashboard (``dashboard.auth``). The controller's own credentials make
the reviews (it needs ``create`` on ``tokenreviews`` and ``subjectaccessreviews``); the caller's
token is only ever sent to the API server, inside the TokenReview.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitops_kubepkg.kube import Kube


@dataclass(frozen=True)
class User:
    """An authenticated caller, as the TokenReview named it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, compare=False, hash=False)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, "" when there is none."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def review_token(kube: Kube, token: str) -> User | None:
    """The user ``token`` authenticates as, or None when the API server does not accept it.

    Raises ``KubeError`` when the review itself fails (the caller answers 503, not 401)."""
    review: Any = kube.request(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        },
        what="TokenReview",
    )
    status = (review or {}).get("status") or {}
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    extra = user.get("extra") or {}
    return User(
        username=str(user.get("username") or ""),
        uid=str(user.get("uid") or ""),
        groups=tuple(str(g) for g in user.get("groups") or []),
        extra={str(k): [str(v) for v in vs] for k, vs in extra.items() if isinstance(vs, list)},
    )


def allowed(
    kube: Kube, user: User, verb: str, resource: str, namespace: str = "", group: str = ""
) -> bool:
    """Whether RBAC lets ``user`` do ``verb`` on ``resource`` (of ``group``) in ``namespace``
    ("" for every namespace, or a cluster-scoped resource). Raises ``KubeError`` when the review
    fails."""
    attributes = {"group": group, "resource": resource, "verb": verb}
    if namespace:
        attributes["namespace"] = namespace
    access: Any = kube.request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.username,
                "groups": list(user.groups),
                "uid": user.uid,
                "extra": user.extra,
                "resourceAttributes": attributes,
            },
        },
        what="SubjectAccessReview",
    )
    return bool(((access or {}).get("status") or {}).get("allowed"))
