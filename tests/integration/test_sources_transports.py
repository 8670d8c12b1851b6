"""The mirror against real servers on loopback: file://, git daemon, smart HTTP with basic and
token auth, and SSH with a key and an enforced known_hosts. No cluster needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.errors import AuthError, SourceError
from gitops_kubepkg.sources.mirror import Mirror
from tests.integration.git_servers import git_daemon, http_server, ssh_server

pytestmark = pytest.mark.integration

Served = tuple[str, git.Credentials | None]


@pytest.fixture
def upstream(tmp_path: Path) -> git.Repository:
    repo = git.init_bare(tmp_path / "srv" / "catalog.git")
    commit = repo.commit_files("main", {"web/kubepkg.json": b"{}"}, "first")
    repo.tag("web/v1.0.0", commit, message="web 1.0.0")
    return repo


@pytest.fixture(params=["file", "git-daemon", "http-basic", "http-bearer", "http-token", "ssh"])
def served(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: git.Repository
) -> Iterator[Served]:
    root = tmp_path / "srv"
    kind = request.param
    if kind == "file":
        yield f"file://{root / 'catalog.git'}", None
    elif kind == "git-daemon":
        with git_daemon(root) as server:
            yield server.repo_url("catalog.git"), None
    elif kind.startswith("http"):
        with http_server(root, user="alice", password="pw", token="t0ken") as server:
            creds = {
                "http-basic": git.Credentials(username="alice", password="pw"),
                "http-bearer": git.Credentials(bearer_token="t0ken"),
                "http-token": git.Credentials(password="t0ken"),
            }[kind]
            yield server.repo_url("catalog.git"), creds
    else:
        with ssh_server(root, tmp_path / "ssh") as server:
            creds = git.Credentials(
                ssh_private_key=server.private_key,
                ssh_public_key=server.public_key,
                known_hosts=server.known_hosts,
            )
            yield server.repo_url("catalog.git"), creds


def test_an_idle_poll_lists_refs_and_fetches_nothing(
    served: Served, upstream: git.Repository, tmp_path: Path
) -> None:
    url, creds = served
    mirror = Mirror(tmp_path / "state", url, creds)
    first = mirror.poll()
    assert first.fetched and first.changed
    assert set(first.refs) == {"refs/heads/main", "refs/tags/web/v1.0.0"}

    idle = mirror.poll()
    assert (idle.fetched, idle.changed) == (False, False)
    assert (mirror.listings, mirror.fetches) == (2, 1)

    commit = upstream.commit_files("main", {"web/kubepkg.json": b"{ }"}, "second")
    upstream.tag("web/v1.1.0", commit)
    upstream.delete_ref("refs/tags/web/v1.0.0")
    after = mirror.poll()
    assert after.fetched and after.changed
    assert after.refs["refs/heads/main"] == commit
    assert "refs/tags/web/v1.0.0" not in after.refs, "a deleted tag is pruned from the mirror"
    assert mirror.repository().read(commit, "web/kubepkg.json") == b"{ }"


def test_http_refuses_wrong_or_missing_credentials(
    upstream: git.Repository, tmp_path: Path
) -> None:
    with http_server(tmp_path / "srv", user="alice", password="pw", token="t0ken") as server:
        url = server.repo_url("catalog.git")
        for creds in (
            None,
            git.Credentials(username="alice", password="nope"),
            git.Credentials(bearer_token="nope"),
        ):
            with pytest.raises(AuthError):
                Mirror(tmp_path / "state", url, creds).poll()


def test_ssh_enforces_known_hosts(upstream: git.Repository, tmp_path: Path) -> None:
    with ssh_server(tmp_path / "srv", tmp_path / "ssh") as server:
        url = server.repo_url("catalog.git")
        key = {"ssh_private_key": server.private_key, "ssh_public_key": server.public_key}
        with pytest.raises(AuthError, match="known_hosts"):
            git.list_remote_refs(url, git.Credentials(**key, known_hosts=server.other_known_hosts))
        with pytest.raises(AuthError, match="known_hosts"):
            git.list_remote_refs(url, git.Credentials(**key))
        ok = git.list_remote_refs(url, git.Credentials(**key, known_hosts=server.known_hosts))
        assert "refs/heads/main" in ok


def test_an_unreachable_remote_is_a_source_error_naming_it(tmp_path: Path) -> None:
    from tests.integration.git_servers import free_port

    url = f"http://127.0.0.1:{free_port()}/catalog.git"
    with pytest.raises(SourceError, match=r"127\.0\.0\.1"):
        Mirror(tmp_path / "state", url).poll()


def test_an_airgapped_mirror_is_never_fetched(upstream: git.Repository, tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'srv' / 'catalog.git'}"
    Mirror(tmp_path / "state", url).poll()
    airgapped = Mirror(tmp_path / "state", url, airgap=True)
    upstream.commit_files("main", {"other": b"x"}, "not seen")
    result = airgapped.poll()
    assert (result.fetched, airgapped.listings) == (False, 0)
    with pytest.raises(SourceError, match="airgap"):
        Mirror(tmp_path / "elsewhere", url, airgap=True).poll()


def test_a_missing_repository_whose_path_reads_like_an_auth_failure_is_a_fetch_error(
    tmp_path: Path,
) -> None:
    """libgit2 quotes the path in its message; digits such as pytest's ``pytest-403`` base
    directory, or a word like "password", in that path are not the server refusing us."""
    for name in ("pytest-403/nope.git", "401/password/credentials.git"):
        url = f"file://{tmp_path / name}"
        with pytest.raises(SourceError) as raised:
            Mirror(tmp_path / "state", url).poll()
        assert not isinstance(raised.value, AuthError), raised.value
        assert name in str(raised.value)
