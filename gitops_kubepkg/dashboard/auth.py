"""Who looks at the dashboard, and what RBAC lets them see and do.

Between the HTTP handler and the cache: every request is turned into a ``Viewer`` first. A
viewer brings a Kubernetes token (``Authorization: Bearer``, or the session cookie ``POST
/api/login`` set, an opaque id mapped here to the token); ``access.review_token`` checks it and
``access.allowed`` asks RBAC per verb, resource and namespace. Answers are cached briefly per
token (``ttl``), so a page of a hundred rows costs a handful of reviews, and a revoked token or
RoleBinding stops working within that time. ``--dashboard-no-auth`` (loopback only) makes every
viewer an anonymous one that may do anything the controller may.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from gitops_kubepkg.access import User, allowed, review_token
from gitops_kubepkg.clock import SYSTEM, Clock
from gitops_kubepkg.errors import KubeError
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.spec import API_VERSION as KUBEPKG_API
from gitops_kubepkg.spec.crds import GITOPS_GROUP

COOKIE = "dashboard_session"
SESSION_SECONDS = 8 * 3600.0
MAX_SESSIONS = 4096
MAX_CACHED = 16384


class AuthError(Exception):
    """Refused: the status to answer (401: who are you; 403: not allowed; 503: cannot ask)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Viewer:
    """Who is asking. ``token`` is "" for the anonymous viewer of ``--dashboard-no-auth``;
    ``session`` the session id the token came from ("" for a bearer token)."""

    user: User
    token: str = ""
    session: str = ""

    @property
    def anonymous(self) -> bool:
        return not self.token

    @property
    def ident(self) -> str:
        """A stable, non-secret name for the viewer's token (stream quotas, caches)."""
        if not self.token:
            return "anonymous"
        return hashlib.sha256(self.token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Resource:
    """What RBAC is asked about: a resource of an API group."""

    resource: str
    group: str = ""


REPOSITORIES = Resource("repositories", GITOPS_GROUP)
KUBEPKGS = Resource("kubepkgs", KUBEPKG_API.partition("/")[0])
REVISIONS = Resource("packagerevisions", GITOPS_GROUP)
EVENTS = Resource("events")
PODS = Resource("pods")
ANONYMOUS = User("anonymous (--dashboard-no-auth)")


class _TTLCache:
    """A bounded map whose entries expire; oldest dropped first when full."""

    def __init__(self, ttl: float, size: int, clock: Clock) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._data: OrderedDict[object, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object) -> tuple[bool, object]:
        with self._lock:
            found = self._data.get(key)
            if found is None:
                return False, None
            if found[0] <= self.clock.monotonic():
                del self._data[key]
                return False, None
            return True, found[1]

    def put(self, key: object, value: object) -> None:
        with self._lock:
            self._data[key] = (self.clock.monotonic() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def drop(self, key: object) -> None:
        with self._lock:
            self._data.pop(key, None)


class Gate:
    """Authenticates requests and answers RBAC questions for them."""

    def __init__(
        self,
        kube: Kube,
        *,
        no_auth: bool = False,
        ttl: float = 10.0,
        session_seconds: float = SESSION_SECONDS,
        clock: Clock = SYSTEM,
    ) -> None:
        self.kube = kube
        self.no_auth = no_auth
        self.clock = clock
        self.session_seconds = session_seconds
        self._tokens = _TTLCache(ttl, MAX_CACHED, clock)
        self._answers = _TTLCache(ttl, MAX_CACHED, clock)
        self._sessions = _TTLCache(session_seconds, MAX_SESSIONS, clock)

    # -- who --------------------------------------------------------------------------------

    def user_of(self, token: str) -> User:
        """The user of ``token``; AuthError 401 when the API server does not accept it."""
        digest = hashlib.sha256(token.encode()).digest()
        hit, user = self._tokens.get(digest)
        if not hit:
            try:
                user = review_token(self.kube, token)
            except KubeError as e:
                raise AuthError(503, f"cannot review the token: {e}") from e
            self._tokens.put(digest, user)
        if not isinstance(user, User):
            raise AuthError(401, "the token is not valid for this cluster")
        return user

    def viewer(self, token: str, session: str) -> Viewer:
        """The viewer of a request: its bearer token, else its session cookie."""
        if self.no_auth:
            return Viewer(ANONYMOUS)
        if token:
            session = ""  # a bearer token wins; the viewer is not the session's
        if not token and session:
            hit, held = self._sessions.get(session)
            if not hit or not isinstance(held, str):
                raise AuthError(401, "the session expired or is unknown: log in again")
            token = held
        if not token:
            raise AuthError(
                401, "log in: Authorization: Bearer <Kubernetes token>, or POST /api/login"
            )
        try:
            return Viewer(self.user_of(token), token, session)
        except AuthError:
            if session:
                self._sessions.drop(session)
            raise

    def login(self, token: str) -> tuple[str, User]:
        """A new session for a valid ``token``: (session id, user)."""
        user = self.user_of(token)
        session = secrets.token_urlsafe(32)
        self._sessions.put(session, token)
        return session, user

    def logout(self, session: str) -> None:
        if session:
            self._sessions.drop(session)

    # -- may they ---------------------------------------------------------------------------

    def may(self, viewer: Viewer, verb: str, resource: Resource, namespace: str) -> bool:
        if viewer.anonymous:
            return True
        key = (viewer.ident, verb, resource, namespace)
        hit, answer = self._answers.get(key)
        if not hit:
            try:
                answer = allowed(
                    self.kube, viewer.user, verb, resource.resource, namespace, resource.group
                )
            except KubeError as e:
                raise AuthError(503, f"cannot review access: {e}") from e
            self._answers.put(key, answer)
        return bool(answer)

    def require(self, viewer: Viewer, verb: str, resource: Resource, namespace: str) -> None:
        if not self.may(viewer, verb, resource, namespace):
            where = f" in namespace {namespace}" if namespace else ""
            group = f".{resource.group}" if resource.group else ""
            raise AuthError(
                403,
                f"{viewer.user.username} may not {verb} {resource.resource}{group}{where} "
                "(grant it with RBAC)",
            )

    def visible(self, viewer: Viewer, resource: Resource, namespaces: set[str]) -> set[str]:
        """The namespaces among ``namespaces`` in which ``viewer`` may get ``resource``. One
        review for every namespace at once first (a cluster-wide grant), then one per namespace."""
        if viewer.anonymous or self.may(viewer, "get", resource, ""):
            return set(namespaces)
        return {ns for ns in namespaces if self.may(viewer, "get", resource, ns)}
