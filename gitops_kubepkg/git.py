"""The one module that talks to pygit2 (libgit2): open, fetch, list remote refs, read trees.

Everything else in the project speaks in commits (hex strings), refs and bytes; pygit2's errors are
translated here into ``SourceError``/``AuthError``, with any password in a URL redacted.

Transports: file://, git://, smart HTTP(S) and SSH, all through libgit2. Credentials come as one
``Credentials`` value: username/password (or a token as the password), a bearer token sent as an
``Authorization`` header, or an SSH private key with the ``known_hosts`` lines the server's host key
must match. libgit2 checks an SSH host key against ``<homedir>/.ssh/known_hosts``; the homedir is a
process-wide libgit2 setting, so SSH operations take a lock, point the homedir at a private
directory holding only that repository's ``known_hosts``, and refuse the connection when libgit2
says the key is not in it (pygit2 alone would accept any SSH host key).

The writing half (``commit_files``, ``tag``) builds commits without a work tree: the example repos,
the tests and the benchmarks make their repositories with it.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import FetchPrune, ObjectType, Option

from gitops_kubepkg.conventions import redact_text
from gitops_kubepkg.errors import AuthError, SourceError, StaleRefError

LIBGIT2_VERSION: str = pygit2.LIBGIT2_VERSION

_SSH_LOCK = threading.Lock()
_AUTH_PATTERNS = re.compile(
    r"authenticat|credentials|status code:? ?40[13]\b|permission denied|unauthorized|"
    r"publickey|password|host key|hostkey|certificate",
    re.IGNORECASE,
)
"""What libgit2 says when the remote refused us, looked for in its message with the URL taken out
(a path such as /srv/pytest-403/password.git says nothing about credentials)."""


@dataclass(frozen=True)
class Credentials:
    """What a Repository's ``secretRef`` holds, as the transport needs it."""

    username: str = ""
    password: str = ""
    bearer_token: str = ""
    ssh_private_key: str = ""
    ssh_public_key: str = ""
    ssh_passphrase: str = ""
    known_hosts: str = ""

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Credentials(username={self.username!r}, ...)"


redact = redact_text
"""Every URL in a message without its secrets (``conventions.redact_text``)."""


def is_ssh_url(url: str) -> bool:
    return url.startswith("ssh://") or bool(re.match(r"^[\w.-]+@[\w.-]+:", url))


def ssh_host(url: str) -> tuple[str, int]:
    """Host and port of an ssh:// or scp-like URL."""
    if url.startswith("ssh://"):
        parts = urllib.parse.urlsplit(url)
        return parts.hostname or "", parts.port or 22
    return url.split("@", 1)[1].split(":", 1)[0], 22


class _Callbacks(pygit2.RemoteCallbacks):
    """Credentials for whatever the server asks, and host keys checked against known_hosts."""

    def __init__(self, url: str, credentials: Credentials | None) -> None:
        super().__init__()
        self.url = url
        self.creds = credentials or Credentials()
        self.asked = 0
        self.host_key_refused = False

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: pygit2.enums.CredentialType
    ) -> pygit2.Username | pygit2.UserPass | pygit2.KeypairFromMemory:
        self.asked += 1
        if self.asked > 3:  # libgit2 asks again after a refusal; stop instead of looping
            raise AuthError(f"{redact(self.url)}: credentials refused")
        kinds = pygit2.enums.CredentialType
        user = self.creds.username or username_from_url or "git"
        if allowed_types & kinds.SSH_KEY and self.creds.ssh_private_key:
            return pygit2.KeypairFromMemory(
                user,
                self.creds.ssh_public_key or None,
                self.creds.ssh_private_key,
                self.creds.ssh_passphrase or "",
            )
        if allowed_types & kinds.USERNAME:
            return pygit2.Username(user)
        if allowed_types & kinds.USERPASS_PLAINTEXT and self.creds.password:
            if self.asked > 1:
                raise AuthError(f"{redact(self.url)}: the server refused user {user!r}'s password")
            return pygit2.UserPass(user, self.creds.password)
        if self.creds.bearer_token:
            raise AuthError(f"{redact(self.url)}: the server refused the bearer token")
        raise AuthError(
            f"{redact(self.url)}: the server wants credentials "
            f"({_describe_kinds(allowed_types)}) and the Repository's secret has none that fit"
        )

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        # For SSH, ``valid`` is libgit2's own known_hosts verdict (see the module docstring).
        if not valid:
            self.host_key_refused = True
        return bool(valid)

    def custom_headers(self) -> list[str] | None:
        if self.creds.bearer_token:
            return [f"Authorization: Bearer {self.creds.bearer_token}"]
        return None


def _describe_kinds(allowed: int) -> str:
    kinds = pygit2.enums.CredentialType
    names = []
    if allowed & kinds.USERPASS_PLAINTEXT:
        names.append("username/password or token")
    if allowed & (kinds.SSH_KEY | kinds.SSH_MEMORY | kinds.SSH_CUSTOM):
        names.append("SSH key")
    return " or ".join(names) or "unknown kind"


def _translate(e: Exception, url: str, what: str, callbacks: _Callbacks | None) -> SourceError:
    message = redact(str(e)) or type(e).__name__
    where = f"{redact(url)}: {what}"
    if isinstance(e, SourceError):
        return e
    if callbacks is not None and callbacks.host_key_refused:
        return AuthError(
            f"{where}: the server's host key is not in the Repository secret's known_hosts "
            f"({message}); add the key (ssh-keyscan) to known_hosts"
        )
    said = message
    for part in sorted({url, redact(url), urllib.parse.urlsplit(url).path}, key=len, reverse=True):
        if part:
            said = said.replace(part, "")
    if _AUTH_PATTERNS.search(said):
        return AuthError(f"{where}: {message}")
    return SourceError(f"{where}: {message}")


class _SshHome:
    """Point libgit2's homedir at a directory whose .ssh/known_hosts is exactly ``lines``."""

    def __init__(self, known_hosts: str, url: str) -> None:
        self.known_hosts = known_hosts
        self.url = url
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._previous = ""

    def __enter__(self) -> None:
        if not self.known_hosts.strip():
            host, port = ssh_host(self.url)
            raise AuthError(
                f"{redact(self.url)}: SSH needs known_hosts in the Repository's secret "
                f"(ssh-keyscan -p {port} {host}); refusing an unverified host key"
            )
        _SSH_LOCK.acquire()
        try:
            self._dir = tempfile.TemporaryDirectory(prefix="gitops-kubepkg-ssh-")
            ssh = Path(self._dir.name) / ".ssh"
            ssh.mkdir(mode=0o700)
            (ssh / "known_hosts").write_text(self.known_hosts.strip() + "\n")
            self._previous = pygit2.option(Option.GET_HOMEDIR) or ""
            pygit2.option(Option.SET_HOMEDIR, self._dir.name)
        except BaseException:
            _SSH_LOCK.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            pygit2.option(Option.SET_HOMEDIR, self._previous or None)
            if self._dir is not None:
                self._dir.cleanup()
        finally:
            _SSH_LOCK.release()


class _NoSshHome:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _ssh_context(url: str, credentials: Credentials | None) -> _SshHome | _NoSshHome:
    if is_ssh_url(url):
        return _SshHome((credentials or Credentials()).known_hosts, url)
    return _NoSshHome()


def _anonymous_remote(repo: pygit2.Repository, url: str) -> pygit2.remotes.Remote:
    try:
        return repo.remotes.create_anonymous(url)
    except (pygit2.GitError, ValueError) as e:
        raise SourceError(f"{redact(url)}: not a git URL libgit2 understands: {e}") from e


def _list_heads(
    repo: pygit2.Repository, url: str, credentials: Credentials | None
) -> tuple[dict[str, str], str | None]:
    """The remote's refs (name -> object id) and the branch its HEAD points at, if it says."""
    callbacks = _Callbacks(url, credentials)
    with _ssh_context(url, credentials):
        try:
            remote = _anonymous_remote(repo, url)
            heads = remote.list_heads(callbacks=callbacks)
        except Exception as e:
            raise _translate(e, url, "listing refs", callbacks) from e
    out: dict[str, str] = {}
    head_branch = None
    for head in heads:
        target = head.symref_target or ""
        if head.name == "HEAD" and target.startswith("refs/heads/"):
            head_branch = target.removeprefix("refs/heads/")
        if head.symref_target or not head.name:
            continue
        out[head.name] = str(head.oid)
    return out, head_branch


def list_remote_heads(
    url: str, credentials: Credentials | None = None
) -> tuple[dict[str, str], str | None]:
    """The remote's refs as it advertises them (``git ls-remote``: name -> object id), and the
    branch its HEAD points at (what ``git clone`` checks out; None when it does not say).

    For callers without a repository: the listing runs in a throwaway one. ``Repository``'s own
    ``list_remote_refs`` needs no temporary directory.
    """
    with tempfile.TemporaryDirectory(prefix="gitops-kubepkg-ls-") as scratch:
        return _list_heads(pygit2.init_repository(scratch, bare=True), url, credentials)


def list_remote_refs(url: str, credentials: Credentials | None = None) -> dict[str, str]:
    return list_remote_heads(url, credentials)[0]


def remote_default_branch(url: str, credentials: Credentials | None = None) -> str | None:
    return list_remote_heads(url, credentials)[1]


@dataclass(frozen=True)
class Entry:
    """One blob in a tree: its path from the tree root and its object id."""

    path: str
    oid: str


class Repository:
    """A bare repository on disk. Not thread-safe: open one per thread (opening is cheap)."""

    def __init__(self, repo: pygit2.Repository, path: Path) -> None:
        self._repo = repo
        self.path = path

    # -- refs -----------------------------------------------------------------------------------

    def refs(self) -> dict[str, str]:
        """Every direct ref: name -> object id (tags are not peeled)."""
        out: dict[str, str] = {}
        try:
            for ref in self._repo.listall_reference_objects():
                target = ref.target
                if isinstance(target, pygit2.Oid):
                    out[ref.name] = str(target)
        except pygit2.GitError as e:
            raise SourceError(f"{self.path}: reading refs: {e}") from e
        return out

    def set_ref(self, name: str, oid: str, *, force: bool = True) -> None:
        try:
            self._repo.references.create(name, pygit2.Oid(hex=oid), force=force)
        except (pygit2.GitError, ValueError, KeyError) as e:
            raise SourceError(f"{self.path}: setting {name} to {oid}: {e}") from e

    def delete_ref(self, name: str) -> bool:
        try:
            self._repo.references.delete(name)
        except KeyError:
            return False
        except pygit2.GitError as e:
            raise SourceError(f"{self.path}: deleting {name}: {e}") from e
        return True

    def peel(self, oid: str) -> str:
        """The commit an object id (a commit or an annotated tag) ends at."""
        try:
            obj = self._repo.get(oid)
            if obj is None:
                raise SourceError(f"{self.path}: object {oid} is not in the repository")
            commit = obj.peel(pygit2.Commit)
        except (pygit2.GitError, ValueError, KeyError, pygit2.InvalidSpecError) as e:
            raise SourceError(f"{self.path}: {oid} is not a commit or tag of one: {e}") from e
        return str(commit.id)

    def resolve(self, ref: str) -> str | None:
        """The commit a ref (``refs/heads/main``) points at, or None when there is no such ref."""
        try:
            target = self._repo.references.get(ref)
        except (pygit2.GitError, ValueError) as e:
            raise SourceError(f"{self.path}: {ref}: {e}") from e
        if target is None:
            return None
        return self.peel(str(target.resolve().target))

    def has(self, oid: str) -> bool:
        try:
            return oid in self._repo
        except ValueError:
            return False

    # -- trees ----------------------------------------------------------------------------------

    def _tree(self, commit: str, directory: str) -> pygit2.Tree | None:
        try:
            obj = self._repo.get(commit)
            if obj is None:
                raise SourceError(f"{self.path}: commit {commit} is not in the repository")
            tree = obj.peel(pygit2.Tree)
            directory = directory.strip("/")
            if not directory:
                return tree
            try:
                sub = tree[directory]
            except KeyError:
                return None
            return sub if isinstance(sub, pygit2.Tree) else None
        except (pygit2.GitError, ValueError) as e:
            raise SourceError(f"{self.path}: reading the tree of {commit}: {e}") from e

    def walk(self, commit: str, directory: str = "") -> Iterator[Entry]:
        """Every blob below ``directory`` at ``commit``, paths relative to the repository root."""
        tree = self._tree(commit, directory)
        if tree is None:
            return
        prefix = directory.strip("/")
        stack: list[tuple[str, pygit2.Tree]] = [(prefix, tree)]
        while stack:
            base, current = stack.pop()
            for entry in current:
                path = f"{base}/{entry.name}" if base else str(entry.name)
                if entry.type == ObjectType.TREE:
                    stack.append((path, self._repo[entry.id].peel(pygit2.Tree)))
                elif entry.type == ObjectType.BLOB:
                    yield Entry(path, str(entry.id))

    def read(
        self, commit: str, path: str, *, refuse: Callable[[int], Exception | None] | None = None
    ) -> bytes | None:
        """The bytes of ``path`` at ``commit``, or None when there is no such file.

        ``refuse``: told the blob's size before it is read; an error it returns is raised."""
        tree = self._tree(commit, "")
        if tree is None:
            return None
        try:
            entry = tree[path.strip("/")]
        except KeyError:
            return None
        if entry.type != ObjectType.BLOB:
            return None
        if refuse is not None and (error := refuse(self.blob_size(str(entry.id)))):
            raise error
        return self.blob(str(entry.id))

    def blob_size(self, oid: str) -> int:
        """A blob's size from the object header, without reading (or inflating) its content."""
        try:
            _, size = self._repo.odb.read_header(oid)
        except (KeyError, ValueError, pygit2.GitError) as e:
            raise SourceError(f"{self.path}: blob {oid} is not in the repository") from e
        return int(size)

    def blob(self, oid: str) -> bytes:
        try:
            obj = self._repo[oid]
        except (KeyError, ValueError) as e:
            raise SourceError(f"{self.path}: blob {oid} is not in the repository") from e
        if not isinstance(obj, pygit2.Blob):
            raise SourceError(f"{self.path}: {oid} is not a blob")
        return bytes(obj.data)

    # -- network --------------------------------------------------------------------------------

    def list_remote_refs(self, url: str, credentials: Credentials | None = None) -> dict[str, str]:
        """The remote's advertised refs (``git ls-remote``); writes nothing here."""
        return _list_heads(self._repo, url, credentials)[0]

    def fetch(
        self,
        url: str,
        refspecs: Sequence[str],
        credentials: Credentials | None = None,
        *,
        prune: bool = True,
    ) -> int:
        """Fetch ``refspecs`` from ``url``; return the number of objects received."""
        callbacks = _Callbacks(url, credentials)
        with _ssh_context(url, credentials):
            try:
                remote = _anonymous_remote(self._repo, url)
                stats = remote.fetch(
                    list(refspecs),
                    callbacks=callbacks,
                    prune=FetchPrune.PRUNE if prune else FetchPrune.NO_PRUNE,
                )
            except Exception as e:
                raise _translate(e, url, "fetching", callbacks) from e
        return int(stats.received_objects)

    def push(
        self, url: str, refspecs: Sequence[str], credentials: Credentials | None = None
    ) -> None:
        callbacks = _Callbacks(url, credentials)
        with _ssh_context(url, credentials):
            try:
                remote = _anonymous_remote(self._repo, url)
                remote.push(list(refspecs), callbacks=callbacks)
            except Exception as e:
                raise _translate(e, url, "pushing", callbacks) from e

    # -- writing (examples, tests, benchmarks) --------------------------------------------------

    def commit_files(
        self,
        branch: str,
        files: Mapping[str, bytes | None],
        message: str,
        *,
        author: tuple[str, str] = ("gitops-kubepkg", "gitops-kubepkg@localhost"),
        timestamp: int | None = None,
        sign: Signer | None = None,
    ) -> str:
        """Commit on ``refs/heads/<branch>``: each path set to its bytes, or removed when None.

        ``sign`` turns the commit's bytes into an armored signature stored in its ``gpgsig``
        header (what ``git commit -S`` writes)."""
        ref = f"refs/heads/{branch}"
        parent = self.resolve(ref)
        base = self._repo[parent].peel(pygit2.Tree) if parent else None
        tree_id = self._write_tree(base, files)
        when = int(time.time()) if timestamp is None else timestamp
        sig = pygit2.Signature(author[0], author[1], when, 0)
        parents = [pygit2.Oid(hex=parent)] if parent else []
        try:
            if sign is None:
                oid = self._repo.create_commit(ref, sig, sig, message, tree_id, parents)
            else:
                oid = _signed_commit(self._repo, sig, message, tree_id, parents, sign)
                self._repo.references.create(ref, oid, force=True)
        except pygit2.GitError as e:
            raise SourceError(f"{self.path}: committing to {branch}: {e}") from e
        if self._repo.head_is_unborn:
            self._repo.set_head(ref)
        return str(oid)

    def _write_tree(
        self, base: pygit2.Tree | None, files: Mapping[str, bytes | None]
    ) -> pygit2.Oid:
        here: dict[str, bytes | None] = {}
        below: dict[str, dict[str, bytes | None]] = {}
        for path, data in files.items():
            head, _, rest = path.strip("/").partition("/")
            if rest:
                below.setdefault(head, {})[rest] = data
            else:
                here[head] = data
        builder = self._repo.TreeBuilder(base) if base is not None else self._repo.TreeBuilder()
        for name, data in here.items():
            if data is None:
                if base is not None and name in base:
                    builder.remove(name)
            else:
                builder.insert(name, self._repo.create_blob(data), pygit2.enums.FileMode.BLOB)
        for name, sub in below.items():
            existing = None
            if base is not None and name in base:
                obj = self._repo[base[name].id]
                existing = obj if isinstance(obj, pygit2.Tree) else None
            sub_id = self._write_tree(existing, sub)
            if len(self._repo[sub_id].peel(pygit2.Tree)) == 0:
                if base is not None and name in base:
                    builder.remove(name)
            else:
                builder.insert(name, sub_id, pygit2.enums.FileMode.TREE)
        return builder.write()

    def tag(self, name: str, commit: str, *, message: str = "", force: bool = False) -> str:
        """Create ``refs/tags/<name>`` at ``commit``: annotated when a message is given."""
        ref = f"refs/tags/{name}"
        try:
            if force:
                self.delete_ref(ref)
            if message:
                sig = pygit2.Signature("gitops-kubepkg", "gitops-kubepkg@localhost")
                oid = self._repo.create_tag(
                    name, pygit2.Oid(hex=commit), ObjectType.COMMIT, sig, message
                )
                return str(oid)
            self._repo.references.create(ref, pygit2.Oid(hex=commit))
        except (pygit2.GitError, ValueError) as e:
            raise SourceError(f"{self.path}: tagging {name}: {e}") from e
        return commit


Signer = Callable[[bytes], str]
"""Bytes of a commit -> its armored signature (SSHSIG, namespace ``git``)."""


def _signed_commit(
    repo: pygit2.Repository,
    sig: pygit2.Signature,
    message: str,
    tree: pygit2.Oid,
    parents: Sequence[pygit2.Oid],
    sign: Signer,
) -> pygit2.Oid:
    # pygit2's stubs say Oid; the call returns the commit's text (``git cat-file commit``).
    content = str(
        repo.create_commit_string(sig, sig, message, tree, list[str | pygit2.Oid](parents))
    )
    signature = sign(content.encode("utf-8"))
    return repo.create_commit_with_signature(content, signature.rstrip("\n"))


@dataclass(frozen=True)
class SignedObject:
    """A commit or annotated tag: what it says is signed, and the signature (None: unsigned)."""

    oid: str
    kind: str
    """``commit`` or ``tag``."""
    payload: bytes
    signature: bytes | None


_SIGNATURE_START = re.compile(rb"^-----BEGIN (PGP|SSH) SIGNATURE-----$", re.MULTILINE)


def signed_object(repo: Repository, oid: str) -> SignedObject:
    """The signature of a commit (its ``gpgsig`` header) or an annotated tag (the armored block
    that ends its message), and the bytes it signs, as ``git verify-commit``/``verify-tag`` read
    them. A lightweight tag is its commit's name: ask for the commit."""
    obj = _lookup(repo, oid)
    if isinstance(obj, pygit2.Commit):
        signature, payload = obj.gpg_signature
        if signature is None:
            return SignedObject(oid, "commit", bytes(obj.read_raw()), None)
        return SignedObject(oid, "commit", bytes(payload), bytes(signature))
    if isinstance(obj, pygit2.Tag):
        raw = bytes(obj.read_raw())
        starts = list(_SIGNATURE_START.finditer(raw))
        if not starts:
            return SignedObject(oid, "tag", raw, None)
        at = starts[-1].start()
        return SignedObject(oid, "tag", raw[:at], raw[at:])
    raise SourceError(f"{repo.path}: {oid} is neither a commit nor an annotated tag")


def _lookup(repo: Repository, oid: str) -> pygit2.Object:
    """The object ``oid`` names; SourceError naming the repository when it is not there."""
    try:
        obj = repo._repo.get(oid)
    except (ValueError, pygit2.GitError) as e:
        raise SourceError(f"{repo.path}: {oid}: {e}") from e
    if obj is None:
        raise SourceError(f"{repo.path}: object {oid} is not in the repository")
    return obj


def signed_object_kind(repo: Repository, oid: str) -> str:
    """``commit``, ``tag`` (annotated), ``tree`` or ``blob``: what an object id names."""
    obj = _lookup(repo, oid)
    return str(obj.type_str)


def open_bare(path: Path) -> Repository:
    try:
        return Repository(pygit2.Repository(str(path)), path)
    except (pygit2.GitError, KeyError) as e:
        raise SourceError(f"{path}: not a git repository: {e}") from e


def init_bare(path: Path, *, initial_branch: str = "main") -> Repository:
    try:
        repo = pygit2.init_repository(str(path), bare=True, initial_head=initial_branch)
    except pygit2.GitError as e:
        raise SourceError(f"{path}: cannot create a bare repository: {e}") from e
    return Repository(repo, path)


def open_or_init_bare(path: Path) -> Repository:
    """Open the bare repository at ``path``, creating it when the directory has none yet."""
    if (path / "HEAD").exists():
        return open_bare(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return init_bare(path)


# -- promotion -------------------------------------------------------------------------------------
# What promotion and approval need beyond reading: merge commits, and pushes that are a
# compare-and-swap per ref (a lease), with push options for forges and the server's messages kept
# (GitLab and Gitea print the merge request's URL there).

ZERO_OID = "0" * 40


@dataclass(frozen=True)
class RefUpdate:
    """Set ``ref`` on the remote to ``new`` (None deletes it), only if it now holds ``expected``.

    ``expected`` None means the ref must not exist yet. The check runs inside the push's own
    connection, on the refs the server advertised, and the server applies each update only if the
    ref still holds that old value under its lock: no update is ever lost to a concurrent push.
    """

    ref: str
    new: str | None
    expected: str | None


@dataclass(frozen=True)
class PushResult:
    """Refs the server refused (ref -> its reason) and what it printed on the sideband."""

    rejected: Mapping[str, str]
    messages: Sequence[str]


class _LeaseCallbacks(_Callbacks):
    def __init__(
        self, url: str, credentials: Credentials | None, updates: Sequence[RefUpdate]
    ) -> None:
        super().__init__(url, credentials)
        self.expected = {u.ref: u.expected or ZERO_OID for u in updates}
        self.rejected: dict[str, str] = {}
        self.messages: list[str] = []

    def push_negotiation(self, updates: list[pygit2.remotes.PushUpdate]) -> None:
        for update in updates:
            want = self.expected.get(update.dst_refname)
            have = str(update.src)
            if want is not None and have != want:
                raise StaleRefError(
                    f"{redact(self.url)}: {update.dst_refname} is at "
                    f"{'nothing' if have == ZERO_OID else have[:12]}, expected "
                    f"{'nothing' if want == ZERO_OID else want[:12]}: someone pushed meanwhile",
                    ref=update.dst_refname,
                    expected=want,
                    actual=have,
                )

    def push_update_reference(self, refname: str, message: str | None) -> None:
        if message:
            self.rejected[refname] = message

    def sideband_progress(self, string: str) -> None:
        self.messages.extend(line for line in re.split(r"[\r\n]+", string) if line.strip())


def push_with_lease(
    repo: Repository,
    url: str,
    updates: Sequence[RefUpdate],
    credentials: Credentials | None = None,
    *,
    push_options: Sequence[str] = (),
    extra: Sequence[tuple[str, str]] = (),
) -> PushResult:
    """Push ``updates`` as compare-and-swaps (see ``RefUpdate``); raise StaleRefError if one moved.

    ``extra`` are (commit, remote ref) pairs pushed without a lease, for refs the server consumes
    rather than stores as they are (Gitea's AGit ``refs/for/<branch>``). ``push_options`` go to the
    server's hooks (``git push -o``). Refs the server refused are in the result, not raised:
    the caller knows which refusal matters.
    """
    callbacks = _LeaseCallbacks(url, credentials, updates)
    local: list[str] = []
    specs: list[str] = []
    try:
        for i, (commit, ref) in enumerate(
            [(u.new, u.ref) for u in updates] + [(c, r) for c, r in extra]
        ):
            if commit is None:
                specs.append(f":{ref}")
                continue
            # libgit2 pushes from a local ref, not an object id: name each commit for the push.
            name = f"refs/gitops-kubepkg/push/{i}"
            repo.set_ref(name, commit)
            local.append(name)
            specs.append(f"+{name}:{ref}")
        with _ssh_context(url, credentials):
            try:
                remote = _anonymous_remote(repo._repo, url)
                remote.push(specs, callbacks=callbacks, push_options=list(push_options) or None)
            except Exception as e:
                raise _translate(e, url, "pushing", callbacks) from e
    finally:
        for name in local:
            repo.delete_ref(name)
    return PushResult(dict(callbacks.rejected), list(callbacks.messages))


def merge_base(repo: Repository, a: str, b: str) -> str | None:
    """The best common ancestor of two commits, or None when their histories never meet."""
    try:
        base = repo._repo.merge_base(pygit2.Oid(hex=a), pygit2.Oid(hex=b))
    except (pygit2.GitError, ValueError, KeyError) as e:
        raise SourceError(f"{repo.path}: merge base of {a[:12]} and {b[:12]}: {e}") from e
    return str(base) if base is not None else None


def is_ancestor(repo: Repository, ancestor: str, descendant: str) -> bool:
    """Whether ``ancestor`` is ``descendant`` or reachable from it."""
    return ancestor == descendant or merge_base(repo, ancestor, descendant) == ancestor


@dataclass(frozen=True)
class ConflictedFile:
    """One file both sides changed in ways git cannot merge line by line; None where absent."""

    path: str
    base: bytes | None
    ours: bytes | None
    theirs: bytes | None


def _merge_index(repo: Repository, ours: str, theirs: str) -> pygit2.Index:
    base = merge_base(repo, ours, theirs)
    try:
        ancestor = repo._repo[base].peel(pygit2.Tree) if base else repo._repo.TreeBuilder().write()
        return repo._repo.merge_trees(
            ancestor,
            repo._repo[ours].peel(pygit2.Tree),
            repo._repo[theirs].peel(pygit2.Tree),
        )
    except (pygit2.GitError, ValueError, KeyError) as e:
        raise SourceError(f"{repo.path}: merging {theirs[:12]} into {ours[:12]}: {e}") from e


def merge_conflicts(repo: Repository, ours: str, theirs: str) -> list[ConflictedFile]:
    """The files a merge of ``theirs`` into ``ours`` leaves conflicted (empty: it merges clean)."""
    index = _merge_index(repo, ours, theirs)
    if index.conflicts is None:
        return []

    def data(entry: pygit2.IndexEntry | None) -> bytes | None:
        return repo.blob(str(entry.id)) if entry is not None else None

    out = []
    for base, mine, other in index.conflicts:
        path = next(e.path for e in (mine, other, base) if e is not None)
        out.append(ConflictedFile(path, data(base), data(mine), data(other)))
    return sorted(out, key=lambda c: c.path)


def commit_merge(
    repo: Repository,
    ours: str,
    theirs: str,
    message: str,
    *,
    resolved: Mapping[str, bytes | None] | None = None,
    author: tuple[str, str] = ("gitops-kubepkg", "gitops-kubepkg@localhost"),
    timestamp: int | None = None,
    sign: Signer | None = None,
) -> str:
    """A merge commit of ``theirs`` into ``ours`` (parents in that order), written to no ref.

    ``resolved`` gives the content of each conflicted file (None removes it); a conflict left
    without one raises SourceError naming the files.
    """
    resolved = resolved or {}
    index = _merge_index(repo, ours, theirs)
    try:
        for path, content in resolved.items():
            if index.conflicts is not None and _conflicted(index, path):
                del index.conflicts[path]
            if content is None:
                index.remove(path)
            else:
                blob = repo._repo.create_blob(content)
                index.add(pygit2.IndexEntry(path, blob, pygit2.enums.FileMode.BLOB))
        if index.conflicts is not None:
            left = sorted({next(e.path for e in c if e is not None) for c in index.conflicts})
            raise SourceError(
                f"{repo.path}: merging {theirs[:12]} into {ours[:12]} leaves conflicts in "
                f"{', '.join(left)}"
            )
        tree = index.write_tree(repo._repo)
        when = int(time.time()) if timestamp is None else timestamp
        sig = pygit2.Signature(author[0], author[1], when, 0)
        parents = [pygit2.Oid(hex=ours), pygit2.Oid(hex=theirs)]
        if sign is None:
            oid = repo._repo.create_commit(None, sig, sig, message, tree, parents)
        else:
            oid = _signed_commit(repo._repo, sig, message, tree, parents, sign)
    except (pygit2.GitError, ValueError, KeyError) as e:
        raise SourceError(f"{repo.path}: writing the merge of {theirs[:12]}: {e}") from e
    return str(oid)


def _conflicted(index: pygit2.Index, path: str) -> bool:
    conflicts = index.conflicts
    return conflicts is not None and any(
        e is not None and e.path == path for c in conflicts for e in c
    )


def commit_message(repo: Repository, commit: str) -> str:
    try:
        obj = repo._repo[commit].peel(pygit2.Commit)
    except (pygit2.GitError, ValueError, KeyError) as e:
        raise SourceError(f"{repo.path}: {commit} is not a commit: {e}") from e
    return str(obj.message)


def commit_author(repo: Repository, commit: str) -> tuple[str, str]:
    """``(name, email)`` of a commit's author."""
    try:
        obj = repo._repo[commit].peel(pygit2.Commit)
    except (pygit2.GitError, ValueError, KeyError) as e:
        raise SourceError(f"{repo.path}: {commit} is not a commit: {e}") from e
    return str(obj.author.name), str(obj.author.email)
