"""Deployment sync as a function of files and live objects: what to apply, delete and keep."""

from __future__ import annotations

import json

from gitops_kubepkg.sources import deployment
from gitops_kubepkg.sources.catalog import RepositoryRef

REPO = RepositoryRef("team", "prod")


def kubepkg(name: str, version: str, namespace: str = "") -> bytes:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return json.dumps(
        {
            "apiVersion": "octohelm.tech/v1alpha1",
            "kind": "KubePkg",
            "metadata": meta,
            "spec": {"version": version},
        }
    ).encode()


def test_kubepkg_paths_skip_hidden_directories_and_other_files() -> None:
    paths = ["web/kubepkg.json", ".git/kubepkg.json", "db/kubepkg.yaml", "README.md", "x/y.json"]
    assert deployment.kubepkg_paths(paths) == ["db/kubepkg.yaml", "web/kubepkg.json"]
    assert deployment.kubepkg_paths(paths, "web") == ["web/kubepkg.json"]


def test_desired_objects_carry_repository_commit_and_path() -> None:
    got = deployment.desired(REPO, "c" * 40, {"web/kubepkg.json": kubepkg("web", "1.0.0")})
    (obj,) = got.objects
    assert obj["metadata"]["namespace"] == "team"
    assert obj["metadata"]["annotations"] == {
        deployment.ANNOTATION_REPOSITORY: "team/prod",
        deployment.ANNOTATION_COMMIT: "c" * 40,
        deployment.ANNOTATION_PATH: "web/kubepkg.json",
        deployment.ANNOTATION_SOURCE_PROBLEM: "",  # the file reads
    }
    assert obj["metadata"]["labels"][deployment.LABEL_REPOSITORY] == "prod"


def test_a_duplicate_kubepkg_is_reported_and_the_first_kept() -> None:
    files = {"a/kubepkg.json": kubepkg("web", "1.0.0"), "b/kubepkg.json": kubepkg("web", "2.0.0")}
    got = deployment.desired(REPO, "c" * 40, files)
    assert [o["spec"]["version"] for o in got.objects] == ["1.0.0"]
    assert "also defined in a/kubepkg.json" in str(got.problems[0])


def test_plan_deletes_only_ours_whose_file_is_gone_and_keeps_unreadable_ones() -> None:
    old = deployment.desired(
        REPO,
        "a" * 40,
        {
            "web/kubepkg.json": kubepkg("web", "1.0.0"),
            "db/kubepkg.json": kubepkg("db", "1.0.0"),
            "cache/kubepkg.json": kubepkg("cache", "1.0.0"),
        },
    ).objects
    foreign = json.loads(kubepkg("manual", "1.0.0"))
    foreign["metadata"]["namespace"] = "team"
    files = {"web/kubepkg.json": kubepkg("web", "1.1.0"), "cache/kubepkg.json": b"{not json"}
    want = deployment.desired(REPO, "b" * 40, files)
    got = deployment.plan(REPO, want, [*old, foreign])
    assert [o["metadata"]["name"] for o in got.apply] == ["web"]
    assert got.delete == [("team", "db")]
    assert got.kept == [("team", "cache")]
    assert want.problems and "cache/kubepkg.json" in str(want.problems[0])


def test_an_unchanged_branch_plans_nothing() -> None:
    files = {"web/kubepkg.json": kubepkg("web", "1.0.0")}
    want = deployment.desired(REPO, "a" * 40, files)
    got = deployment.plan(REPO, want, want.objects)
    assert got.apply == [] and got.delete == [] and got.kept == []


def test_a_commit_reapplies_only_the_kubepkgs_whose_content_it_changed() -> None:
    before = {
        "web/kubepkg.json": kubepkg("web", "1.0.0"),
        "db/kubepkg.json": kubepkg("db", "2.0.0"),
    }
    live = deployment.desired(REPO, "a" * 40, before).objects
    after = {**before, "web/kubepkg.json": kubepkg("web", "1.1.0")}
    got = deployment.plan(REPO, deployment.desired(REPO, "b" * 40, after), live)
    assert [o["metadata"]["name"] for o in got.apply] == ["web"], "db did not change"
    assert got.apply[0]["metadata"]["annotations"][deployment.ANNOTATION_COMMIT] == "b" * 40
    moved = {
        "web/kubepkg.json": before["web/kubepkg.json"],
        "db2/kubepkg.json": before["db/kubepkg.json"],
    }
    got = deployment.plan(REPO, deployment.desired(REPO, "c" * 40, moved), live)
    assert [o["metadata"]["name"] for o in got.apply] == ["db"], "a moved file is a change"


def test_a_kubepkg_being_deleted_is_not_written_until_it_is_gone() -> None:
    files = {"web/kubepkg.json": kubepkg("web", "1.0.0"), "db/kubepkg.json": kubepkg("db", "1.0.0")}
    live = deployment.desired(REPO, "a" * 40, files).objects
    live[0]["metadata"]["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    changed = {name: kubepkg(name.split("/")[0], "2.0.0") for name in files}
    got = deployment.plan(REPO, deployment.desired(REPO, "b" * 40, changed), live)
    assert got.terminating == [("team", live[0]["metadata"]["name"])]
    assert [o["metadata"]["name"] for o in got.apply] == [live[1]["metadata"]["name"]]
    assert got.delete == [] and got.kept == []
