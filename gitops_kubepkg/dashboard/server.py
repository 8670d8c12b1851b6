"""The dashboard's HTTP endpoints (``API.md``), its live stream and its static files.

The outermost part of the dashboard: ``controller --dashboard-listen`` starts a
``DashboardServer`` on every replica. Each request is authenticated first (``auth.Gate``: 401
and no data without a valid token or session), then answered from the cache (``state.State``)
through the pure ``views``, filtered to what the viewer may ``get``. ``/api/trace`` reads the
cluster as ``trace -o json`` does (``controller.tracing``); the airgap and registry pages read
the store's files. Actions are opt-in (``--dashboard-actions``), need the verbs they use, and do
what the CLI does (``actions``). Every POST must carry ``X-Requested-With: dashboard``, which a
cross-site form cannot send. Framing, deadlines and the connection cap are
``serving.HardenedServer``'s; a live stream holds one connection slot and one thread, and at most
``max_streams`` streams (``max_streams_per_viewer`` per token) are open at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import mimetypes
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitops_kubepkg import git
from gitops_kubepkg.access import bearer_token
from gitops_kubepkg.airgap.trust import ImportRecord
from gitops_kubepkg.controller.repository import RepositorySpec
from gitops_kubepkg.controller.shards import shard_of, shard_owners
from gitops_kubepkg.controller.tracing import trace_kubepkg, trace_live
from gitops_kubepkg.conventions import redact_text, redact_url
from gitops_kubepkg.dashboard import actions, auth, state, views
from gitops_kubepkg.dashboard.auth import AuthError, Gate, Viewer
from gitops_kubepkg.errors import GitopsKubepkgError, InputError, KubeError, NotFound
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.status import FAILED, health, inventory_of
from gitops_kubepkg.registry.blobstore import BlobStore
from gitops_kubepkg.registry.digest import Digest
from gitops_kubepkg.registry.manifest import parse_manifest
from gitops_kubepkg.registry.repositories import Repositories
from gitops_kubepkg.registry.server import tls_context
from gitops_kubepkg.runtime.informer import Cache
from gitops_kubepkg.serving import BodyError, HardenedHandler, HardenedServer, Limits, parse_listen
from gitops_kubepkg.spec.crds import GITOPS_GROUP
from gitops_kubepkg.tenancy import Tenancy

if TYPE_CHECKING:
    from gitops_kubepkg.controller.process import ControllerProcess

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
CSRF_HEADER = "X-Requested-With"
CSRF_VALUE = "dashboard"
HEARTBEAT = 15.0
MANIFEST_LIMIT = 4 << 20
STREAM_BUFFER = 32 * 1024
"""Kernel send buffer of a live stream: a client that stops reading pins at most this much."""
Owner = Callable[[str, str], tuple[str, int | None]]


@dataclass(frozen=True)
class Settings:
    """What ``controller --dashboard-*`` chose."""

    actions: bool = False
    no_auth: bool = False
    static_dir: Path = STATIC
    state_dir: Path | None = None
    store: Path | None = None
    """The registry's store (``--serve-registry``), None when the controller serves none."""
    max_streams: int = 64
    max_streams_per_viewer: int = 4
    max_costly: int = 16
    max_costly_per_viewer: int = 2
    heartbeat: float = HEARTBEAT
    stream_write_timeout: float = 30.0
    """A live stream whose client reads nothing for this long is cut (its slot freed)."""


class _Slots:
    """Counts what is open (live streams, costly requests), in total and per viewer."""

    def __init__(self, total: int, per_viewer: int, what: str, advice: str) -> None:
        self.total = total
        self.per_viewer = per_viewer
        self.what = what
        self.advice = advice
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> str:
        """ "" when a slot was taken, else why not."""
        with self._lock:
            if sum(self._open.values()) >= self.total:
                return f"too many {self.what} at once ({self.total}); try again shortly"
            if self._open.get(who, 0) >= self.per_viewer:
                return f"at most {self.per_viewer} {self.what} at once per user; {self.advice}"
            self._open[who] = self._open.get(who, 0) + 1
            return ""

    def give(self, who: str) -> None:
        with self._lock:
            left = self._open.get(who, 0) - 1
            if left > 0:
                self._open[who] = left
            else:
                self._open.pop(who, None)

    def count(self) -> int:
        with self._lock:
            return sum(self._open.values())


class Reply(Exception):
    """Stop handling and answer ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(HardenedHandler):
    server: DashboardServer
    max_body = 64 * 1024

    def log_message(self, format: str, *args: object) -> None:
        log.debug("dashboard: %s", format % args)

    # -- answers ----------------------------------------------------------------------------

    def _common_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        self._send(
            status,
            body,
            "application/json",
            {"Cache-Control": "no-store", **(headers or {})},
        )

    def _error(self, status: int, message: str) -> None:
        self.refuse_body()
        self._json(status, {"error": redact_text(message)})

    # -- requests ---------------------------------------------------------------------------

    def _route(self) -> tuple[str, dict[str, str]]:
        parsed = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        return parsed.path, query

    def _cookie(self) -> str:
        raw = self.headers.get("Cookie") or ""
        try:
            jar: SimpleCookie = SimpleCookie(raw)
        except CookieError:
            return ""
        morsel = jar.get(auth.COOKIE)
        return morsel.value if morsel is not None else ""

    def _viewer(self) -> Viewer:
        token = ""
        header = self.headers.get("Authorization")
        if header:
            token = bearer_token(header)
            if not token:
                raise Reply(401, "Authorization: want Bearer <Kubernetes token>")
        return self.server.gate.viewer(token, self._cookie())

    def _body(self) -> dict[str, Any]:
        try:
            raw = self.read_body()
        except BodyError as e:
            raise Reply(e.status, str(e)) from e
        try:
            doc = json.loads(raw or b"{}")
        except ValueError as e:
            raise Reply(400, f"body: not JSON: {e}") from e
        if not isinstance(doc, dict):
            raise Reply(400, "body: want a JSON object")
        return doc

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        endpoint = getattr(self, "_endpoint", "other")
        self._endpoint = "other"  # one count per answer
        if self.server.on_request is not None:
            self.server.on_request(endpoint, code)

    def _dispatch(self, method: str) -> None:
        path, query = self._route()
        self._endpoint = endpoint_of(path)
        try:
            if method == "GET" and not path.startswith("/api/"):
                self._static(path)
                return
            if method == "POST":
                if self.headers.get(CSRF_HEADER) != CSRF_VALUE:
                    raise Reply(403, f"POST needs the header {CSRF_HEADER}: {CSRF_VALUE}")
                if path == "/api/login":
                    self._login()
                    return
                if path == "/api/logout":
                    self._logout()
                    return
            route = ROUTES.get((method, path))
            prefix = "/api/kubepkgs/"
            if route is None and method == "GET" and path.startswith(prefix):
                route = _Handler._kubepkg
            if route is None:
                known = {p for _, p in ROUTES} | {"/api/login", "/api/logout"}
                if path in known or path.startswith(prefix):
                    raise Reply(405, f"{method} {path}: method not allowed")
                raise Reply(404, f"{path}: no such endpoint")
            viewer = self._viewer()
            if path in CACHED and not self.server.state.synced():
                raise Reply(
                    503, "the dashboard's cache is still listing the cluster; retry shortly"
                )
            if path in COSTLY:
                who = viewer.ident if not viewer.anonymous else self.client_address[0]
                why = self.server.costly.take(who)
                if why:
                    raise Reply(429, why)
                try:
                    route(self, viewer, path, query)
                finally:
                    self.server.costly.give(who)
                return
            route(self, viewer, path, query)
        except Reply as e:
            self._error(e.status, str(e))
        except AuthError as e:
            self._error(e.status, str(e))
        except actions.ActionError as e:
            self._error(e.status, str(e))
        except NotFound as e:
            self._error(404, str(e))
        except KubeError as e:
            self._error(503 if e.status in (0, 429) or e.status >= 500 else 502, str(e))
        except InputError as e:
            self._error(400, str(e))
        except GitopsKubepkgError as e:
            self._error(502, str(e))
        except OSError:
            raise  # the viewer went away: the framing closes the connection
        except Exception as e:  # our bug: said in the log, one line to the viewer
            log.exception("dashboard: %s %s failed", method, path)
            self._error(500, f"internal error ({type(e).__name__}); see the controller's log")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        if self._route()[0] == "/api/stream":
            self._error(405, "HEAD /api/stream: open the stream with GET")
            return
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._error(405, "method not allowed")

    def do_DELETE(self) -> None:
        self._error(405, "method not allowed")

    # -- static files -----------------------------------------------------------------------

    def _static(self, path: str) -> None:
        root = self.server.settings.static_dir
        if path in ("/", "/index.html"):
            relative = "index.html"
        elif path.startswith("/static/"):
            relative = path[len("/static/") :]
        else:
            raise Reply(404, f"{path}: not found")
        parts = relative.split("/")
        if not relative or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise Reply(404, f"{path}: not found")
        file = root.joinpath(*parts)
        try:
            data = file.read_bytes() if file.is_file() else None
        except OSError:
            data = None
        if data is None:
            if relative == "index.html":
                raise Reply(404, "the dashboard's pages are not installed (static/index.html)")
            raise Reply(404, f"{path}: not found")
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type in (
            "application/javascript",
            "image/svg+xml",
        ):
            content_type += "; charset=utf-8"
        self._send(200, data, content_type, {"Cache-Control": "no-cache"})

    # -- session ----------------------------------------------------------------------------

    def _cookie_header(self, value: str, max_age: int) -> str:
        # Secure over our TLS, and behind a proxy that says it terminated TLS (a client that
        # forges the header only makes its own cookie stricter).
        https = self.headers.get("X-Forwarded-Proto", "").strip().lower() == "https"
        secure = "; Secure" if self.server.tls is not None or https else ""
        return (
            f"{auth.COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        )

    def _login(self) -> None:
        body = self._body()
        token = body.get("token")
        if not isinstance(token, str) or not token.strip():
            raise Reply(400, "body: token: want the Kubernetes token as a string")
        gate = self.server.gate
        if gate.no_auth:
            self._json(200, {"user": auth.ANONYMOUS.username})
            return
        session, user = gate.login(token.strip())
        self._json(
            200,
            {"user": user.username},
            {"Set-Cookie": self._cookie_header(session, int(gate.session_seconds))},
        )

    def _logout(self) -> None:
        self.server.gate.logout(self._cookie())
        self._json(200, {}, {"Set-Cookie": self._cookie_header("", 0)})

    # -- reads ------------------------------------------------------------------------------

    def _whoami(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        self._json(
            200,
            {
                "user": viewer.user.username,
                "auth": not self.server.gate.no_auth,
                "actions": self.server.settings.actions,
            },
        )

    def _visible(self, viewer: Viewer, resource: auth.Resource, objs: list[Any]) -> list[Any]:
        namespaces = {views.key(o)[0] for o in objs}
        allowed = self.server.gate.visible(viewer, resource, namespaces)
        return [o for o in objs if views.key(o)[0] in allowed]

    def _permissions(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        """Which actions this viewer may take where, so the page offers only buttons that work:
        per namespace the viewer can see objects in, whether it may ``patch`` Repositories
        (reconcile one, promote into or approve for a deployment one) and KubePkgs (reconcile).
        The same cached SubjectAccessReviews the actions themselves ask."""
        gate, s = self.server.gate, self.server.state
        namespaces: dict[str, dict[str, bool]] = {}
        if self.server.settings.actions:
            repos = {views.key(o)[0] for o in s.repository_list()}
            pkgs = {views.key(o)[0] for o in s.kubepkg_list()}
            seen = gate.visible(viewer, auth.REPOSITORIES, repos) | gate.visible(
                viewer, auth.KUBEPKGS, pkgs
            )
            for ns in sorted(seen):
                namespaces[ns] = {
                    "repositories": gate.may(viewer, "patch", auth.REPOSITORIES, ns),
                    "kubepkgs": gate.may(viewer, "patch", auth.KUBEPKGS, ns),
                }
        self._json(200, {"actions": self.server.settings.actions, "namespaces": namespaces})

    def _overview(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        s = self.server.state
        repositories = self._visible(viewer, auth.REPOSITORIES, s.repository_list())
        kubepkgs = self._visible(viewer, auth.KUBEPKGS, s.kubepkg_list())
        # Suspension comes from every Repository the cache holds, seen or not: it is the
        # KubePkg's own health, not the Repository's data.
        doc = views.overview(repositories, kubepkgs, self.server.owner)
        suspended = views.suspended_repositories(s.repository_list())
        for row in doc["kubepkgs"]:
            if row["repository"] in suspended and row["health"] != views.SUSPENDED:
                row["health"] = views.SUSPENDED
        self._json(200, doc)

    def _kubepkg(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        parts = path[len("/api/kubepkgs/") :].split("/")
        if len(parts) != 2 or not all(parts):
            raise Reply(404, f"{path}: want /api/kubepkgs/<namespace>/<name>")
        namespace, name = (urllib.parse.unquote(p) for p in parts)
        gate, s = self.server.gate, self.server.state
        gate.require(viewer, "get", auth.KUBEPKGS, namespace)
        if not s.synced():
            raise Reply(503, "the dashboard's cache is still listing the cluster; retry shortly")
        obj = s.kubepkg(namespace, name)
        if obj is None:
            raise Reply(404, f"KubePkg {namespace}/{name} not found")
        source = str(((obj.get("status") or {}).get("source") or {}).get("repository", ""))
        repo = None
        if "/" in source:
            repo_ns, repo_name = source.split("/", 1)
            if gate.may(viewer, "get", auth.REPOSITORIES, repo_ns):
                repo = s.repository(repo_ns, repo_name)
        # Events of the KubePkg and its objects, from the namespaces the viewer may read them in
        # (a package may apply into others).
        where = {namespace} | {r.namespace for r in inventory_of(obj.get("status") or {})}
        readable = gate.visible(viewer, auth.EVENTS, where)
        events = [
            e
            for e in s.event_list()
            if str((e.get("involvedObject") or {}).get("namespace") or "") in readable
        ]
        suspended = source in views.suspended_repositories(s.repository_list())
        detail = views.kubepkg_detail(obj, repo, events, suspended)
        workloads = [c for c in detail["inventory"]["children"] if c["kind"] in views.WORKLOADS]
        for child in workloads[:MAX_WORKLOADS]:
            if gate.may(viewer, "get", auth.PODS, child["namespace"]):
                child["children"] = self.server.pods.of(
                    child["apiVersion"], child["kind"], child["namespace"], child["name"]
                )
        self._json(200, detail)

    def _trace(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        kind, name = query.get("kind", ""), query.get("name", "")
        namespace, api_version = query.get("namespace", ""), query.get("apiVersion", "")
        if not kind or not name:
            raise Reply(400, "query: want kind and name (and namespace, apiVersion)")
        kube, gate = self.server.kube, self.server.gate
        if kind.lower() in ("kubepkg", "kubepkgs", "kpkg"):
            gate.require(viewer, "get", auth.KUBEPKGS, namespace)
            obj = self.server.state.kubepkg(namespace, name)
            if obj is None:
                raise Reply(404, f"KubePkg {namespace}/{name} not found")
            summary, _ = trace_kubepkg(kube, obj, objects=self.server.reader)
            self._json(200, summary)
            return
        res = kube.resource(api_version, kind) if api_version else kube.find_resource(kind)
        group = res.api_version.rpartition("/")[0] if "/" in res.api_version else ""
        where = namespace if res.namespaced else ""
        gate.require(viewer, "get", auth.Resource(res.plural, group), where)
        reader = self.server.reader(where)
        live = reader.get(res.api_version, res.kind, name, where)
        if live is None:
            raise Reply(404, f"{res.kind} {f'{where}/' if where else ''}{name} not found")
        live.setdefault("apiVersion", res.api_version)
        live.setdefault("kind", res.kind)
        self._json(200, trace_live(kube, live, objects=reader).to_dict())

    def _catalog(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        revisions = self._visible(viewer, auth.REVISIONS, self.server.state.revision_list())
        self._json(200, views.catalog(revisions))

    def _store_reader(self, viewer: Viewer) -> None:
        """The airgap and registry pages show the controller's store: what RBAC grants reading
        it is ``get`` on ``airgapimports`` in the controller's namespace (the verb uploads use
        is create)."""
        self.server.gate.require(viewer, "get", AIRGAP_IMPORTS, self.server.upload_namespace)

    def _airgap(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        self._store_reader(viewer)
        settings = self.server.settings
        imports = []
        for label, directory in (("store", settings.store), ("state", settings.state_dir)):
            if directory is None:
                continue
            for e in ImportRecord(directory).entries():
                imports.append(
                    {
                        **e.to_json(),
                        "images": dict(sorted(e.images.items())),
                        "repositories": [redact_url(r) for r in e.repositories],
                        "record": label,
                    }
                )
        imports.sort(key=lambda e: e["imported"], reverse=True)
        images = []
        if settings.store is not None:
            refs = Repositories(settings.store)
            for name in refs.names():
                for tag in refs.tags(name):
                    digest = refs.resolve(name, tag)
                    images.append({"repository": name, "tag": tag, "digest": str(digest or "")})
        self._json(200, {"imports": imports, "images": images, "store": settings.store is not None})

    def _registry(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        self._store_reader(viewer)
        store = self.server.settings.store
        if store is None:
            self._json(200, {"repositories": [], "store": False})
            return
        refs, blobs = Repositories(store), BlobStore(store)
        out = []
        for name in refs.names():
            tags = []
            for tag in refs.tags(name):
                digest = refs.resolve(name, tag)
                size = image_size(refs, blobs, name, digest, 0) if digest is not None else None
                tags.append({"tag": tag, "digest": str(digest or ""), "size": size})
            out.append({"name": name, "tags": tags})
        self._json(200, {"repositories": out, "store": True})

    # -- the live stream --------------------------------------------------------------------

    def _stream(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        server = self.server
        who = viewer.ident if not viewer.anonymous else f"anonymous@{self.client_address[0]}"
        why = server.streams.take(who)
        if why:
            raise Reply(429, why)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self._common_headers()
            self.close_connection = True  # the stream ends with the connection
            self.end_headers()
            self.connection.settimeout(server.settings.stream_write_timeout)
            with contextlib.suppress(OSError):  # what a client that reads nothing can pin
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_BUFFER)
            seen = server.state.versions()
            self._event("hello", {"topics": list(state.TOPICS), "versions": seen})
            beat = server.settings.heartbeat
            checked = time.monotonic()
            while not server.state.stopping and not server.closing.is_set():
                now = server.state.wait(seen, beat)
                if server.state.stopping or server.closing.is_set():
                    break
                changed = [t for t in state.TOPICS if now.get(t) != seen.get(t)]
                seen = now
                if changed:
                    self._event("change", {"topics": changed})
                # Every heartbeat, busy or quiet: is the viewer still who they were (logged
                # out, token revoked: the stream ends)? The answer is cached; this costs little.
                if time.monotonic() - checked >= beat:
                    checked = time.monotonic()
                    if not self._still_allowed(viewer):
                        break
                if not changed:
                    self.wfile.write(b": heartbeat\n\n")
                    self.wfile.flush()
        except OSError:
            pass  # the viewer went away, or read nothing for too long
        finally:
            server.streams.give(who)

    def _still_allowed(self, viewer: Viewer) -> bool:
        try:
            if viewer.session:
                self.server.gate.viewer("", viewer.session)
            else:
                self.server.gate.viewer(viewer.token, "")
        except AuthError:
            return False
        return True

    def _event(self, name: str, data: dict[str, Any]) -> None:
        line = json.dumps(data, separators=(",", ":"), sort_keys=True)
        self.wfile.write(f"event: {name}\ndata: {line}\n\n".encode())
        self.wfile.flush()

    # -- actions ----------------------------------------------------------------------------

    def _actions_on(self) -> None:
        if not self.server.settings.actions:
            raise Reply(403, "actions are off: start the controller with --dashboard-actions")

    def _reconcile(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        self._actions_on()
        body = self._body()
        kind = actions.text_field(body, "kind")
        namespace, name = actions.text_field(body, "namespace"), actions.text_field(body, "name")
        canonical = {"repository": "Repository", "kubepkg": "KubePkg"}.get(kind.lower())
        if canonical is None:
            raise Reply(400, f"body: kind: want Repository or KubePkg, got {kind!r}")
        resource = auth.REPOSITORIES if canonical == "Repository" else auth.KUBEPKGS
        self.server.gate.require(viewer, "patch", resource, namespace)
        s = self.server.state
        live = (
            s.repository(namespace, name)
            if canonical == "Repository"
            else s.kubepkg(namespace, name)
        )
        token = actions.reconcile(self.server.kube, canonical, namespace, name, live)
        self._json(
            202, {"requestedAt": token, "kind": canonical, "namespace": namespace, "name": name}
        )

    def _deployment(self, viewer: Viewer, body: dict[str, Any]) -> RepositorySpec:
        namespace, name = actions.text_field(body, "namespace"), actions.text_field(body, "name")
        self.server.gate.require(viewer, "patch", auth.REPOSITORIES, namespace)
        return actions.deployment_spec(
            self.server.state.repository(namespace, name), namespace, name
        )

    def _promote(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        self._actions_on()
        body = self._body()
        deployment = self._deployment(viewer, body)
        package, version = actions.text_field(body, "package"), actions.text_field(body, "version")
        upgrade = body.get("upgrade", False)
        if not isinstance(upgrade, bool):
            raise Reply(400, "body: upgrade: want true or false")
        s = self.server.state
        revisions = self._visible(viewer, auth.REVISIONS, s.revision_list())
        catalog = actions.find_catalog(
            revisions, s.repository, deployment.namespace, package, version
        )
        with self.server.git_lock:
            done = actions.promote_revision(
                deployment,
                catalog,
                package,
                self.server.credentials,
                path=actions.text_field(body, "path", required=False),
                upgrade=upgrade,
            )
        self._json(200, done)

    def _approve(self, viewer: Viewer, path: str, query: dict[str, str]) -> None:
        self._actions_on()
        body = self._body()
        deployment = self._deployment(viewer, body)
        branch = actions.text_field(body, "branch")
        with self.server.git_lock:
            done = actions.approve_branch(deployment, branch, self.server.credentials)
        self._json(200, done)


MAX_WORKLOADS = 20
"""Workloads of one KubePkg whose Pods the detail page lists (each costs two reads, cached)."""
CACHED = {"/api/overview", "/api/catalog"}
COSTLY = {"/api/trace", "/api/actions/reconcile", "/api/actions/promote", "/api/actions/approve"}
"""Requests that read the cluster or git: at most ``max_costly_per_viewer`` at once each."""
"""What is answered from the cache alone: an empty answer before the first list would be a lie."""
AIRGAP_IMPORTS = auth.Resource("airgapimports", GITOPS_GROUP)
Route = Callable[[_Handler, Viewer, str, dict[str, str]], None]
ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/whoami"): _Handler._whoami,
    ("GET", "/api/permissions"): _Handler._permissions,
    ("GET", "/api/overview"): _Handler._overview,
    ("GET", "/api/trace"): _Handler._trace,
    ("GET", "/api/catalog"): _Handler._catalog,
    ("GET", "/api/airgap"): _Handler._airgap,
    ("GET", "/api/registry"): _Handler._registry,
    ("GET", "/api/stream"): _Handler._stream,
    ("POST", "/api/actions/reconcile"): _Handler._reconcile,
    ("POST", "/api/actions/promote"): _Handler._promote,
    ("POST", "/api/actions/approve"): _Handler._approve,
}


def endpoint_of(path: str) -> str:
    """The ``endpoint`` label of a request: few values whatever the path."""
    if path.startswith("/api/kubepkgs/"):
        return "/api/kubepkgs"
    if path in {p for _, p in ROUTES} or path in ("/api/login", "/api/logout"):
        return path
    if path == "/" or path.startswith("/static/"):
        return "static"
    return "other"


def image_size(
    refs: Repositories, blobs: BlobStore, name: str, digest: Digest, depth: int
) -> int | None:
    """The bytes a manifest reaches: itself and its config and layers, or (an index) itself and
    each of its manifests the store holds; None when the manifest is missing or unreadable."""
    media_type = refs.manifest_type(name, digest)
    size = blobs.size(digest)
    if media_type is None or size is None:
        return None
    try:
        manifest = parse_manifest(
            blobs.read_small(digest, MANIFEST_LIMIT), media_type, digest, f"{name}@{digest}"
        )
    except GitopsKubepkgError:
        return None
    total = size
    for child in manifest.children:
        if not manifest.is_index:
            total += child.size  # config and layers, as the manifest declares them
        elif depth < 2 and (more := image_size(refs, blobs, name, child.digest, depth + 1)):
            total += more
    return total


class Pods:
    """The Pods of a workload, read at most every ``ttl`` seconds whoever asks: the workload's
    ``spec.selector.matchLabels`` (read as the namespace's reader, as traces are), then the
    namespace's Pods with those labels (read by the controller, which may list Pods to explain a
    rollout; deploy/rbac.yaml). What cannot be read leaves the list empty: Pods "if known"."""

    def __init__(
        self,
        reader: Callable[[str], Kube],
        lister: Kube,
        ttl: float = 5.0,
        limit: int = 50,
        size: int = 1024,
    ) -> None:
        self.reader, self.lister, self.ttl, self.limit, self.size = reader, lister, ttl, limit, size
        self._cache: dict[tuple[str, str, str, str], tuple[float, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def of(self, api_version: str, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
        key = (api_version, kind, namespace, name)
        with self._lock:
            found = self._cache.get(key)
            if found is not None and found[0] > time.monotonic():
                return found[1]
        rows = self._read(api_version, kind, namespace, name)
        with self._lock:
            if len(self._cache) >= self.size:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + self.ttl, rows)
        return rows

    def _read(self, api_version: str, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
        reader = self.reader(namespace)
        try:
            workload = reader.get(api_version, kind, name, namespace)
            labels = ((workload or {}).get("spec") or {}).get("selector", {}).get("matchLabels")
            if not isinstance(labels, dict) or not labels:
                return []
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            pods = self.lister.list("v1", "Pod", namespace, label_selector=selector)
        except KubeError as e:
            log.debug("dashboard: Pods of %s %s/%s: %s", kind, namespace, name, e)
            return []
        rows = []
        for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name")))[
            : self.limit
        ]:
            state, message = pod_health(pod)
            rows.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": str((pod.get("metadata") or {}).get("name") or ""),
                    "health": state,
                    "message": redact_text(message),
                    "children": [],
                }
            )
        return rows


def pod_health(pod: Mapping[str, Any]) -> tuple[str, str]:
    """A Pod's kstatus word (``reconcile.status.health``: its Ready condition), a failed phase
    being Failed, with its phase in the message."""
    phase = str((pod.get("status") or {}).get("phase") or "Unknown")
    if phase == "Failed":
        return FAILED, f"phase {phase}"
    h = health(pod)
    return h.state, f"phase {phase}" + (f": {h.message}" if h.message else "")


class DashboardServer(HardenedServer):
    """The dashboard on ``address``, reading the cluster with ``kube`` (the controller's)."""

    def __init__(
        self,
        address: tuple[str, int],
        kube: Kube,
        *,
        settings: Settings | None = None,
        namespace: str = "",
        upload_namespace: str = "",
        credentials: Callable[[RepositorySpec], git.Credentials | None] = lambda spec: None,
        owner: Owner = lambda namespace, name: ("", None),
        tenancy: Tenancy | None = None,
        limits: Limits | None = None,
        tls: ssl.SSLContext | None = None,
        on_request: Callable[[str, int], None] | None = None,
        cache: Cache | None = None,
    ) -> None:
        super().__init__(address, _Handler, "dashboard", limits=limits, tls=tls)
        self.on_request = on_request
        """Told (endpoint, status code) of every answer (the controller's metrics)."""
        self.kube = kube
        self.settings = settings or Settings()
        self.upload_namespace = upload_namespace
        self.credentials = credentials
        self.owner = owner
        self.tenancy = tenancy or Tenancy()
        self.pods = Pods(self.reader, kube)
        self.gate = Gate(kube, no_auth=self.settings.no_auth)
        self.state = state.State(
            kube,
            namespace=namespace,
            state_dir=self.settings.state_dir,
            store=self.settings.store,
            cache=cache,
        )
        self.streams = _Slots(
            self.settings.max_streams,
            self.settings.max_streams_per_viewer,
            "live streams",
            "close a tab",
        )
        self.costly = _Slots(
            self.settings.max_costly,
            self.settings.max_costly_per_viewer,
            "traces and actions",
            "wait for the last to finish",
        )
        self.closing = threading.Event()
        self.git_lock = threading.Lock()
        """One promotion or approval at a time from this replica (each clones and pushes)."""

    def reader(self, namespace: str) -> Kube:
        """Who reads a namespace's live objects (traces, Pods): multi-tenant, that namespace's
        ServiceAccount, as the controller applies them (the controller itself may not read
        them); else the controller. The viewer's own RBAC was asked first either way."""
        if self.tenancy.multi_tenant and self.tenancy.default_service_account and namespace:
            return self.kube.as_service_account(namespace, self.tenancy.default_service_account)
        return self.kube

    def start(self) -> None:
        self.state.start()
        super().start()

    def stop(self) -> None:
        self.closing.set()
        self.state.stop()
        with contextlib.suppress(OSError):
            super().stop()


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ShardOwners:
    """Which replica holds each KubePkg's shard, read from the shard Leases at most every
    ``ttl`` seconds (one LIST, shared by every viewer)."""

    def __init__(
        self, kube: Kube, namespace: str, base: str, shards: int, ttl: float = 5.0
    ) -> None:
        self.kube, self.namespace, self.base, self.shards, self.ttl = (
            kube,
            namespace,
            base,
            shards,
            ttl,
        )
        self._owners: dict[int, str] = {}
        self._read = -ttl
        self._lock = threading.Lock()

    def __call__(self, namespace: str, name: str) -> tuple[str, int | None]:
        shard = shard_of(namespace, name, self.shards)
        with self._lock:
            if time.monotonic() - self._read >= self.ttl:
                try:
                    self._owners = shard_owners(self.kube, self.namespace, self.base)
                except KubeError as e:
                    log.warning("dashboard: reading the shard Leases: %s", e)
                self._read = time.monotonic()
            return self._owners.get(shard, ""), shard


def check_listen(listen: str, *, no_auth: bool) -> tuple[str, int]:
    """``--dashboard-listen`` as (host, port); without auth, only a loopback address."""
    host, port = parse_listen(listen, "--dashboard-listen")
    if no_auth and not loopback(host):
        raise InputError(
            f"--dashboard-no-auth: --dashboard-listen {listen} is reachable from other hosts; "
            "without auth the dashboard may listen only on loopback (127.0.0.1:PORT, [::1]:PORT)"
        )
    return host, port


def for_process(
    process: ControllerProcess,
    listen: str,
    *,
    actions: bool,
    no_auth: bool,
    tls: tuple[Path, Path | None] | None = None,
) -> DashboardServer:
    """The dashboard of a controller process (``controller --dashboard-listen``)."""
    host, port = check_listen(listen, no_auth=no_auth)
    context = None
    if tls is not None:
        cert, key = tls
        context = tls_context(cert, key or cert, "--dashboard-tls")
    o = process.options
    owner: Owner = lambda namespace, name: ("", None)  # noqa: E731
    if o.lease is not None and o.shards > 1:
        owner = _ShardOwners(process.kube, o.lease.namespace, o.lease.name, o.shards)
    server = DashboardServer(
        (host, port),
        process.kube,
        settings=Settings(
            actions=actions, no_auth=no_auth, state_dir=o.state_dir, store=o.registry_root
        ),
        namespace=o.namespace,
        upload_namespace=o.upload_namespace,
        credentials=process.syncer.credentials,
        owner=owner,
        tenancy=o.tenancy,
        tls=context,
        on_request=process.metrics.record_dashboard_request,
        cache=process.cache,
    )
    process.metrics.dashboard_streams.set_function(server.streams.count)
    return server
