"""Deployment lifecycle decisions (sources.lifecycle) and PackageRevisionResources content."""

from __future__ import annotations

import json
from typing import Any

import yaml

from gitops_kubepkg.controller.resources import content, package_path
from gitops_kubepkg.sources.catalog import RepositoryRef
from gitops_kubepkg.sources.lifecycle import (
    Branch,
    branch_name,
    new_revision,
    plan,
    promotion_branches,
)

C1, C2 = "1" * 40, "2" * 40


def revision(
    lifecycle: str,
    *,
    generation: int = 1,
    observed: int | None = 1,
    seen: str = "",
    package: str = "web",
    version: str = "1.2.0",
    commit: str = C1,
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if seen:
        status["lifecycle"] = seen
    return {
        "metadata": {"name": f"deploy.{package}.v{version}", "generation": generation},
        "spec": {
            "repository": "deploy",
            "packageName": package,
            "revision": version,
            "lifecycle": lifecycle,
            "commit": commit,
        },
        "status": status,
    }


def test_promotion_branches_are_semver_branches_under_promote() -> None:
    refs = {
        "refs/heads/main": C1,
        "refs/heads/promote/web/1.2.0": C1,
        "refs/heads/promote/apps/api/2.0.0-rc.1": C2,
        "refs/heads/promote/web/not-a-version": C2,
        "refs/heads/feature/x": C2,
        "refs/tags/promote/web/1.0.0": C2,
    }
    found = promotion_branches(refs)
    assert sorted(found) == [("apps/api", "2.0.0-rc.1"), ("web", "1.2.0")]
    assert found[("apps/api", "2.0.0-rc.1")].name == "promote/apps/api/2.0.0-rc.1"
    assert branch_name("web", "1.2.0") == "promote/web/1.2.0"


def test_a_branch_nobody_recorded_becomes_a_new_proposed_revision() -> None:
    branches = promotion_branches({"refs/heads/promote/web/1.2.0": C1})
    decided = plan([], branches, lambda _: False)
    assert decided.create == [Branch("web", "1.2.0", C1)]
    obj = new_revision(
        RepositoryRef("ns", "deploy", "uid-1"), decided.create[0], "main", "web/v1.2.0"
    )
    assert obj["metadata"]["name"] == "deploy.web.v1.2.0"
    assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert obj["spec"] == {
        "repository": "deploy",
        "packageName": "web",
        "revision": "1.2.0",
        "lifecycle": "Proposed",
        "commit": C1,
        "target": "main",
        "tag": "web/v1.2.0",
    }


def test_proposed_asked_through_the_api_without_a_branch_is_promoted_once() -> None:
    asked = revision("Proposed", generation=1, observed=None)
    assert plan([asked], {}, lambda _: False).promote == [asked]
    # Once acted on (failed or not), the same generation is not promoted again.
    tried = revision("Proposed", generation=1, observed=1)
    assert plan([tried], {}, lambda _: False).promote == []


def test_published_patched_onto_a_proposed_revision_is_approved() -> None:
    branches = promotion_branches({"refs/heads/promote/web/1.2.0": C1})
    patched = revision("Published", generation=3, observed=2, seen="Proposed")
    decided = plan([patched], branches, lambda _: False)
    assert decided.publish == [(patched, branches[("web", "1.2.0")])]
    assert decided.observe == []


def test_created_already_published_does_not_merge() -> None:
    branches = promotion_branches({"refs/heads/promote/web/1.2.0": C1})
    created = revision("Published", generation=1, observed=None)
    decided = plan([created], branches, lambda _: False)
    assert decided.publish == []
    [(obj, _branch, note)] = decided.observe
    assert obj is created and "Published was set before" in note
    # Without a branch there is nothing to publish, and it says so.
    decided = plan([created], {}, lambda _: False)
    assert decided.publish == [] and decided.refused[0][1].startswith("no open promotion branch")


def test_a_gone_branch_is_published_when_merged_and_removed_when_abandoned() -> None:
    merged = revision("Proposed", seen="Proposed", package="web", commit=C1)
    abandoned = revision("Proposed", seen="Proposed", package="api", commit=C2)
    decided = plan([merged, abandoned], {}, lambda obj: obj["spec"]["commit"] == C1)
    assert decided.merged == [merged]
    assert decided.gone == [abandoned]
    # A revision already Published for this repository stays as it is.
    done = revision("Published", seen="Published")
    assert plan([done], {}, lambda _: False) == plan([], {}, lambda _: False)


def test_package_path_prefers_spec_path_then_the_tag() -> None:
    assert package_path({"spec": {"path": "/apps/web/", "tag": "x/v1.0.0"}}) == "apps/web"
    assert (
        package_path({"spec": {"tag": "charts/web/v1.0.0", "packageName": "web"}}) == "charts/web"
    )
    assert package_path({"spec": {"packageName": "web"}}) == "web"


KUBEPKG = {
    "apiVersion": "octohelm.tech/v1alpha1",
    "kind": "KubePkg",
    "metadata": {"name": "web", "namespace": "apps"},
    "spec": {
        "version": "1.2.0",
        "manifests": {
            "cm": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "web"},
                "data": {"mode": "blue"},
            }
        },
    },
}


def test_content_holds_the_file_and_what_it_renders() -> None:
    text = json.dumps(KUBEPKG)
    got = content({"kubepkg.json": text}, "catalog:web@abc")
    assert got["resources"] == {"kubepkg.json": text}
    [obj] = list(yaml.safe_load_all(got["rendered"]))
    assert (obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]) == (
        "ConfigMap",
        "web",
        "apps",
    )
    assert "truncated" not in got and "renderError" not in got


def test_content_names_a_file_that_does_not_render() -> None:
    bad = json.dumps({**KUBEPKG, "spec": {"version": "1.2.0", "bogus": 1}})
    got = content({"kubepkg.json": bad}, "catalog:web@abc")
    assert "catalog:web@abc/kubepkg.json" in got["renderError"]
    assert "bogus" in got["renderError"]
    assert "rendered" not in got


def test_content_is_bounded() -> None:
    text = json.dumps(KUBEPKG)
    # Room for the file but not for the rendered objects: the rendering is left out.
    got = content({"kubepkg.json": text}, "w", limit=len(text) + 10)
    assert got["truncated"] is True and got["resources"] == {"kubepkg.json": text}
    assert "rendered" not in got
    # Not even room for the file: its text is left out too, its name stays.
    got = content({"kubepkg.json": text}, "w", limit=10)
    assert got == {"resources": {"kubepkg.json": ""}, "truncated": True}


def test_a_repository_names_its_forge_or_is_told_which_field_is_wrong() -> None:
    import pytest

    from gitops_kubepkg.controller.repository import parse
    from gitops_kubepkg.errors import InputError

    obj: dict[str, Any] = {
        "metadata": {"name": "prod", "namespace": "apps"},
        "spec": {"url": "https://git.example/d.git", "type": "deployment"},
    }
    assert parse(obj).forge == "auto"
    obj["spec"]["forge"] = "gitea"
    assert parse(obj).forge == "gitea"
    obj["spec"]["forge"] = "bitbucket"
    with pytest.raises(InputError, match=r"Repository apps/prod: spec.forge: want one of"):
        parse(obj)


def test_drafts_are_draft_branches_and_proposing_one_is_a_request() -> None:
    from gitops_kubepkg.sources.lifecycle import draft_branches

    refs = {"refs/heads/draft/web/1.2.0": C1, "refs/heads/draft/api/1.0.0": C2}
    drafts = draft_branches(refs)
    assert drafts[("web", "1.2.0")] == Branch("web", "1.2.0", C1, draft=True)
    assert drafts[("web", "1.2.0")].name == "draft/web/1.2.0"
    # Pushed by the CLI and not recorded yet: a new Draft revision.
    decided = plan([], {}, lambda _: False, drafts)
    assert [b.name for b in decided.create] == ["draft/api/1.0.0", "draft/web/1.2.0"]
    obj = new_revision(RepositoryRef("ns", "deploy"), drafts[("web", "1.2.0")], "main", "")
    assert obj["spec"]["lifecycle"] == "Draft"
    # Patched from Draft to Proposed: propose it.
    patched = revision("Proposed", generation=2, observed=1, seen="Draft")
    decided = plan([patched], {}, lambda _: False, drafts)
    assert decided.propose == [(patched, drafts[("web", "1.2.0")])]
    # Seen Draft, not changed: observed as a draft.
    quiet = revision("Draft", seen="Draft")
    decided = plan([quiet], {}, lambda _: False, drafts)
    assert decided.observe == [(quiet, drafts[("web", "1.2.0")], "")]
    # Published straight from a draft: refused, it is proposed first.
    rushed = revision("Published", generation=2, observed=1, seen="Draft")
    [(_, _, note)] = plan([rushed], {}, lambda _: False, drafts).observe
    assert "proposed before it is published" in note
    # Asked for Draft with no branch: promote --draft; its draft branch deleted later: gone.
    asked = revision("Draft", observed=None)
    assert plan([asked], {}, lambda _: False).promote == [asked]
    assert plan([quiet], {}, lambda _: True).gone == [quiet], "a draft is never merged"


def test_a_proposal_does_not_go_back_to_draft() -> None:
    branches = promotion_branches({"refs/heads/promote/web/1.2.0": C1})
    back = revision("Draft", generation=2, observed=1, seen="Proposed")
    [(_, _, note)] = plan([back], branches, lambda _: False).observe
    assert "does not go back to Draft" in note
