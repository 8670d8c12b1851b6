"""Choosing catalog revisions, the origin record, forge requests and upgrade discovery: pure."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from gitops_kubepkg.errors import AuthError, InputError, SourceError
from gitops_kubepkg.promotion import forge, record, revisions
from gitops_kubepkg.promotion.forge import Forge
from gitops_kubepkg.promotion.upgrades import compare
from gitops_kubepkg.promotion.workspace import Deployed
from gitops_kubepkg.spec import KubePkg

REFS = {
    "refs/heads/main": "m",
    "refs/tags/web/v1.0.0": "a",
    "refs/tags/web/v1.1.0": "b",
    "refs/tags/web/v1.10.0": "c",
    "refs/tags/web/v2.0.0-rc.1": "d",
    "refs/tags/web/v2.1": "e",
    "refs/tags/apps/api/v0.3.0": "f",
    "refs/tags/beta/v0.1.0-alpha.1": "g",
}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param("web@1.2.0", ("web", "1.2.0"), id="a package and a version"),
        pytest.param(
            "web@v1.2.0", ("web", "1.2.0"), id="a leading v is the tag's, not the version's"
        ),
        pytest.param("apps/api@latest", ("apps/api", "latest"), id="a nested package at latest"),
        pytest.param("web", ("web", "latest"), id="no version means latest"),
    ],
)
def test_parse_request(text: str, want: tuple[str, str]) -> None:
    r = revisions.parse_request(text)
    assert (r.package, r.version) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "web@1.2", "'1.2' is not a semantic version", id="a version that is not semver"
        ),
        pytest.param("@1.2.0", "want PACKAGE@VERSION", id="no package"),
    ],
)
def test_parse_request_refuses(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        revisions.parse_request(text)


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        pytest.param("web@latest", "web/v1.10.0", id="latest is the highest release by semver"),
        pytest.param("web@1.1.0", "web/v1.1.0", id="an exact version"),
        pytest.param("web@2.0.0-rc.1", "web/v2.0.0-rc.1", id="a prerelease named explicitly"),
        pytest.param("apps/api@0.3.0", "apps/api/v0.3.0", id="a nested package"),
    ],
)
def test_choose(text: str, tag: str) -> None:
    assert revisions.choose(REFS, revisions.parse_request(text), "cat").tag == tag


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "nope@1.0.0",
            "cat: no package 'nope'.*it has apps/api, beta, web",
            id="an unknown package",
        ),
        pytest.param(
            "web@3.0.0",
            "no version 3.0.0.*it has 1.0.0, 1.1.0, 1.10.0, 2.0.0-rc.1",
            id="an unknown version",
        ),
        pytest.param(
            "beta@latest", "only prereleases", id="latest of a package with only prereleases"
        ),
    ],
)
def test_choose_refuses_with_what_exists(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        revisions.choose(REFS, revisions.parse_request(text), "cat")


def test_a_tag_that_is_not_semver_is_named_when_nothing_else_matches() -> None:
    refs = {"refs/tags/odd/v1.2": "x"}
    with pytest.raises(InputError, match=r"tags odd/v1.2 are not <package>/v<semver>"):
        revisions.choose(refs, revisions.parse_request("odd@1.2.0"), "cat")


@pytest.mark.parametrize(
    ("current", "pre", "want"),
    [
        pytest.param("1.0.0", False, ["1.1.0", "1.10.0"], id="releases above the current one"),
        pytest.param("1.0.0", True, ["1.1.0", "1.10.0", "2.0.0-rc.1"], id="with prereleases"),
        pytest.param("1.10.0", False, [], id="nothing newer"),
    ],
)
def test_newer(current: str, pre: bool, want: list[str]) -> None:
    assert [c.version for c in revisions.newer(REFS, "web", current, prereleases=pre)] == want


ORIGIN = record.Origin("https://git.example/catalog.git", "apps/web/v1.2.0", "c" * 40)


def test_stamp_and_origin_of_round_trip_and_unstamp_removes_only_ours() -> None:
    obj = {"metadata": {"name": "web", "annotations": {"team": "a"}}, "spec": {}}
    stamped = record.stamp(obj, ORIGIN)
    assert record.origin_of(stamped) == ORIGIN
    assert obj["metadata"]["annotations"] == {"team": "a"}  # the input is left alone
    assert record.unstamp(stamped) == obj
    assert (ORIGIN.package, ORIGIN.version) == ("apps/web", "1.2.0")


def test_make_origin_never_keeps_credentials() -> None:
    origin = record.make_origin("https://bot:s3cret@git.example/catalog.git", "web/v1.0.0", "c")
    assert origin.url == "https://git.example/catalog.git"


def test_commit_message_ends_in_trailers_that_name_the_revision() -> None:
    previous = record.Origin(ORIGIN.url, "apps/web/v1.1.0", "b" * 40)
    message = record.commit_message(
        "apps/web",
        ORIGIN,
        {"nginx:1.27": "sha256:" + "2" * 64},
        previous=previous,
        settled=["spec.replicas: ..."],
        strategy="theirs",
    )
    assert message.splitlines()[0] == "Upgrade apps/web 1.1.0 -> 1.2.0"
    assert record.trailers(message) == {
        "Promoted-From": ORIGIN.url,
        "Catalog-Tag": "apps/web/v1.2.0",
        "Catalog-Commit": "c" * 40,
        "Upgraded-From": f"apps/web/v1.1.0 {'b' * 40}",
        "Merge-Strategy": "theirs",
    }


@pytest.mark.parametrize(
    ("url", "want"),
    [
        pytest.param("https://gitlab.example.com/ops/deploy.git", Forge.GITLAB, id="a GitLab host"),
        pytest.param(
            "git@codeberg.org:ops/deploy.git", Forge.GITEA, id="Codeberg over scp-like SSH"
        ),
        pytest.param("https://forgejo.internal/ops/deploy", Forge.GITEA, id="a Forgejo host"),
        pytest.param("https://github.com/ops/deploy.git", Forge.GITHUB, id="GitHub"),
        pytest.param("git://127.0.0.1:9418/deploy.git", Forge.NONE, id="plain git"),
    ],
)
def test_forge_detection_by_host(url: str, want: Forge) -> None:
    assert forge.detect(url) == want


REQUEST = forge.Request("promote/web/1.2.0", "main", "Promote web 1.2.0", "line one\nline two")


def test_gitlab_push_options_open_a_merge_request_on_one_line_each() -> None:
    assert forge.push_options(Forge.GITLAB, REQUEST)[:4] == [
        "merge_request.create",
        "merge_request.target=main",
        "merge_request.title=Promote web 1.2.0",
        "merge_request.description=line one line two",
    ]


def test_gitea_gets_agit_options_and_ref() -> None:
    assert forge.push_options(Forge.GITEA, REQUEST)[0] == "topic=promote/web/1.2.0"
    assert forge.agit_ref(Forge.GITEA, REQUEST) == "refs/for/main"
    assert forge.agit_ref(Forge.GITLAB, REQUEST) is None
    assert forge.push_options(Forge.NONE, REQUEST) == []


@pytest.mark.parametrize(
    ("messages", "want"),
    [
        pytest.param(
            [
                "",
                "View merge request for promote/web/1.2.0:",
                "  https://gl.example/o/d/-/merge_requests/3",
            ],
            "https://gl.example/o/d/-/merge_requests/3",
            id="GitLab prints the URL on the next line",
        ),
        pytest.param(
            [
                "Visit the existing pull request:",
                "  https://gitea.example/o/d/pulls/4 merges into main",
            ],
            "https://gitea.example/o/d/pulls/4",
            id="Gitea names a pull request",
        ),
        pytest.param(["Resolving deltas: 100%"], "", id="no request mentioned"),
    ],
)
def test_request_url_from_sideband(messages: list[str], want: str) -> None:
    assert forge.request_url(messages) == want


@pytest.mark.parametrize(
    ("url", "want"),
    [
        pytest.param("https://github.com/ops/deploy.git", ("ops", "deploy"), id="https"),
        pytest.param("git@github.com:ops/deploy", ("ops", "deploy"), id="scp-like ssh"),
    ],
)
def test_github_repository(url: str, want: tuple[str, str]) -> None:
    assert forge.github_repository(url) == want


def test_github_needs_a_token() -> None:
    with pytest.raises(AuthError, match="GitHub needs a token"):
        forge.open_github_pull("http://127.0.0.1:1", "o", "r", "", REQUEST)


def deployed(path: str, version: str, tag: str | None) -> Deployed:
    pkg = KubePkg(name=path.split("/")[0], version=version, images={}, manifests={})
    doc = pkg.to_object()
    origin = record.Origin("https://cat.example/c.git", tag, "c" * 40) if tag else None
    return Deployed(path, record.stamp(doc, origin) if origin else doc, pkg, origin)


def test_compare_lists_upgrades_current_untracked_and_unreachable_catalogs() -> None:
    asked: list[str] = []

    def refs_of(url: str) -> Mapping[str, str]:
        asked.append(url)
        if "down" in url:
            raise SourceError(f"{url}: connection refused")
        return REFS

    report = compare(
        [
            deployed("web/kubepkg.json", "1.0.0", "web/v1.0.0"),
            deployed("api/kubepkg.json", "0.3.0", "apps/api/v0.3.0"),
            deployed("hand/kubepkg.json", "1.0.0", None),
        ],
        refs_of,
    )
    assert [(u.package, u.current, u.newer, u.latest) for u in report.upgrades] == [
        ("web", "1.0.0", ["1.1.0", "1.10.0"], "1.10.0")
    ]
    assert report.current == ["api/kubepkg.json"]
    assert report.untracked == ["hand/kubepkg.json"]
    assert report.problems == []

    report = compare(
        [deployed("web/kubepkg.json", "1.0.0", "web/v1.0.0")],
        refs_of,
        catalog="https://down.example/c.git",
    )
    assert [str(p) for p in report.problems] == [
        "web/kubepkg.json: https://down.example/c.git: connection refused"
    ]


def test_upgrade_rows_serialise() -> None:
    report = compare([deployed("web/kubepkg.json", "1.0.0", "web/v1.0.0")], lambda _: REFS)
    assert json.dumps([u.newer for u in report.upgrades]) == '[["1.1.0", "1.10.0"]]'
