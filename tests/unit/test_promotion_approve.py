"""Approval's field-by-field settling of KubePkg files git could not merge line by line: pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gitops_kubepkg.errors import MergeConflict
from gitops_kubepkg.git import ConflictedFile
from gitops_kubepkg.promotion.approve import merge_message, resolve_kubepkgs


def kubepkg(replicas: int = 1, team: str = "a") -> bytes:
    obj: dict[str, Any] = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web", "annotations": {"team": team}},
        "spec": {
            "version": "1.0.0",
            "images": {},
            "manifests": {
                "web.default.service": {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"replicas": replicas},
                }
            },
        },
    }
    return json.dumps(obj).encode()


def test_changes_to_different_fields_of_one_kubepkg_file_are_settled() -> None:
    resolved = resolve_kubepkgs(
        [ConflictedFile("web/kubepkg.json", kubepkg(), kubepkg(replicas=5), kubepkg(team="b"))]
    )
    merged = json.loads(resolved["web/kubepkg.json"] or b"")
    assert merged["metadata"]["annotations"] == {"team": "b"}
    assert merged["spec"]["manifests"]["web.default.service"]["spec"]["replicas"] == 5


@pytest.mark.parametrize(
    ("conflict", "message"),
    [
        pytest.param(
            ConflictedFile("web/kubepkg.json", kubepkg(), kubepkg(replicas=5), kubepkg(replicas=3)),
            'web/kubepkg.json: spec.manifests["web.default.service"].spec.replicas: the promotion '
            "branch says 3, the target branch says 5 (was 1)",
            id="both sides changed one field",
        ),
        pytest.param(
            ConflictedFile("README.md", b"a", b"b", b"c"),
            "README.md: both sides changed the file",
            id="a file that is not a KubePkg",
        ),
        pytest.param(
            ConflictedFile("web/kubepkg.json", None, kubepkg(), kubepkg(replicas=2)),
            "web/kubepkg.json: both sides changed the file (added",
            id="both sides added the same file",
        ),
    ],
)
def test_what_cannot_be_settled_is_listed(conflict: ConflictedFile, message: str) -> None:
    with pytest.raises(MergeConflict) as caught:
        resolve_kubepkgs([conflict])
    assert any(message in c for c in caught.value.conflicts), caught.value.conflicts


def test_the_merge_message_carries_the_promotion_s_trailers() -> None:
    branch_message = "Promote web 1.0.0\n\nbody\n\nCatalog-Tag: web/v1.0.0\nCatalog-Commit: abc\n"
    assert merge_message("promote/web/1.0.0", "main", branch_message) == (
        "Merge branch 'promote/web/1.0.0' into main\n\nPromote web 1.0.0\n\n"
        "Approved-Branch: promote/web/1.0.0\nCatalog-Tag: web/v1.0.0\nCatalog-Commit: abc\n"
    )
