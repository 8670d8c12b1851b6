"""Airgap uploads into the running controller: ``airgap import DIR --to-controller URL``.

Place in the flow: the last leg of the airgap path when the controller runs inside the cluster.
The CLI (``cli/airgap.py``) streams an export directory (``airgap.json``, the bundles, the
tarball) to this endpoint; the controller (``controller/process.py``, ``--upload-listen``) keeps
the files on its state volume and then imports them exactly as ``airgap import DIR --store
--state-dir`` does (``importer.import_export`` into the store its registry serves, the bundles
into its mirrors, the replay record of ``trust.ImportRecord``).

Protocol (JSON answers; ``<id>`` is the client's name for the upload, the export's
``airgap.json`` digest, so a second run of the same export resumes it):

- ``GET /airgap/v1/uploads/<id>``: the bytes held so far per file (resume from there).
- ``PUT /airgap/v1/uploads/<id>?file=<path>&offset=N&total=T``: append the body at ``N``, which
  must be what is held (else 409 with the size held). At ``T`` bytes the file is synced and
  renamed into place: a file is either whole or still ``.partial``. ``<path>`` is one the export
  names (``airgap.json``, ``kubepkg.airgap.tar``, ``repos/<name>.bundle``).
- ``POST /airgap/v1/uploads/<id>/import``: verify and import; the answer streams one JSON
  object per line (progress, then ``{"result": ...}`` or ``{"error": ...}``). After a success
  the upload's files are removed.

Every request carries ``Authorization: Bearer <token>``: a Kubernetes token (a ServiceAccount's)
checked with a TokenReview, whose user must be allowed verb ``create`` on resource
``airgapimports`` of group ``gitops.kubepkg.dev`` in the target namespace (``?namespace=``: a
multi-tenant controller fetches the bundles into that namespace's mirrors) or else the
controller's own (a SubjectAccessReview; grant it with RBAC). Bodies are streamed to disk in chunks: memory stays
flat whatever the export's size.

Replicas: the store and the mirrors belong to one replica (deploy/ keeps them on a
ReadWriteOnce claim), so only that one takes uploads: the leader, or with ``--shards`` the holder
of shard 0 (``UploadServer``'s ``gate``, from ``controller/process.py``). Any other replica answers
every upload request 503 with ``Retry-After`` and a message naming the replica that takes them;
the CLI opens a new connection and asks again (a Service sends it to any ready replica) until it
reaches that one or ``LEADER_WAIT`` passes, then fails with that message.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gitops_kubepkg import signature
from gitops_kubepkg.access import allowed, bearer_token, review_token
from gitops_kubepkg.airgap.importer import StoreSink, import_export
from gitops_kubepkg.airgap.manifest import MANIFEST_NAME, read_manifest
from gitops_kubepkg.airgap.progress import Progress
from gitops_kubepkg.airgap.trust import (
    ImportRecord,
    manifest_sha256,
    read_manifest_bytes,
    verify_export,
)
from gitops_kubepkg.errors import GitopsKubepkgError, InputError, KubeError, SourceError
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.serving import BodyError, HardenedHandler, HardenedServer, Limits
from gitops_kubepkg.sources.mirror import mirror_dir
from gitops_kubepkg.tenancy import tenant_state_dir

log = logging.getLogger(__name__)

PREFIX = "/airgap/v1/uploads/"
GROUP = "gitops.kubepkg.dev"
RESOURCE = "airgapimports"
VERB = "create"
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_FILE = re.compile(r"^(repos/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CHUNK = 1 << 20
MAX_FILE = 1 << 40
"""The largest file one PUT may carry (1 TiB): bodies go to disk, never into memory."""


class UploadError(GitopsKubepkgError):
    """A request the endpoint refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


@dataclass(frozen=True)
class Caller:
    username: str


class Authorizer:
    """Bearer token -> caller: TokenReview, then a SubjectAccessReview on the RBAC verb."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    def check(self, authorization: str | None, namespace: str = "") -> Caller:
        """Who calls, if allowed to upload into ``namespace`` (default: the controller's)."""
        namespace = namespace or self.namespace
        token = bearer_token(authorization)
        if not token:
            raise UploadError(401, "Authorization: Bearer <Kubernetes token> required")
        try:
            user = review_token(self.kube, token)
        except KubeError as e:
            raise UploadError(503, f"cannot review the token: {e}") from e
        if user is None:
            raise UploadError(401, "the token is not valid for this cluster")
        try:
            ok = allowed(self.kube, user, VERB, RESOURCE, namespace, GROUP)
        except KubeError as e:
            raise UploadError(503, f"cannot review access: {e}") from e
        if not ok:
            where = f" in namespace {namespace}" if namespace else ""
            raise UploadError(
                403,
                f"{user.username} may not {VERB} {RESOURCE}.{GROUP}{where} (grant it with RBAC)",
            )
        return Caller(user.username)


class ProgressLines:
    """``airgap.progress.Progress`` as JSON lines to the client, at most every ``step`` bytes."""

    def __init__(self, write: Callable[[dict[str, Any]], None], step: int = 8 << 20) -> None:
        self.write = write
        self.step = step
        self.label = ""
        self.total = 0
        self.done_bytes = 0
        self._last = 0

    def start(self, label: str, total: int) -> None:
        self.label, self.total, self.done_bytes, self._last = label, total, 0, 0
        self.write({"progress": label, "bytes": 0, "total": total})

    def advance(self, n: int) -> None:
        self.done_bytes += n
        if self.done_bytes - self._last >= self.step:
            self._last = self.done_bytes
            self.write({"progress": self.label, "bytes": self.done_bytes, "total": self.total})

    def note(self, text: str) -> None:
        self.write({"note": text})

    def done(self) -> None:
        self.write({"progress": self.label, "bytes": self.done_bytes, "total": self.total})


class Uploads:
    """The upload area on the state volume and the import into the controller's store."""

    def __init__(
        self,
        state_dir: Path,
        store: Path,
        *,
        multi_tenant: bool = False,
        allowed_signers: signature.AllowedSigners | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.store = store
        self.multi_tenant = multi_tenant
        self.allowed_signers = allowed_signers
        """``controller --require-signed-imports``: every upload's airgap.json must carry a good
        signature by one of these signers (checked before anything is written)."""
        self.root = state_dir / "uploads"
        self._lock = threading.Lock()
        self._importing: set[str] = set()

    def _dir(self, upload: str) -> Path:
        if not _ID.match(upload):
            raise UploadError(400, f"upload id {upload!r}: want [a-z0-9-], at most 64")
        return self.root / upload

    def held(self, upload: str) -> dict[str, int]:
        """File -> bytes held (a whole file, or its ``.partial``)."""
        directory = self._dir(upload)
        sizes: dict[str, int] = {}
        if directory.is_dir():
            for path in directory.rglob("*"):
                if path.is_file():
                    name = path.relative_to(directory).as_posix().removesuffix(".partial")
                    sizes[name] = path.stat().st_size
        return sizes

    def write(
        self, upload: str, name: str, offset: int, total: int, body: Iterable[bytes], length: int
    ) -> dict[str, Any]:
        """Append the ``length`` bytes of ``body`` (chunks) to ``name`` at ``offset``."""
        if not _FILE.match(name) or name.endswith(".partial"):
            raise UploadError(400, f"file name {name!r} refused")
        if offset < 0 or total < 0 or offset + length > total:
            raise UploadError(
                400, f"{name}: offset {offset} + {length} bytes exceeds total {total}"
            )
        directory = self._dir(upload)
        final, partial = directory / name, directory / f"{name}.partial"
        final.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if upload in self._importing:
                raise UploadError(409, f"upload {upload} is being imported")
            if final.exists():
                size = final.stat().st_size
                if size == total and offset == total:
                    return {"file": name, "size": size, "complete": True}
                raise UploadError(409, f"{name} is already whole ({size} bytes)", size=size)
            held = partial.stat().st_size if partial.exists() else 0
            if offset != held:
                raise UploadError(
                    409, f"{name}: offset {offset}, but {held} bytes are held", size=held
                )
        with open(partial, "ab") as f:
            try:
                for chunk in body:
                    f.write(chunk)
            finally:
                # What arrived is kept (a resume continues after it), and is on disk.
                f.flush()
                os.fsync(f.fileno())
                size = f.tell()
        if size != offset + length:
            raise UploadError(400, f"{name}: the body ended early; resume at {size}", size=size)
        if size == total:
            os.replace(partial, final)
            _fsync_dir(final.parent)
        return {"file": name, "size": size, "complete": size == total}

    def run_import(
        self,
        upload: str,
        progress: ProgressLines,
        *,
        namespace: str = "",
        allow_rollback: bool = False,
    ) -> dict[str, Any]:
        """Import a whole upload; a multi-tenant controller fetches the bundles into the mirrors
        of ``namespace``'s Repositories (``tenancy.tenant_state_dir``), as ``airgap import
        --namespace`` does."""
        directory = self._dir(upload)
        if self.multi_tenant and not namespace:
            raise UploadError(
                400,
                "this controller is multi-tenant: name the namespace whose Repositories "
                "read the bundles (--namespace)",
            )
        state = tenant_state_dir(self.state_dir, namespace) if namespace else self.state_dir
        with self._lock:
            if upload in self._importing:
                raise UploadError(409, f"upload {upload} is already being imported")
            if not (directory / MANIFEST_NAME).is_file():
                raise UploadError(409, f"upload {upload} has no whole {MANIFEST_NAME} yet")
            partial = sorted(p.name for p in directory.rglob("*.partial"))
            if partial:
                raise UploadError(409, f"upload {upload} is not complete: {', '.join(partial)}")
            self._importing.add(upload)
        try:
            # airgap.json is read once: the bytes checked are the bytes imported and recorded.
            data = read_manifest_bytes(directory)
            signer = ""
            if self.allowed_signers is not None:
                signer = str(verify_export(directory, self.allowed_signers, data))
                progress.note(f"airgap.json signed by {signer}")
            manifest = read_manifest(directory / MANIFEST_NAME, data)
            sha256 = manifest_sha256(directory, data)
            records = [ImportRecord(self.store), ImportRecord(state)]
            for record in records:
                record.check(manifest.created, sha256, allow_rollback=allow_rollback)
            self.store.mkdir(parents=True, exist_ok=True)
            result = import_export(
                directory,
                StoreSink(self.store),
                mirror_for=lambda url: mirror_dir(state, url),
                progress=progress,
                allow_rollback=allow_rollback,
                manifest_data=data,
            )
            for record in records:
                record.add(
                    manifest.created,
                    sha256,
                    signer,
                    images=result.tarball.images,
                    repositories=result.repositories,
                )
        finally:
            with self._lock:
                self._importing.discard(upload)
        shutil.rmtree(directory, ignore_errors=True)
        return result.to_json()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


RETRY_AFTER = 2
"""Seconds a replica that does not take uploads tells the client to wait before asking again."""
LEADER_WAIT = 60.0
"""How long the CLI keeps asking for the replica that takes uploads (a new leader is elected
within one lease duration, 15 s by default)."""


class _Handler(HardenedHandler):
    server: UploadServer
    max_body = MAX_FILE

    def log_message(self, format: str, *args: object) -> None:
        log.debug("upload %s - %s", self.address_string(), format % args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", str(RETRY_AFTER))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str, str, dict[str, str]]:
        url = urllib.parse.urlsplit(self.path)
        if not url.path.startswith(PREFIX):
            raise UploadError(404, f"want {PREFIX}<id>[/<file>|/import]")
        upload, _, rest = url.path[len(PREFIX) :].partition("/")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        return upload, rest, query

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            if method == "GET" and self.path == "/healthz":
                self._reply(200, {"message": "ok"})
                return
            upload, rest, query = self._route()
            namespace = query.get("namespace", "")
            # Who may upload first: a caller without a valid token learns nothing, not even
            # which replica leads.
            caller = self.server.authorizer.check(self.headers.get("Authorization"), namespace)
            if self.server.gate is not None and (elsewhere := self.server.gate()):
                raise UploadError(503, elsewhere)
            uploads = self.server.uploads
            if method == "GET" and not rest:
                self._reply(200, {"upload": upload, "files": uploads.held(upload)})
            elif method == "PUT" and not rest:
                try:
                    name = query["file"]
                    offset, total = int(query.get("offset", "0")), int(query["total"])
                except (KeyError, ValueError) as e:
                    raise UploadError(400, "want ?file=PATH&offset=N&total=T") from e
                answer = uploads.write(upload, name, offset, total, self.stream_body(), length)
                self._reply(200, answer)
            elif method == "POST" and rest == "import":
                log.info("airgap import of upload %s by %s", upload, caller.username)
                self._import(upload, namespace, query.get("allowRollback") == "true")
            else:
                raise UploadError(405, f"{method} {self.path}: not part of the upload API")
        except UploadError as e:
            self.refuse_body()  # a body not (wholly) read closes the connection
            self._reply(e.status, {"message": str(e), **e.extra})
        except BodyError as e:
            self._reply(e.status, {"message": str(e)})

    def _import(self, upload: str, namespace: str, allow_rollback: bool) -> None:
        # The answer streams: no length, the connection closes at its end.
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def write(obj: dict[str, Any]) -> None:
            self.wfile.write((json.dumps(obj) + "\n").encode())
            self.wfile.flush()

        try:
            result = self.server.uploads.run_import(
                upload, ProgressLines(write), namespace=namespace, allow_rollback=allow_rollback
            )
        except UploadError as e:
            write({"error": str(e), "status": e.status})
        except GitopsKubepkgError as e:
            log.warning("airgap import of upload %s: %s", upload, e)
            write({"error": str(e)})
        else:
            write({"result": result})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")


class UploadServer(HardenedServer):
    """The upload endpoint on its own listener (``controller --upload-listen``), framed by the
    shared server library (deadlines, connection cap); bodies stream to disk chunk by chunk."""

    def __init__(
        self,
        address: tuple[str, int],
        authorizer: Authorizer,
        uploads: Uploads,
        *,
        limits: Limits | None = None,
        gate: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(address, _Handler, "airgap-uploads", limits=limits)
        self.authorizer = authorizer
        self.uploads = uploads
        self.gate = gate
        """"" when this replica takes uploads now, else why not, naming the one that does
        (None: always, a single controller)."""


def read_lines(stream: Any) -> Iterator[dict[str, Any]]:
    """The JSON lines of an import answer (the CLI side)."""
    for line in stream:
        line = line.strip()
        if line:
            value: dict[str, Any] = json.loads(line)
            yield value


# -- the client side (``airgap import DIR --to-controller URL``) --------------------------------


def export_files(directory: Path) -> list[str]:
    """What an export directory sends: ``airgap.json`` (and its signature) first, then the
    files it names. Only names it lists are sent, so nothing else in the directory leaks."""
    manifest = read_manifest(directory / MANIFEST_NAME)
    names = [MANIFEST_NAME]
    if (directory / f"{MANIFEST_NAME}.sig").is_file():
        names.append(f"{MANIFEST_NAME}.sig")
    names += [r.bundle.path for r in manifest.repositories if r.bundle is not None]
    names.append(manifest.tarball.path)
    for name in names:
        if not _FILE.match(name):
            raise InputError(f"{directory / MANIFEST_NAME}: file {name!r} cannot be uploaded")
    return names


class _Client:
    def __init__(self, url: str, token: str, *, insecure: bool, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"--to-controller {url!r}: want http[s]://HOST[:PORT]")
        self.where = url
        self.token = token
        if parts.scheme == "https":
            context = ssl.create_default_context()
            if insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self.conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout, context=context
            )
        else:
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def _fail(self, response: http.client.HTTPResponse, what: str) -> InputError:
        body = response.read().decode(errors="replace")
        try:
            message = json.loads(body).get("message") or body
        except ValueError:
            message = body
        return InputError(f"{self.where}: {what}: {response.status} {message.strip()}")

    def first_contact(
        self, path: str, progress: Progress, wait: float = LEADER_WAIT
    ) -> http.client.HTTPResponse:
        """GET ``path``; while the replica reached answers 503 (it does not take uploads), a new
        connection after its ``Retry-After``, up to ``wait`` seconds. The rest of the upload
        then goes over the connection that reached the replica that takes it."""
        deadline = time.monotonic() + wait
        while True:
            response = self.request("GET", path)
            if response.status != 503 or time.monotonic() >= deadline:
                return response
            try:
                pause = float(response.getheader("Retry-After") or RETRY_AFTER)
            except ValueError:
                pause = RETRY_AFTER
            body = response.read().decode(errors="replace")
            try:
                message = str(json.loads(body).get("message") or body).strip()
            except ValueError:
                message = body.strip()
            progress.note(f"{self.where}: {message}; asking again in {pause:g}s")
            self.conn.close()  # a new connection may reach another replica
            time.sleep(max(0.1, min(pause, deadline - time.monotonic(), 30.0)))

    def request(
        self, method: str, path: str, body: Any = None, length: int = 0
    ) -> http.client.HTTPResponse:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Length": str(length)}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            return self.conn.getresponse()
        except OSError as e:
            self.conn.close()
            raise SourceError(f"{self.where}: {method} {path}: {e}") from e


class _Counted:
    """A file body that reports what was sent."""

    def __init__(self, f: BinaryIO, left: int, progress: Progress) -> None:
        self.f, self.left, self.progress = f, left, progress

    def read(self, n: int = -1) -> bytes:
        want = self.left if n < 0 else min(n, self.left)
        data = self.f.read(min(want, _CHUNK))
        self.left -= len(data)
        self.progress.advance(len(data))
        return data


def upload_export(
    directory: Path,
    url: str,
    token: str,
    *,
    progress: Progress,
    namespace: str = "",
    allow_rollback: bool = False,
    insecure: bool = False,
    timeout: float = 600.0,
    leader_wait: float = LEADER_WAIT,
) -> dict[str, Any]:
    """Send the export to the controller (resuming what it holds), then have it imported; the
    import's result, plus what was sent and what was resumed."""
    names = export_files(directory)
    upload = manifest_sha256(directory)[:32]
    client = _Client(url, token, insecure=insecure, timeout=timeout)
    base = f"{PREFIX}{upload}"
    scope = {"namespace": namespace} if namespace else {}
    try:
        response = client.first_contact(
            f"{base}?{urllib.parse.urlencode(scope)}", progress, leader_wait
        )
        if response.status != 200:
            raise client._fail(response, "asking what the controller holds")
        held: dict[str, int] = json.loads(response.read()).get("files") or {}
        sizes = {n: (directory / n).stat().st_size for n in names}
        total = sum(sizes.values())
        resumed = sum(min(held.get(n, 0), sizes[n]) for n in names)
        progress.start("upload", total)
        progress.advance(resumed)
        for name in names:
            size, offset = sizes[name], held.get(name, 0)
            if offset > size:
                raise InputError(f"{directory / name}: the controller holds more than the file")
            with open(directory / name, "rb") as f:
                f.seek(offset)
                response = client.request(
                    "PUT",
                    f"{base}?"
                    + urllib.parse.urlencode(
                        {"file": name, "offset": offset, "total": size, **scope}
                    ),
                    body=_Counted(f, size - offset, progress),
                    length=size - offset,
                )
                if response.status != 200:
                    raise client._fail(response, f"uploading {name}")
                response.read()
        progress.done()
        query = {**scope, **({"allowRollback": "true"} if allow_rollback else {})}
        response = client.request("POST", f"{base}/import?{urllib.parse.urlencode(query)}")
        if response.status != 200:
            raise client._fail(response, "starting the import")
        result: dict[str, Any] | None = None
        for line in read_lines(response):
            if "error" in line:
                raise InputError(f"{url}: the controller refused the import: {line['error']}")
            if "note" in line:
                progress.note(str(line["note"]))
            elif "result" in line:
                result = line["result"]
            elif "progress" in line:
                progress.note(
                    f"controller: {line['progress']} {line['bytes']}/{line['total']} bytes"
                )
        if result is None:
            raise SourceError(
                f"{url}: the import ended without a result (see the controller's log)"
            )
        return {**result, "upload": {"id": upload, "bytes": total, "resumed": resumed}}
    finally:
        client.conn.close()
