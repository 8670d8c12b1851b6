"""The record a pass leaves on a KubePkg: source, history, consistency, revision names. Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gitops_kubepkg.conventions import READY, STALLED, Outcome
from gitops_kubepkg.promotion.record import Origin, stamp, unstamp
from gitops_kubepkg.reconcile.status import KubePkgStatus, same_status
from gitops_kubepkg.sources.catalog import RepositoryRef
from gitops_kubepkg.sources.deployment import catalog_images_of, desired, source_of
from gitops_kubepkg.spec.record import (
    Revision,
    applied_revision,
    check_record,
    find_revision,
    history_of,
    next_history,
    spec_digest,
)

DIGEST = "sha256:" + "a" * 64


def applied(version: str, commit: str = "c" * 40, result: str = "Ready") -> Revision:
    spec = {"version": version, "images": {"nginx:1": DIGEST}}
    return Revision(0, version, spec_digest(spec), "2026-01-01T00:00:00Z", result, commit,
                    "apps/web/kubepkg.json", {"nginx:1": DIGEST})  # fmt: skip


def test_new_content_starts_an_entry_with_the_next_id_newest_first() -> None:
    history = next_history([], applied("1.0.0"))
    history = next_history(history, applied("1.1.0"))
    assert [(r.id, r.version) for r in history] == [(2, "1.1.0"), (1, "1.0.0")]


def test_the_same_content_at_a_later_commit_keeps_the_entry_and_updates_only_the_result() -> None:
    first = next_history([], applied("1.0.0", "1" * 40, "Progressing"))
    again = next_history(first, applied("1.0.0", "2" * 40, "Ready"))
    assert len(again) == 1
    assert (again[0].id, again[0].commit, again[0].result) == (1, "1" * 40, "Ready")


def test_history_is_bounded_in_entries_and_in_bytes() -> None:
    history: list[Revision] = []
    for minor in range(30):
        history = next_history(history, applied(f"1.{minor}.0"), limit=10)
    assert [r.id for r in history] == list(range(30, 20, -1))
    small = next_history(history, applied("2.0.0"), limit=10, max_bytes=1000)
    assert len(json.dumps([r.to_dict() for r in small])) <= 1000
    assert small[0].version == "2.0.0" and 1 <= len(small) < 10


def test_history_reads_back_from_status_and_skips_entries_it_cannot_read() -> None:
    history = next_history([], applied("1.0.0"))
    status = {"history": [r.to_dict() for r in history] + [{"version": "no id"}, "junk"]}
    assert history_of(status) == history


@pytest.mark.parametrize(
    ("wanted", "version"),
    [("1", "1.0.0"), ("2", "1.1.0"), ("1.0.0", "1.0.0"), ("v1.1.0", "1.1.0"),
     ("2222222", "1.1.0"), ("nothing", None)],
)  # fmt: skip
def test_a_revision_is_named_by_id_version_or_commit(wanted: str, version: str | None) -> None:
    history = next_history(next_history([], applied("1.0.0", "1" * 40)), applied("1.1.0", "2" * 40))
    found = find_revision(history, wanted)
    assert (found.version if found else None) == version


def test_applied_revision_names_branch_and_commit_or_the_version_for_a_hand_applied_kubepkg() -> (
    None
):
    assert applied_revision({"branch": "main", "commit": "abc"}, "1.0.0") == "main@sha1:abc"
    assert applied_revision({}, "1.0.0") == "1.0.0"


def test_consistency_names_unpinned_images_and_a_catalog_tag_of_another_version() -> None:
    assert check_record("1.0.0", {"nginx:1": DIGEST}, "web/v1.0.0") == []
    reasons = [f.reason for f in check_record("1.0.1", {"nginx:1": ""}, "web/v1.0.0")]
    assert reasons == ["UnpinnedImages", "VersionMismatch"]
    assert check_record("1.0.0", {"nginx@" + DIGEST: ""}, "") == [], "a ref with @ is pinned"
    other = "sha256:" + "b" * 64
    (mismatch,) = check_record("1.0.0", {"nginx:1": other}, "web/v1.0.0", {"nginx:1": DIGEST})
    assert mismatch.reason == "DigestMismatch"
    assert f"nginx:1 is {other} here, {DIGEST} in the catalog" in mismatch.message
    assert check_record("1.0.0", {"nginx:1": DIGEST}, "web/v1.0.0", {"nginx:1": DIGEST}) == []


def test_promote_stamps_the_catalog_images_and_unstamp_removes_them() -> None:
    origin = Origin("https://git.example/catalog.git", "web/v1.0.0", "c" * 40)
    obj: dict[str, Any] = {"metadata": {"name": "web"}, "spec": {}}
    stamped = stamp(obj, origin, {"nginx:1": DIGEST})
    assert catalog_images_of(stamped) == {"nginx:1": DIGEST}
    assert unstamp(stamped) == obj
    assert catalog_images_of(stamp(obj, origin)) is None


def test_status_keeps_history_and_revision_when_a_pass_applies_nothing() -> None:
    history = next_history([], applied("1.0.0"))
    ok = KubePkgStatus(
        Outcome(READY, "ReconciliationSucceeded", "ok"), 1, version="1.0.0",
        revision="main@sha1:abc", history=history, findings=[],
    ).to_status({})  # fmt: skip
    stalled = KubePkgStatus(Outcome(STALLED, "InvalidKubePkg", "bad"), 2).to_status(ok)
    assert stalled["history"] == ok["history"]
    assert stalled["lastAppliedRevision"] == "main@sha1:abc"
    assert stalled["lastAppliedVersion"] == "1.0.0"
    consistent = [c for c in ok["conditions"] if c["type"] == "Consistent"]
    assert consistent and consistent[0]["status"] == "True"
    assert same_status(ok, KubePkgStatus(
        Outcome(READY, "ReconciliationSucceeded", "ok"), 1, version="1.0.0",
        revision="main@sha1:abc", history=next_history(history, applied("1.0.0")), findings=[],
    ).to_status(ok)), "a pass with nothing new computes the same status"  # fmt: skip


def test_the_sync_annotates_url_without_credentials_and_branch_and_status_source_reads_them() -> (
    None
):
    repo = RepositoryRef("prod", "deploy", url="https://bot:s3cret@git.example/deploy.git")
    doc: dict[str, Any] = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {
            "name": "web",
            "annotations": {
                "gitops.kubepkg.dev/catalog-url": "https://x:tok@git.example/catalog.git",
                "gitops.kubepkg.dev/catalog-tag": "web/v1.0.0",
                "gitops.kubepkg.dev/catalog-commit": "d" * 40,
            },
        },
        "spec": {"version": "1.0.0", "images": {}, "manifests": {}},
    }
    want = desired(repo, "e" * 40, {"apps/web/kubepkg.json": json.dumps(doc).encode()},
                   branch="main")  # fmt: skip
    assert source_of(want.objects[0]) == {
        "repository": "prod/deploy",
        "url": "https://git.example/deploy.git",
        "branch": "main",
        "commit": "e" * 40,
        "path": "apps/web/kubepkg.json",
        "catalogUrl": "https://git.example/catalog.git",
        "catalogTag": "web/v1.0.0",
        "catalogCommit": "d" * 40,
    }
    assert "s3cret" not in json.dumps(want.objects[0])
