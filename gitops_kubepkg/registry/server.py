"""The pull-only OCI distribution server over the blob store (``registry serve``).

Last step of the airgap flow: ``airgap import`` fills the store, pods pull from here. It reads
through the store's read-only interfaces (``BlobReader``, ``RefReader``) and never writes: every
POST, PUT, PATCH and DELETE answers 405 ``UNSUPPORTED``.

Repository names keep the source host (``docker.io/library/nginx``). containerd and k3s, using
this server as a mirror, ask for the upstream path and name the upstream host in ``?ns=``
(``/v2/library/nginx/manifests/1.27?ns=docker.io``), so ``ns`` is put back in front; a request
without ``ns`` and without a host in the name falls back to Docker Hub's names, as Docker does.

Blobs go from the page cache to the socket with ``socket.sendfile`` (``os.sendfile`` underneath),
never through Python buffers; each connection has its own thread, so many clients pull at once.
The framing (deadlines, the connection cap, bodies: the registry reads none) is ``serving``'s.

A blob is served only through a repository whose manifests reference it (or that holds it as a
manifest), as Distribution does: knowing a digest does not open it through any other name. A
manifest fetched by digest comes back as stored whatever the Accept header says; only a tag that
names an index is resolved to the ``linux/amd64`` child for a client that accepts that child's type
but no index type (otherwise the index comes back as stored).
Optional: HTTP basic auth against an htpasswd file (bcrypt entries, as ``htpasswd -B`` writes)
and TLS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import bcrypt

from gitops_kubepkg.errors import InputError, RegistryError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.blobstore import BlobReader, BlobStore
from gitops_kubepkg.registry.digest import Digest, is_digest, parse_digest
from gitops_kubepkg.registry.manifest import Platform, parse_manifest, pick_platform
from gitops_kubepkg.registry.repositories import RefReader, Repositories
from gitops_kubepkg.serving import HardenedHandler, HardenedServer, Limits
from gitops_kubepkg.spec.imageref import mirror_repository

_ROUTE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_RANGE = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$")
DEFAULT_PLATFORM = Platform("linux", "amd64")
"""The child an index resolves to for a client that does not accept indexes (as Distribution)."""


@dataclass
class _Failure(Exception):
    status: int
    code: str
    message: str
    detail: Any = None


def _repository_candidates(name: str, ns: str) -> list[str]:
    def hub(path: str) -> str:
        return f"docker.io/{path if '/' in path else f'library/{path}'}"

    if ns:
        return [
            hub(name)
            if ns in ("docker.io", "index.docker.io")
            else mirror_repository(f"{ns}/{name}")
        ]
    first = name.split("/", 1)[0]
    looks_like_host = "/" in name and ("." in first or ":" in first or first == "localhost")
    return [name] if looks_like_host else [name, hub(name)]


class _Handler(HardenedHandler):
    server_version = "gitops-kubepkg-registry"
    server: _Server
    _extra: dict[str, str]

    # -- plumbing ------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.on_request is not None and isinstance(code, int):
            self.server.on_request(self.command or "", int(code))
        super().log_request(code, size)

    def _send(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, *, head: bool
    ) -> None:
        self.send_response(status)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        extra, self._extra = getattr(self, "_extra", None) or {}, {}
        for k, v in {**(headers or {}), **extra}.items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _fail_json(self, failure: _Failure, *, head: bool) -> None:
        err: dict[str, Any] = {"code": failure.code, "message": failure.message}
        if failure.detail is not None:
            err["detail"] = failure.detail
        body = json.dumps({"errors": [err]}).encode()
        self._send(failure.status, body, {"Content-Type": "application/json"}, head=head)

    def _dispatch(self, head: bool) -> None:
        try:
            self._authorize()
            self._route(head)
        except _Failure as f:
            self._fail(f, head=head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except RegistryError as e:
            self._fail(_Failure(e.status, e.code, str(e)), head=head)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _authorize(self) -> None:
        users = self.server.users
        if users is None or users.allows(self.headers.get("Authorization", "")):
            return
        raise _Failure(401, "UNAUTHORIZED", "authentication required", {"realm": users.realm})

    def _fail(self, failure: _Failure, *, head: bool) -> None:
        if failure.status == 401 and self.server.users is not None:
            self._extra = {"WWW-Authenticate": f'Basic realm="{self.server.users.realm}"'}
        self._fail_json(failure, head=head)

    def _unsupported(self) -> None:
        self.refuse_body()  # do not read an upload we refuse
        self._fail(
            _Failure(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "this registry is pull-only; import content with `gitops-kubepkg airgap import`",
            ),
            head=False,
        )

    do_POST = do_PUT = do_PATCH = do_DELETE = _unsupported

    # -- routes --------------------------------------------------------------------------

    def _route(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        if path in ("/v2", "/v2/"):
            self._send(200, b"{}", {"Content-Type": "application/json"}, head=head)
            return
        if path == "/v2/_catalog":
            names = self.server.refs.names()
            self._paged("repositories", names, query, "/v2/_catalog", {}, head)
            return
        if m := _TAGS.match(path):
            name = self._repository(m.group("name"), query.get("ns", ""))
            tags = self.server.refs.tags(name)
            self._paged(
                "tags", tags, query, f"/v2/{m.group('name')}/tags/list", {"name": name}, head
            )
            return
        m = _ROUTE.match(path)
        if not m:
            raise _Failure(404, "NOT_FOUND", f"no such endpoint {path}")
        name = self._repository(m.group("name"), query.get("ns", ""))
        if m.group("kind") == "manifests":
            self._manifest(name, m.group("ref"), head)
        else:
            self._blob(name, m.group("ref"), head)

    def _repository(self, name: str, ns: str) -> str:
        for candidate in _repository_candidates(name, ns):
            if self.server.refs.exists(candidate):
                return candidate
        raise _Failure(
            404,
            "NAME_UNKNOWN",
            f"repository {name!r} is not known to this registry",
            {"name": name},
        )

    def _paged(
        self,
        key: str,
        items: list[str],
        query: dict[str, str],
        path: str,
        extra: dict[str, str],
        head: bool,
    ) -> None:
        last = query.get("last", "")
        if last:
            items = [i for i in items if i > last]
        headers = {"Content-Type": "application/json"}
        if "n" in query:
            try:
                n = int(query["n"])
            except ValueError:
                raise _Failure(400, "PAGINATION_NUMBER_INVALID", f"n={query['n']!r}") from None
            if n < 0:
                raise _Failure(400, "PAGINATION_NUMBER_INVALID", f"n={n}")
            if len(items) > n:
                items = items[:n]
                if n:
                    q = urllib.parse.urlencode({"n": n, "last": items[-1]})
                    headers["Link"] = f'<{path}?{q}>; rel="next"'
        body = json.dumps({**extra, key: items}).encode()
        self._send(200, body, headers, head=head)

    def _manifest(self, name: str, reference: str, head: bool) -> None:
        refs = self.server.refs
        if is_digest(reference):
            digest = parse_digest(reference)
        elif ":" in reference:
            raise _Failure(400, "DIGEST_INVALID", f"{reference!r} is not a digest we support")
        else:
            found = refs.resolve(name, reference)
            if found is None:
                raise _Failure(
                    404, "MANIFEST_UNKNOWN", f"{name}:{reference} is not known", {"tag": reference}
                )
            digest = found
        media_type = refs.manifest_type(name, digest)
        if media_type is None:
            raise _Failure(
                404, "MANIFEST_UNKNOWN", f"{name}@{digest} is not known", {"digest": str(digest)}
            )
        raw = self.server.blobs.read_small(digest, mediatype.MAX_MANIFEST_BYTES)
        accept = ", ".join(self.headers.get_all("Accept") or [])
        by_tag = not is_digest(reference)  # by digest: exactly those bytes, whatever Accept says
        if by_tag and media_type in mediatype.INDEXES and not mediatype.accepts(accept, media_type):
            index = parse_manifest(raw, media_type, digest, f"{name}@{digest}")
            child = pick_platform(index, DEFAULT_PLATFORM)
            # A client that takes the linux/amd64 image but no index gets that image (as
            # Distribution does for old Docker clients); one that takes neither gets the index
            # as stored and decides itself (as for an image manifest of a type it did not list).
            if child is not None and mediatype.accepts(accept, child.media_type):
                digest, media_type = child.digest, child.media_type
                raw = self.server.blobs.read_small(digest, mediatype.MAX_MANIFEST_BYTES)
        self._send(
            200,
            raw,
            {
                "Content-Type": media_type,
                "Docker-Content-Digest": str(digest),
                "ETag": f'"{digest}"',
            },
            head=head,
        )

    def _blob(self, name: str, reference: str, head: bool) -> None:
        if not is_digest(reference):
            raise _Failure(400, "DIGEST_INVALID", f"{reference!r} is not a digest")
        digest = parse_digest(reference)
        size = self.server.blobs.size(digest) if self.server.holds(name, digest) else None
        if size is None:
            raise _Failure(
                404, "BLOB_UNKNOWN", f"{name}@{digest} is not known", {"digest": str(digest)}
            )
        start, end = 0, size - 1
        status = 200
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": str(digest),
            "ETag": f'"{digest}"',
            "Accept-Ranges": "bytes",
            "Cache-Control": "max-age=31536000, immutable",
        }
        if rng := self.headers.get("Range"):
            parsed = _parse_range(rng, size)
            if parsed is None:
                headers = {"Content-Range": f"bytes */{size}", "Content-Type": "application/json"}
                body = json.dumps(
                    {"errors": [{"code": "RANGE_INVALID", "message": f"bad range {rng!r}"}]}
                ).encode()
                self._send(416, body, headers, head=head)
                return
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        headers["Content-Length"] = str(length)
        self._send(status, b"", headers, head=True)
        if head or length == 0:
            return
        with open(self.server.blobs.path(digest), "rb") as f:
            self.wfile.flush()
            sent = self.connection.sendfile(f, start, length)
        if sent != length:
            self.close_connection = True


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range within ``size``; None (-> 416) for anything else, however long."""
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        suffix = int(m.group(2))
        start, end = max(0, size - suffix), size - 1
    end = min(end, size - 1)
    if start > end or start >= size:
        return None
    return start, end


RequestObserver = Callable[[str, int], None]
"""Told (method, status code) of every answered request: the controller counts them."""


class Htpasswd:
    """Users and bcrypt hashes from an htpasswd file (``htpasswd -B``); other hash kinds are
    refused when the file is read, naming the line. A verified Authorization header is
    remembered (by its SHA-256) so a pull does not pay a bcrypt per blob."""

    realm = "gitops-kubepkg registry"

    def __init__(self, path: Path) -> None:
        self.users: dict[str, bytes] = {}
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"--htpasswd {path}: cannot read: {e}") from e
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            user, sep, hashed = line.strip().partition(":")
            if not sep or not user or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
                raise InputError(
                    f"{path}:{number}: want USER:BCRYPT-HASH (make it with `htpasswd -B`)"
                )
            self.users[user] = hashed.encode()
        if not self.users:
            raise InputError(f"--htpasswd {path}: no users")
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    def allows(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic" or len(encoded) > 4096:
            return False
        key = hashlib.sha256(encoded.strip().encode()).digest()
        with self._lock:
            if key in self._verified:
                return True
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return False
        hashed = self.users.get(user)
        if not sep or hashed is None:
            return False
        try:
            ok = bcrypt.checkpw(password.encode(), hashed.replace(b"$2y$", b"$2b$", 1))
        except ValueError:
            return False
        if ok:
            with self._lock:
                if len(self._verified) > 1024:
                    self._verified.clear()
                self._verified.add(key)
        return ok


def tls_context(cert: Path, key: Path, flag: str = "--tls") -> ssl.SSLContext:
    """A server context from a PEM certificate chain and key; one line naming the file (and the
    ``<flag>-cert``/``<flag>-key`` flags that gave it) if bad."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise InputError(f"{flag}-cert {cert} / {flag}-key {key}: {e}") from e
    return context


class _Server(HardenedServer):
    blobs: BlobReader
    refs: RefReader
    access_log: bool
    on_request: RequestObserver | None
    users: Htpasswd | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[str, tuple[frozenset[Digest], frozenset[Digest]]] = {}
        self._held_lock = threading.Lock()

    def holds(self, name: str, digest: Digest) -> bool:
        """True when a manifest of ``name`` is ``digest`` or references it (config, layer or
        child). The set is remembered per repository until its list of manifests changes."""
        manifests = frozenset(self.refs.manifests(name))
        if digest in manifests:
            return True
        with self._held_lock:
            cached = self._held.get(name)
        if cached is None or cached[0] != manifests:
            referenced: set[Digest] = set()
            todo = [(m, self.refs.manifest_type(name, m)) for m in manifests]
            while todo:
                m, media_type = todo.pop()
                if media_type is None or self.blobs.size(m) is None:
                    continue
                raw = self.blobs.read_small(m, mediatype.MAX_MANIFEST_BYTES)
                try:
                    parsed = parse_manifest(raw, media_type, m, f"{name}@{m}")
                except InputError:
                    continue
                for child in parsed.children:
                    if child.digest not in referenced and parsed.is_index:
                        todo.append((child.digest, child.media_type))
                    referenced.add(child.digest)
            cached = (manifests, frozenset(referenced))
            with self._held_lock:
                self._held[name] = cached
        return digest in cached[1]


class RegistryServer:
    """Serve ``root`` on ``host:port`` (port 0 picks a free one; see ``url``)."""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_log: bool = False,
        on_request: RequestObserver | None = None,
        users: Htpasswd | None = None,
        tls: ssl.SSLContext | None = None,
        limits: Limits | None = None,
    ) -> None:
        if not root.is_dir():
            raise InputError(f"--root {root}: not a directory (import something into it first)")
        try:
            self._httpd = _Server((host, port), _Handler, "registry", limits=limits, tls=tls)
        except OSError as e:
            raise InputError(f"--listen {host}:{port}: {e.strerror}") from e
        self._httpd.users = users
        self._httpd.blobs = BlobStore(root)
        self._httpd.refs = Repositories(root)
        self._httpd.access_log = access_log
        self._httpd.on_request = on_request
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        scheme = "https" if self._httpd.tls is not None else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> RegistryServer:
        """Serve from a background thread (tests, benchmarks)."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        self._httpd.shutdown()

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
