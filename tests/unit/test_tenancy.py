"""The tenancy policy and the source rules, without a cluster: grants by namespace and kind, the
policy file's errors, local URLs, the hosts a Secret's credentials may go to, and how a live
object that is not ours names its owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitops_kubepkg.controller.sync import hosts_allow, url_host
from gitops_kubepkg.errors import InputError
from gitops_kubepkg.reconcile.apply import owner_of
from gitops_kubepkg.tenancy import Grant, Tenancy, is_local_url, load_policy, parse_policy

POLICY = """
grants:
  - namespace: platform
    kinds: [ClusterRole, rbac.authorization.k8s.io/ClusterRoleBinding]
    namespaces: [platform-*]
  - namespace: "*"
    kinds: [PriorityClass]
"""


def test_grants_are_by_namespace_and_kind() -> None:
    tenancy = Tenancy(multi_tenant=True, grants=parse_policy(POLICY, "p.yaml"))
    rbac = "rbac.authorization.k8s.io/v1"
    assert tenancy.allows_kind("platform", rbac, "ClusterRole")
    assert tenancy.allows_kind("platform", rbac, "ClusterRoleBinding")
    assert not tenancy.allows_kind("platform", "other.io/v1", "ClusterRoleBinding")
    assert not tenancy.allows_kind("team-a", rbac, "ClusterRole")
    assert tenancy.allows_kind("team-a", "scheduling.k8s.io/v1", "PriorityClass")
    assert tenancy.allows_namespace("platform", "platform-dev")
    assert tenancy.allows_namespace("team-a", "team-a")
    assert not tenancy.allows_namespace("team-a", "team-b")
    assert not tenancy.allows_namespace("platform", "kube-system")
    assert "grants it kinds [PriorityClass]" in tenancy.describe_grants("team-a")


def test_single_tenant_mode_enforces_no_grant() -> None:
    tenancy = Tenancy()
    assert tenancy.allows_kind("team-a", "rbac.authorization.k8s.io/v1", "ClusterRole")
    assert tenancy.allows_namespace("team-a", "team-b")


def test_the_service_account_is_the_kubepkgs_or_the_default() -> None:
    tenancy = Tenancy(multi_tenant=True, default_service_account="deployer")
    assert tenancy.service_account({"gitops.kubepkg.dev/service-account": "web"}) == "web"
    assert tenancy.service_account({}) == "deployer"
    assert tenancy.service_account(None) == "deployer"
    assert Tenancy(multi_tenant=True).service_account({}) == ""


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("grants: {}", "grants: want a list"),
        ("rules: []", "want a mapping with one key, grants"),
        ("grants: [{kinds: [X]}]", "grants[0].namespace: required"),
        ("grants: [{namespace: a, kind: [X]}]", "grants[0].kind: unknown field"),
        ("grants: [{namespace: a, kinds: X}]", "grants[0].kinds: want a list of names"),
        ("grants: [", "not YAML"),
    ],
)
def test_a_bad_policy_is_one_line_naming_the_field(text: str, error: str) -> None:
    with pytest.raises(InputError, match=error.replace("[", r"\[").replace("]", r"\]")) as e:
        parse_policy(text, "tenancy policy p.yaml")
    assert str(e.value).startswith("tenancy policy p.yaml: ")


def test_an_empty_or_missing_policy(tmp_path: Path) -> None:
    assert parse_policy("", "p") == ()
    assert parse_policy("grants: []", "p") == ()
    with pytest.raises(InputError, match=r"tenancy policy .*none\.yaml: No such file"):
        load_policy(tmp_path / "none.yaml")
    (tmp_path / "p.yaml").write_text("grants: [{namespace: a}]")
    assert load_policy(tmp_path / "p.yaml") == (Grant("a"),)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("file:///srv/git/b.git", True),
        ("FILE:///x", True),
        ("/var/lib/gitops-kubepkg/mirrors/b.git", True),
        ("../b.git", True),
        ("https://git.example/b.git", False),
        ("ssh://git@git.example/b.git", False),
        ("git@git.example:team/b.git", False),
        ("git://git.example/b.git", False),
    ],
)
def test_local_urls(url: str, local: bool) -> None:
    assert is_local_url(url) is local


def test_a_secret_goes_only_to_the_hosts_it_names() -> None:
    assert url_host("https://user@Git.Example:8443/x.git") == ("git.example", 8443)
    assert url_host("git@git.example:team/x.git") == ("git.example", None)
    assert hosts_allow("git.example", "https://git.example/x.git")
    assert hosts_allow("other.example, git.example", "ssh://git@git.example/x.git")
    assert hosts_allow("other.example\ngit.example:8443", "https://git.example:8443/x")
    assert not hosts_allow("git.example:8443", "https://git.example/x")
    assert not hosts_allow("git.example", "https://git.example.evil.test/x.git")
    assert not hosts_allow("git.example", "https://evil.test/git.example/x.git")
    assert not hosts_allow("", "https://git.example/x.git")


def test_the_owner_of_an_object_that_is_not_ours_is_named() -> None:
    other = {
        "metadata": {
            "labels": {
                "gitops.kubepkg.dev/package": "app",
                "gitops.kubepkg.dev/package-namespace": "team-b",
            }
        }
    }
    assert owner_of(other) == "belongs to KubePkg team-b/app"
    by_hand = {
        "metadata": {
            "managedFields": [{"manager": "kubectl-create"}, {"manager": "kubectl-edit"}],
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1"}],
        }
    }
    assert owner_of(by_hand) == (
        "exists and is not this package's (owned by ReplicaSet web-1; field managers "
        "kubectl-create, kubectl-edit)"
    )


def test_catalog_credentials_go_only_to_the_catalog_the_operator_named() -> None:
    from gitops_kubepkg import git
    from gitops_kubepkg.promotion.upgrades import credentials_for

    secret = git.Credentials(username="ops", password="catalog-password")
    named = "https://catalog.example/c.git"
    assert credentials_for(named, named, secret) is secret
    assert credentials_for("https://evil.test/c.git", named, secret) is None
    assert credentials_for("https://evil.test/c.git", "", secret) is None
    assert credentials_for(named, named, None) is None
