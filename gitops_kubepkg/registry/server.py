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
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gitops_kubepkg.errors import InputError, RegistryError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.blobstore import BlobReader, BlobStore
from gitops_kubepkg.registry.digest import is_digest, parse_digest
from gitops_kubepkg.registry.manifest import Platform, parse_manifest, pick_platform
from gitops_kubepkg.registry.repositories import RefReader, Repositories
from gitops_kubepkg.spec.imageref import mirror_repository

_ROUTE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gitops-kubepkg-registry"
    timeout = 300
    server: _Server

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
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _fail(self, failure: _Failure, *, head: bool) -> None:
        err: dict[str, Any] = {"code": failure.code, "message": failure.message}
        if failure.detail is not None:
            err["detail"] = failure.detail
        body = json.dumps({"errors": [err]}).encode()
        self._send(failure.status, body, {"Content-Type": "application/json"}, head=head)

    def _dispatch(self, head: bool) -> None:
        try:
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

    def _unsupported(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.close_connection = True  # do not read an upload we refuse
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
        if media_type in mediatype.INDEXES and not mediatype.accepts(accept, media_type):
            index = parse_manifest(raw, media_type, digest, f"{name}@{digest}")
            child = pick_platform(index, DEFAULT_PLATFORM)
            if child is None or not mediatype.accepts(accept, child.media_type):
                raise _Failure(
                    404,
                    "MANIFEST_UNKNOWN",
                    f"{name}@{digest} is an index ({media_type}) and the Accept header lists "
                    f"neither it nor a {DEFAULT_PLATFORM} manifest type it holds",
                )
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
        size = self.server.blobs.size(digest)
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    blobs: BlobReader
    refs: RefReader
    access_log: bool
    on_request: RequestObserver | None


class _Server6(_Server):
    address_family = socket.AF_INET6


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
    ) -> None:
        if not root.is_dir():
            raise InputError(f"--root {root}: not a directory (import something into it first)")
        server_class = _Server6 if ":" in host else _Server
        try:
            self._httpd = server_class((host, port), _Handler)
        except OSError as e:
            raise InputError(f"--listen {host}:{port}: {e.strerror}") from e
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
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

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
