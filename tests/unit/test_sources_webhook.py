"""Webhook signature checks for each forge, and the backoff and interval arithmetic: pure."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from gitops_kubepkg.controller.repository import (
    RepositorySpec,
    SyncResult,
    parse_interval,
    status_patch,
)
from gitops_kubepkg.conventions import ERROR, READY, Outcome
from gitops_kubepkg.errors import InputError
from gitops_kubepkg.sources import webhook

SECRET = b"s3cret"
BODY = b'{"ref": "refs/tags/web/v1.2.0"}'
SIG = hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        pytest.param({"X-Hub-Signature-256": f"sha256={SIG}"}, True, id="GitHub signature"),
        pytest.param({"X-Hub-Signature-256": f"sha256={SIG[:-1]}0"}, False, id="GitHub wrong"),
        pytest.param({"X-Hub-Signature-256": f"sha1={SIG}"}, False, id="GitHub other algorithm"),
        pytest.param({"X-Gitea-Signature": SIG}, True, id="Gitea signature"),
        pytest.param({"X-Forgejo-Signature": SIG}, True, id="Forgejo signature"),
        pytest.param({"X-Forgejo-Signature": "00"}, False, id="Forgejo wrong"),
        pytest.param({"X-Gitlab-Token": "s3cret"}, True, id="GitLab token"),
        pytest.param({"X-Gitlab-Token": "s3cre"}, False, id="GitLab wrong token"),
        pytest.param({}, False, id="no signature at all"),
    ],
)
def test_verify(headers: dict[str, str], ok: bool) -> None:
    assert webhook.verify(headers, BODY, SECRET) is ok


def test_an_empty_secret_verifies_nothing() -> None:
    assert not webhook.verify({"X-Gitlab-Token": ""}, BODY, b"")


@pytest.mark.parametrize(
    ("headers", "push"),
    [
        ({"X-GitHub-Event": "push"}, True),
        ({"X-GitHub-Event": "ping"}, False),
        ({"X-Gitlab-Event": "Tag Push Hook"}, True),
        ({"X-Gitea-Event": "create"}, True),
        ({"X-Gitea-Event": "issues"}, False),
        ({}, True),
    ],
)
def test_is_push(headers: dict[str, str], push: bool) -> None:
    assert webhook.is_push(headers, BODY) is push


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("500ms", 0.5)]
)
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1d", "0s", "5 m"])
def test_parse_interval_refuses(text: str) -> None:
    with pytest.raises(InputError, match="interval"):
        parse_interval(text)


SPEC = RepositorySpec("team", "cat", "file:///x", "catalog", generation=3)


def test_status_patch_is_none_when_the_status_already_says_it() -> None:
    outcome = SyncResult(
        "team/cat", Outcome(READY, "Synced", "2 revisions"), commit="a" * 40, package_count=1
    )
    first = status_patch(SPEC, outcome, {}, now="2024-01-01T00:00:00Z")
    assert first is not None
    assert first["status"]["conditions"][0]["reason"] == "Synced"
    assert status_patch(SPEC, outcome, first) is None


def test_a_failure_keeps_the_last_commit_and_says_why() -> None:
    good = SyncResult("team/cat", Outcome(READY, "Synced", "ok"), commit="a" * 40, package_count=1)
    live = status_patch(SPEC, good, {}, now="2024-01-01T00:00:00Z")
    assert live is not None
    bad = SyncResult("team/cat", Outcome(ERROR, "FetchFailed", "connection refused"))
    patch = status_patch(SPEC, bad, live, now="2024-01-02T00:00:00Z")
    assert patch is not None
    ready = patch["status"]["conditions"][0]
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == (
        "False",
        "FetchFailed",
        "2024-01-02T00:00:00Z",
    )
    assert "lastFetchedCommit" not in patch["status"]
