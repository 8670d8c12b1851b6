"""Catalog discovery and PackageRevision rendering, as functions of data: no git, no cluster."""

from __future__ import annotations

import json

import pytest

from gitops_kubepkg.sources import catalog
from gitops_kubepkg.sources.catalog import Candidate, RepositoryRef, Revision

REPO = RepositoryRef("team", "catalog", uid="u-1", url="https://git.example/catalog.git")


def kubepkg(name: str, version: str) -> bytes:
    return json.dumps(
        {
            "apiVersion": "octohelm.tech/v1alpha1",
            "kind": "KubePkg",
            "metadata": {"name": name},
            "spec": {"version": version, "images": {}, "manifests": {}},
        }
    ).encode()


@pytest.mark.parametrize(
    ("refs", "directory", "want"),
    [
        pytest.param(
            {"refs/tags/web/v1.2.0": "a"}, "", [("web", "1.2.0", "web")], id="a plain tag"
        ),
        pytest.param(
            {"refs/tags/apps/web/v1.0.0-rc.1": "a"},
            "",
            [("apps/web", "1.0.0-rc.1", "apps/web")],
            id="a nested package with a prerelease",
        ),
        pytest.param(
            {"refs/tags/pkgs/web/v2.0.0": "a", "refs/tags/other/v1.0.0": "b"},
            "pkgs",
            [("web", "2.0.0", "pkgs/web")],
            id="the directory scopes packages and names them relative to it",
        ),
        pytest.param(
            {
                "refs/tags/v1.0.0": "a",
                "refs/tags/web/v1": "b",
                "refs/tags/web/1.0.0": "c",
                "refs/heads/web/v1.0.0": "d",
                "refs/tags/web/v1.0.0^{}": "e",
            },
            "",
            [],
            id="tags that are not <package>/v<semver> are ignored",
        ),
    ],
)
def test_candidates(refs: dict[str, str], directory: str, want: list[tuple[str, str, str]]) -> None:
    got = catalog.candidates(refs, directory)
    assert [(c.package, c.version, c.path) for c in got] == want


CAND = Candidate("web/v1.2.0", "web", "1.2.0", "web")


@pytest.mark.parametrize(
    ("files", "want"),
    [
        pytest.param({"kubepkg.json": kubepkg("web", "1.2.0")}, None, id="a valid JSON revision"),
        pytest.param(
            {
                "kubepkg.yaml": b"apiVersion: octohelm.tech/v1alpha1\nkind: KubePkg\nmetadata: {name: web}\nspec: {version: 1.2.0}\n"
            },
            None,
            id="a valid YAML revision",
        ),
        pytest.param(
            {"kubepkg.json": kubepkg("web", "1.1.0")},
            "web/kubepkg.json@web/v1.2.0: spec.version: '1.1.0' differs from the tag's version '1.2.0'",
            id="a version that differs from the tag is reported with file and field",
        ),
        pytest.param(
            {
                "kubepkg.json": b'{"apiVersion": "octohelm.tech/v1alpha1", "kind": "KubePkg", "metadata": {"name": "Web"}, "spec": {"version": "1.2.0"}}'
            },
            "web/kubepkg.json@web/v1.2.0: metadata.name:",
            id="an invalid KubePkg is reported with file and field",
        ),
        pytest.param({}, "no kubepkg.json or kubepkg.yaml in web/", id="no KubePkg file"),
    ],
)
def test_check_revision(files: dict[str, bytes], want: str | None) -> None:
    got = catalog.check_revision(CAND, "c" * 40, files)
    if want is None:
        assert got == Revision("web", "1.2.0", "web/v1.2.0", "c" * 40)
    else:
        assert isinstance(got, list)
        assert want in "\n".join(str(p) for p in got)


def revisions(*specs: str) -> list[Revision]:
    out = []
    for spec in specs:
        package, version = spec.split("@")
        out.append(Revision(package, version, f"{package}/v{version}", "c" * 40))
    return out


def test_latest_is_the_highest_release_not_a_prerelease() -> None:
    got = catalog.latest(revisions("web@1.2.0", "web@1.10.0", "web@2.0.0-rc.1", "db@0.1.0-alpha"))
    assert got == {"web": "1.10.0"}


def test_render_labels_latest_and_names_objects() -> None:
    objs = catalog.render(REPO, revisions("web@1.1.0", "web@1.2.0", "apps/db@0.3.0"))
    by_name = {o["metadata"]["name"]: o for o in objs}
    assert set(by_name) == {"catalog.web.v1.1.0", "catalog.web.v1.2.0", "catalog.apps.db.v0.3.0"}
    assert by_name["catalog.web.v1.2.0"]["metadata"]["labels"][catalog.LABEL_LATEST] == "true"
    assert catalog.LABEL_LATEST not in by_name["catalog.web.v1.1.0"]["metadata"]["labels"]
    spec = by_name["catalog.web.v1.2.0"]["spec"]
    assert spec == {
        "repository": "catalog",
        "packageName": "web",
        "revision": "1.2.0",
        "lifecycle": "Published",
        "commit": "c" * 40,
        "tag": "web/v1.2.0",
        "url": REPO.url,
    }
    owner = by_name["catalog.web.v1.2.0"]["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "u-1"


@pytest.mark.parametrize(
    "version", ["1.0.0-RC.1", "1.0.0+build.7", "1.0.0-x_y"], ids=lambda v: f"version {v}"
)
def test_names_are_dns_subdomains_even_for_odd_versions(version: str) -> None:
    import re

    name = catalog.revision_name("catalog", "Web_App", version)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name)
    assert name != catalog.revision_name("catalog", "web_app", version.lower() + "x")


def test_a_moved_tag_keeps_the_recorded_commit_and_is_reported() -> None:
    cand = Candidate("web/v1.0.0", "web", "1.0.0", "web")
    recorded = {"web/v1.0.0": {"spec": {"tag": "web/v1.0.0", "commit": "a" * 40}}}
    got = catalog.discover([(cand, "b" * 40)], recorded, {})
    assert got.revisions == [Revision("web", "1.0.0", "web/v1.0.0", "a" * 40)]
    assert [(m.recorded, m.now) for m in got.moved] == [("a" * 40, "b" * 40)]


def test_a_bad_revision_is_reported_and_the_others_go_on() -> None:
    good = Candidate("web/v1.0.0", "web", "1.0.0", "web")
    bad = Candidate("web/v1.1.0", "web", "1.1.0", "web")
    found = [(good, "a" * 40), (bad, "b" * 40)]
    assert catalog.needs_content(found, {}) == ["web/v1.0.0", "web/v1.1.0"]
    contents = {
        "web/v1.0.0": {"kubepkg.json": kubepkg("web", "1.0.0")},
        "web/v1.1.0": {"kubepkg.json": kubepkg("web", "1.0.0")},
    }
    got = catalog.discover(found, {}, contents)
    assert [r.version for r in got.revisions] == ["1.0.0"]
    assert len(got.problems) == 1 and "spec.version" in str(got.problems[0])


def test_plan_applies_only_what_differs_and_deletes_what_lost_its_tag() -> None:
    desired = catalog.render(REPO, revisions("web@1.0.0", "web@1.1.0"))
    old_latest = catalog.render(REPO, revisions("web@1.0.0"))[0]
    gone = catalog.render(REPO, revisions("web@0.9.0"))[0]
    got = catalog.plan(desired, [old_latest, gone])
    assert sorted(o["metadata"]["name"] for o in got.apply) == [
        "catalog.web.v1.0.0",
        "catalog.web.v1.1.0",
    ]
    assert got.delete == ["catalog.web.v0.9.0"]
    again = catalog.plan(desired, desired)
    assert again.apply == [] and again.delete == [] and again.unchanged == 2
