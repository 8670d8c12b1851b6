"""An OCI distribution client: pull during ``airgap export``, push for ``import --to-registry``.

The one module that speaks HTTP to other registries (through urllib3, for pooled keep-alive
connections, TLS and redirects that drop ``Authorization`` when they change host). It handles the
two auth schemes registries use (bearer tokens from the realm a 401 names, and basic), translates
every failure into ``RegistryError`` carrying the spec's error code, and redacts credentials and
signed query strings from every URL it puts in a message.

Pushing follows the spec: HEAD to skip what exists, a cross-repository mount when another
repository already has the blob, then upload, monolithic (POST + one PUT) for blobs up to
``chunk_size`` and chunked (PATCH ...) above it, each falling back to the other when the registry
refuses it. Blob bytes come from a stream read once, so a fallback only ever needs the one chunk
held in memory. Manifests are sent byte for byte (digests unchanged); callers send tags last.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from gitops_kubepkg import __version__
from gitops_kubepkg.conventions import redact_text as _redact_text
from gitops_kubepkg.conventions import redact_url as redact
from gitops_kubepkg.errors import DigestMismatch, RegistryError
from gitops_kubepkg.registry import mediatype
from gitops_kubepkg.registry.blobstore import ReadInto
from gitops_kubepkg.registry.digest import Digest, Verifier, digest_bytes
from gitops_kubepkg.registry.manifest import sniff_media_type

ACCEPT_MANIFESTS = ", ".join(
    [
        mediatype.OCI_INDEX,
        mediatype.DOCKER_LIST,
        mediatype.OCI_MANIFEST,
        mediatype.DOCKER_MANIFEST,
    ]
)
DOCKER_HUB = "registry-1.docker.io"


@dataclass(frozen=True)
class Endpoint:
    """A registry's base URL (``https://host[:port]``) and the credentials to use there."""

    base: str
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    def __str__(self) -> str:
        return redact(self.base)


def is_loopback(host: str) -> bool:
    h = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return h in ("localhost", "[::1]") or h.startswith("127.")


def endpoint_for(
    host: str,
    *,
    mirrors: Mapping[str, str] | None = None,
    plain_http: frozenset[str] = frozenset(),
) -> Endpoint:
    """Where to pull images named ``host/...`` from: a mirror given for it, Docker Hub's API host
    for ``docker.io``, plain HTTP for loopback and hosts listed in ``plain_http``, else HTTPS.
    Credentials come from the URL of a mirror or from the Docker config file."""
    if mirrors and host in mirrors:
        return parse_endpoint(mirrors[host])
    api_host = DOCKER_HUB if host == "docker.io" else host
    scheme = "http" if is_loopback(host) or host in plain_http else "https"
    user, password = docker_config_credentials(host)
    return Endpoint(f"{scheme}://{api_host}", user, password)


def parse_endpoint(url: str) -> Endpoint:
    """``http[s]://[user:password@]host[:port]`` (a path, if any, is dropped; see ``split_target``)."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RegistryError(f"{redact(url)}: want http[s]://host[:port]", code="NAME_INVALID")
    host = parts.netloc.rsplit("@", 1)[-1]
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    if not user:
        user, password = docker_config_credentials(host)
    return Endpoint(f"{parts.scheme}://{host}", user, password)


def docker_config_credentials(host: str) -> tuple[str, str]:
    """``auths[host].auth`` from ``$DOCKER_CONFIG/config.json`` (or ``~/.docker``), if any."""
    directory = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    try:
        doc = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return "", ""
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return "", ""
    keys = [host, f"https://{host}", f"http://{host}"]
    if host == "docker.io":
        keys.append("https://index.docker.io/v1/")
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError:
                continue
            return user, password
    return "", ""


@dataclass(frozen=True)
class Pulled:
    media_type: str
    digest: Digest
    raw: bytes


class RegistryClient:
    """Pooled connections and cached tokens for any number of registries."""

    def __init__(
        self,
        *,
        chunk_size: int = 8 << 20,
        monolithic_limit: int | None = None,
        tls_verify: bool = True,
        timeout: float = 120.0,
    ) -> None:
        self.chunk_size = chunk_size
        self.monolithic_limit = chunk_size if monolithic_limit is None else monolithic_limit
        self._http = urllib3.PoolManager(
            num_pools=16,
            maxsize=8,
            cert_reqs="CERT_REQUIRED" if tls_verify else "CERT_NONE",
            timeout=urllib3.Timeout(connect=15.0, read=timeout),
            headers={"User-Agent": f"gitops-kubepkg/{__version__}"},
        )
        self._tokens: dict[tuple[str, str], str] = {}
        self._basic: set[str] = set()
        self.stats = {"mounted": 0, "uploaded": 0, "skipped": 0, "chunked": 0}

    def close(self) -> None:
        self._http.clear()

    # -- plumbing -------------------------------------------------------------------------

    def _request(
        self,
        ep: Endpoint,
        method: str,
        path_or_url: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | Iterator[bytes] | None = None,
        ok: tuple[int, ...] = (200,),
        what: str = "",
    ) -> urllib3.BaseHTTPResponse:
        url = (
            path_or_url
            if "://" in path_or_url
            else urllib.parse.urljoin(ep.base + "/", path_or_url.lstrip("/"))
        )
        retried_auth = False
        while True:
            hdrs = dict(headers or {})
            auth = self._auth_header(ep, scope)
            if auth:
                hdrs["Authorization"] = auth
            retries: urllib3.Retry | bool = (
                urllib3.Retry(total=3, backoff_factor=0.3, redirect=5, status=0)
                if body is None
                else urllib3.Retry(total=0, redirect=0)
            )
            try:
                resp = self._http.request(
                    method,
                    url,
                    headers=hdrs,
                    body=body,
                    preload_content=False,
                    decode_content=False,
                    retries=retries,
                    redirect=body is None,
                )
            except Urllib3Error as e:
                raise RegistryError(
                    f"{method} {redact(url)}: {type(e).__name__}: {_redact_text(str(e))}",
                    code="UNAVAILABLE",
                    status=503,
                ) from e
            if resp.status == 401 and not retried_auth and not isinstance(body, Iterator):
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.drain_conn()
                resp.release_conn()
                self._authenticate(ep, scope, challenge, url)
                retried_auth = True
                continue
            if resp.status not in ok:
                raise self._error(resp, method, url, what)
            return resp

    def _auth_header(self, ep: Endpoint, scope: str) -> str:
        token = self._tokens.get((ep.base, scope)) or self._tokens.get((ep.base, ""))
        if token:
            return f"Bearer {token}"
        if ep.base in self._basic and ep.username:
            raw = f"{ep.username}:{ep.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return ""

    def _authenticate(self, ep: Endpoint, scope: str, challenge: str, url: str) -> None:
        scheme, _, rest = challenge.partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if scheme.lower() == "basic":
            if not ep.username:
                raise RegistryError(
                    f"{redact(url)}: the registry wants a user name and password "
                    f"(put them in the URL or in the Docker config for {ep})",
                    code="UNAUTHORIZED",
                    status=401,
                )
            self._basic.add(ep.base)
            return
        if scheme.lower() != "bearer" or "realm" not in params:
            raise RegistryError(
                f"{redact(url)}: unauthorized and no usable challenge ({challenge[:80]!r})",
                code="UNAUTHORIZED",
                status=401,
            )
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        if not query.get("scope") and scope:
            query["scope"] = scope
        realm = params["realm"]
        token_url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {}
        if ep.username:
            raw = f"{ep.username}:{ep.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        try:
            resp = self._http.request("GET", token_url, headers=headers, retries=2)
        except Urllib3Error as e:
            raise RegistryError(
                f"token request to {redact(realm)}: {type(e).__name__}", code="UNAVAILABLE"
            ) from e
        if resp.status != 200:
            raise RegistryError(
                f"token request to {redact(realm)} refused: HTTP {resp.status}",
                code="UNAUTHORIZED",
                status=401,
            )
        try:
            doc = json.loads(resp.data)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError) as e:
            raise RegistryError(f"{redact(realm)}: token response is not JSON") from e
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{redact(realm)}: token response has no token")
        self._tokens[(ep.base, scope)] = token

    def _error(
        self, resp: urllib3.BaseHTTPResponse, method: str, url: str, what: str
    ) -> RegistryError:
        body = resp.read(64 << 10) if method != "HEAD" else b""
        resp.release_conn()
        code, message = _status_code(resp.status), ""
        try:
            doc = json.loads(body)
            first = doc["errors"][0]
            code = str(first.get("code") or code)
            message = str(first.get("message") or "")
        except (ValueError, KeyError, IndexError, TypeError):
            message = body[:200].decode("utf-8", "replace").strip()
        subject = f"{what}: " if what else ""
        return RegistryError(
            f"{subject}{method} {redact(url)}: HTTP {resp.status} {code}"
            + (f": {_redact_text(message)}" if message else ""),
            code=code,
            status=resp.status,
        )

    # -- pull ---------------------------------------------------------------------------------

    def get_manifest(self, ep: Endpoint, name: str, reference: str) -> Pulled:
        """A manifest or index by tag or digest, size-limited and digest-checked."""
        what = f"{name}:{reference}" if ":" not in reference else f"{name}@{reference}"
        resp = self._request(
            ep,
            "GET",
            f"/v2/{name}/manifests/{reference}",
            scope=f"repository:{name}:pull",
            headers={"Accept": ACCEPT_MANIFESTS},
            what=what,
        )
        try:
            raw = resp.read(mediatype.MAX_MANIFEST_BYTES + 1)
        finally:
            resp.release_conn()
        if len(raw) > mediatype.MAX_MANIFEST_BYTES:
            raise RegistryError(
                f"{what}: manifest exceeds {mediatype.MAX_MANIFEST_BYTES} bytes",
                code="SIZE_INVALID",
                status=400,
            )
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type not in mediatype.MANIFESTS:
            media_type = sniff_media_type(raw) or media_type
        digest = digest_bytes(raw)
        if ":" in reference and str(digest) != reference:
            raise DigestMismatch(f"{what}: registry sent a manifest that hashes to {digest}")
        return Pulled(media_type, digest, raw)

    def open_blob(self, ep: Endpoint, name: str, digest: Digest) -> urllib3.BaseHTTPResponse:
        """A blob as a stream (``readinto``); the caller verifies and releases it."""
        return self._request(
            ep,
            "GET",
            f"/v2/{name}/blobs/{digest}",
            scope=f"repository:{name}:pull",
            what=f"{name}@{digest}",
        )

    def list_tags(self, ep: Endpoint, name: str) -> list[str]:
        resp = self._request(ep, "GET", f"/v2/{name}/tags/list", scope=f"repository:{name}:pull")
        try:
            doc = json.loads(resp.read(16 << 20))
        finally:
            resp.release_conn()
        tags = doc.get("tags") or []
        return [t for t in tags if isinstance(t, str)]

    # -- push ---------------------------------------------------------------------------------

    def blob_size(self, ep: Endpoint, name: str, digest: Digest) -> int | None:
        """HEAD: the size of a blob the repository has, or None."""
        resp = self._request(
            ep,
            "HEAD",
            f"/v2/{name}/blobs/{digest}",
            scope=f"repository:{name}:pull",
            ok=(200, 404),
        )
        resp.release_conn()
        if resp.status == 404:
            return None
        return int(resp.headers.get("Content-Length") or 0)

    def manifest_exists(self, ep: Endpoint, name: str, digest: Digest) -> bool:
        resp = self._request(
            ep,
            "HEAD",
            f"/v2/{name}/manifests/{digest}",
            scope=f"repository:{name}:pull",
            headers={"Accept": ACCEPT_MANIFESTS},
            ok=(200, 404),
        )
        resp.release_conn()
        return resp.status == 200

    def mount_blob(self, ep: Endpoint, name: str, digest: Digest, source: str) -> str | None:
        """Cross-repository mount from ``source``; None when mounted, else an upload URL."""
        query = urllib.parse.urlencode({"mount": str(digest), "from": source})
        resp = self._request(
            ep,
            "POST",
            f"/v2/{name}/blobs/uploads/?{query}",
            scope=f"repository:{name}:pull,push repository:{source}:pull",
            body=b"",
            ok=(201, 202),
            what=f"{name}@{digest}",
        )
        resp.release_conn()
        if resp.status == 201:
            self.stats["mounted"] += 1
            return None
        return self._location(ep, resp, f"{name}@{digest}")

    def _start_upload(self, ep: Endpoint, name: str, what: str) -> str:
        resp = self._request(
            ep,
            "POST",
            f"/v2/{name}/blobs/uploads/",
            scope=f"repository:{name}:pull,push",
            body=b"",
            ok=(202,),
            what=what,
        )
        resp.release_conn()
        return self._location(ep, resp, what)

    def _location(self, ep: Endpoint, resp: urllib3.BaseHTTPResponse, what: str) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"{what}: the registry sent no upload Location", code="UNKNOWN")
        return urllib.parse.urljoin(ep.base + "/", location)

    def upload_blob(
        self,
        ep: Endpoint,
        name: str,
        digest: Digest,
        size: int,
        source: ReadInto,
        *,
        upload_url: str | None = None,
        verify: Verifier | None = None,
    ) -> None:
        """Upload ``size`` bytes read once from ``source``.

        Monolithic up to ``monolithic_limit``; chunked above it. When a registry refuses PATCH
        (or the chunk size) the upload restarts monolithic with the chunk already read, and a
        monolithic PUT refused as too large restarts chunked: the chunk in memory is all either
        needs. ``verify`` is fed every byte and checked before the final PUT, so a blob whose
        bytes do not match is never committed.
        """
        what = f"{name}@{digest}"
        scope = f"repository:{name}:pull,push"
        url = upload_url or self._start_upload(ep, name, what)
        chunked = size > self.monolithic_limit
        first = _read_up_to(source, min(size, self.chunk_size) if chunked else size)
        if verify is not None:
            verify.update(first)
        sent = 0
        if chunked:
            try:
                url = self._patch(ep, url, first, 0, scope, what)
                sent = len(first)
                self.stats["chunked"] += 1
            except RegistryError as e:
                if e.status not in (400, 404, 405, 413, 416, 501):
                    raise
                self._cancel(ep, url, scope)
                url = self._start_upload(ep, name, what)
                self._put_streaming(ep, url, digest, size, first, source, scope, what, verify)
                self.stats["uploaded"] += 1
                return
            while sent < size:
                chunk = _read_up_to(source, min(self.chunk_size, size - sent))
                if verify is not None:
                    verify.update(chunk)
                url = self._patch(ep, url, chunk, sent, scope, what)
                sent += len(chunk)
            self._finish(ep, url, digest, b"", scope, what, verify)
            self.stats["uploaded"] += 1
            return
        try:
            self._finish(ep, url, digest, first, scope, what, verify)
        except RegistryError as e:
            if e.status != 413:
                raise
            url = self._start_upload(ep, name, what)
            step = max(1 << 20, self.chunk_size // 4)
            for off in range(0, len(first), step):
                url = self._patch(ep, url, first[off : off + step], off, scope, what)
            self._finish(ep, url, digest, b"", scope, what, None)
        self.stats["uploaded"] += 1

    def _patch(
        self, ep: Endpoint, url: str, chunk: bytes, offset: int, scope: str, what: str
    ) -> str:
        resp = self._request(
            ep,
            "PATCH",
            url,
            scope=scope,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                "Content-Length": str(len(chunk)),
            },
            body=chunk,
            ok=(202,),
            what=what,
        )
        resp.release_conn()
        return self._location(ep, resp, what)

    def _finish(
        self,
        ep: Endpoint,
        url: str,
        digest: Digest,
        data: bytes,
        scope: str,
        what: str,
        verify: Verifier | None,
    ) -> None:
        if verify is not None:
            try:
                verify.check()
            except DigestMismatch:
                self._cancel(ep, url, scope)
                raise
        resp = self._request(
            ep,
            "PUT",
            _with_query(url, digest=str(digest)),
            scope=scope,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
            body=data,
            ok=(201, 204),
            what=what,
        )
        resp.release_conn()

    def _put_streaming(
        self,
        ep: Endpoint,
        url: str,
        digest: Digest,
        size: int,
        first: bytes,
        source: ReadInto,
        scope: str,
        what: str,
        verify: Verifier | None,
    ) -> None:
        """One PUT whose body is ``first`` and then the rest of ``source`` (refused PATCH)."""

        def body() -> Iterator[bytes]:
            yield first
            left = size - len(first)
            while left > 0:
                chunk = _read_up_to(source, min(self.chunk_size, left))
                if verify is not None:
                    verify.update(chunk)
                left -= len(chunk)
                yield chunk
            if verify is not None:
                verify.check()

        resp = self._request(
            ep,
            "PUT",
            _with_query(url, digest=str(digest)),
            scope=scope,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=body(),
            ok=(201, 204),
            what=what,
        )
        resp.release_conn()

    def _cancel(self, ep: Endpoint, url: str, scope: str) -> None:
        try:
            resp = self._request(ep, "DELETE", url, scope=scope, ok=(200, 202, 204, 404, 405))
            resp.release_conn()
        except RegistryError:
            pass

    def put_manifest(
        self, ep: Endpoint, name: str, reference: str, media_type: str, raw: bytes
    ) -> None:
        """PUT the exact bytes; the registry's digest must equal ours."""
        resp = self._request(
            ep,
            "PUT",
            f"/v2/{name}/manifests/{reference}",
            scope=f"repository:{name}:pull,push",
            headers={"Content-Type": media_type, "Content-Length": str(len(raw))},
            body=raw,
            ok=(201, 202, 204),
            what=f"{name}:{reference}",
        )
        resp.release_conn()
        sent = resp.headers.get("Docker-Content-Digest")
        if sent and sent != str(digest_bytes(raw)):
            raise DigestMismatch(
                f"{name}:{reference}: the registry stored the manifest as {sent}, "
                f"not {digest_bytes(raw)} (it rewrote the bytes)"
            )


def _read_up_to(source: ReadInto, size: int) -> bytes:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = source(view[got:])
        if n <= 0:
            break
        got += n
    if got < size:
        raise DigestMismatch(f"source ended after {got} of {size} bytes")
    return bytes(buf)


def _with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + urllib.parse.urlencode(params)


def _status_code(status: int) -> str:
    return {
        401: "UNAUTHORIZED",
        403: "DENIED",
        404: "NOT_FOUND",
        405: "UNSUPPORTED",
        413: "SIZE_INVALID",
        429: "TOOMANYREQUESTS",
    }.get(status, "UNKNOWN")
