"""The controller's pure parts and deploy/, without a cluster: requested syncs, the Lease
settings, metric names, JSON logs, ``get`` tables, and manifests that agree with the CLI."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.cli import build_parser
from gitops_kubepkg.cli.get import _kinds, age, header, rows
from gitops_kubepkg.cli.install import manifests
from gitops_kubepkg.controller.leader import LeaseConfig
from gitops_kubepkg.controller.logs import JsonFormatter
from gitops_kubepkg.controller.metrics import Metrics
from gitops_kubepkg.controller.repository import (
    REQUESTED_AT,
    RepositorySpec,
    SyncResult,
    pending_request,
    request_patch,
    status_patch,
)
from gitops_kubepkg.conventions import READY, Outcome
from gitops_kubepkg.errors import InputError
from gitops_kubepkg.tenancy import parse_policy

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SPEC = RepositorySpec("ns", "prod", "file:///x", "deployment", generation=1)


def repository(requested: str = "", handled: str = "") -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "prod", "namespace": "ns"}, "status": {}}
    if requested:
        obj["metadata"]["annotations"] = {REQUESTED_AT: requested}
    if handled:
        obj["status"]["lastHandledReconcileAt"] = handled
    return obj


@pytest.mark.parametrize(
    ("requested", "handled", "pending"),
    [
        ("", "", ""),
        ("t1", "", "t1"),
        ("t1", "t1", ""),
        ("t2", "t1", "t2"),
    ],
    ids=[
        "no annotation asks for nothing",
        "a first request is pending",
        "an answered request is not pending",
        "a newer request is pending again",
    ],
)
def test_a_request_is_pending_until_status_names_it(
    requested: str, handled: str, pending: str
) -> None:
    assert pending_request(repository(requested, handled)) == pending


def test_the_request_patch_sets_only_the_annotation() -> None:
    assert request_patch("t1") == {"metadata": {"annotations": {REQUESTED_AT: "t1"}}}


def test_status_acknowledges_the_request_it_answered_once() -> None:
    outcome = SyncResult("ns/prod", Outcome(READY, "Synced", "ok"), handled="t1")
    patch = status_patch(SPEC, outcome, {}, now="2024-01-01T00:00:00Z")
    assert patch is not None and patch["status"]["lastHandledReconcileAt"] == "t1"
    assert status_patch(SPEC, outcome, {"status": patch["status"]}) is None


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"),
    [(10.0, 10.0, 2.0), (15.0, 10.0, 10.0), (15.0, 10.0, 0.0), (5.0, 10.0, 2.0)],
    ids=[
        "the deadline must be shorter than the lease",
        "the retry must be shorter than the deadline",
        "the retry must be positive",
        "a lease shorter than the deadline",
    ],
)
def test_lease_settings_that_could_leave_two_leaders_are_refused(
    duration: float, deadline: float, retry: float
) -> None:
    with pytest.raises(InputError, match="--lease-duration"):
        LeaseConfig("ns", "l", "me", duration, deadline, retry).check()


def test_every_named_series_is_exposed_before_anything_happened() -> None:
    text = Metrics().exposition().decode()
    for name in [
        "gitops_kubepkg_reconcile_duration_seconds",
        "gitops_kubepkg_git_fetch_duration_seconds",
        "gitops_kubepkg_git_fetch_bytes_total",
        "gitops_kubepkg_git_polls_total",
        "gitops_kubepkg_objects_applied_total",
        "gitops_kubepkg_objects_pruned_total",
        "gitops_kubepkg_registry_requests_total",
        "gitops_kubepkg_leader",
        "process_resident_memory_bytes",
    ]:
        assert f"\n# HELP {name} " in f"\n{text}" or f"\n{name}" in text, name
    assert "_created" not in text
    assert 'gitops_kubepkg_reconcile_duration_seconds_count{kind="KubePkg",result="ready"} 0.0' in (
        text
    )


def test_json_logs_are_one_object_per_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "a %s", ("b",), None)
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert (doc["level"], doc["logger"], doc["msg"]) == ("error", "x", "a b")
    assert "ValueError: boom" in doc["error"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(5, "5s"), (119, "119s"), (120, "2m"), (7199, "119m"), (7200, "2h"), (3 * 86400, "3d")],
)
def test_ages_read_like_kubectl(seconds: int, shown: str) -> None:
    now = datetime(2024, 1, 10, tzinfo=UTC)
    created = datetime.fromtimestamp(now.timestamp() - seconds, UTC)
    assert age(created.strftime("%Y-%m-%dT%H:%M:%SZ"), now) == shown
    assert age("", now) == "<unknown>"


def test_get_tables_show_status_and_wide_adds_columns() -> None:
    kind = _kinds()["kubepkgs"]
    obj = {
        "metadata": {"name": "web", "namespace": "prod", "creationTimestamp": "x"},
        "spec": {"version": "1.1.0"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "message": "all ready"}],
            "inventory": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "namespace": "prod",
                    "names": ["web"],
                },
                {"apiVersion": "v1", "kind": "Service", "namespace": "prod", "names": ["web"]},
            ],
            "source": {"repository": "prod/deploy", "commit": "a" * 40, "path": "web/kubepkg.json"},
            "upgrade": {"version": "1.2.0", "tag": "web/v1.2.0", "repository": "prod/catalog"},
        },
    }
    assert header(kind, wide=False, namespaces=False) == [
        "NAME",
        "VERSION",
        "READY",
        "STATUS",
        "AGE",
    ]
    assert rows(kind, [obj], wide=False, namespaces=True) == [
        ["prod", "web", "1.1.0", "True", "all ready", "<unknown>"]
    ]
    wide = rows(kind, [obj], wide=True, namespaces=False)[0]
    assert wide[-5:] == ["2", "prod/deploy", "a" * 12, "web/kubepkg.json", "1.2.0"]
    kinds = _kinds()
    assert kinds["pkgrev"] is kinds["revisions"]


def test_deploy_lists_every_manifest_in_order_and_sets_the_image() -> None:
    objects = manifests(DEPLOY, "registry.example/gitops-kubepkg:1.2.3")
    kinds = [o["kind"] for o in objects]
    assert kinds[0] == "Namespace"
    assert kinds.index("CustomResourceDefinition") < kinds.index("Deployment")
    listed = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    text = (DEPLOY / "kustomization.yaml").read_text()
    assert all(name in text for name in listed), "a deploy/*.yaml file is not in the kustomization"
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/gitops-kubepkg:1.2.3"
    assert manifests(DEPLOY)[kinds.index("Deployment")]["spec"]["template"]["spec"]["containers"][
        0
    ]["image"] == ("gitops-kubepkg:0.1.0")


def test_the_deployment_runs_hardened_with_flags_the_controller_accepts() -> None:
    (deployment,) = [o for o in manifests(DEPLOY) if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert {"/var/lib/gitops-kubepkg", "/tmp"} <= set(mounts)
    args = build_parser().parse_args(container["args"])
    assert args.state_dir == Path("/var/lib/gitops-kubepkg")
    assert str(args.serve_registry).startswith("/var/lib/gitops-kubepkg/")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # One bind address per port: the Pod's IP (the kubelet expands $(POD_IP) from the env).
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if
            "valueFrom" in e}["POD_IP"] == "status.podIP"  # fmt: skip
    assert args.monitoring_listen == f"$(POD_IP):{ports['http-metrics']}"
    assert args.webhook_listen == f"$(POD_IP):{ports['webhook']}"
    assert args.registry_listen == f"$(POD_IP):{ports['registry']}"
    # Multi-tenant, and the policy file it names is the tenancy ConfigMap's, mounted.
    assert args.multi_tenant and args.local_sources is None
    assert args.default_service_account == "gitops-kubepkg"  # deploy/tenant/tenant.yaml's
    (policy,) = [o for o in manifests(DEPLOY) if o["kind"] == "ConfigMap"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    folder = str(args.tenancy_policy.parent)
    assert volumes[mounts[folder]]["configMap"]["name"] == policy["metadata"]["name"]
    assert parse_policy(policy["data"][args.tenancy_policy.name], "deploy/tenancy.yaml") == ()


def test_the_network_policy_opens_exactly_the_controllers_ports() -> None:
    objects = manifests(DEPLOY)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pod = deployment["spec"]["template"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    opened = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert opened == ports
    assert all("ports" in rule for rule in policy["spec"]["ingress"])


def test_the_controller_may_impersonate_but_holds_no_package_contents() -> None:
    objects = manifests(DEPLOY)
    (controller,) = [
        o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith(
            "controller")
    ]  # fmt: skip
    groups = {g for r in controller["rules"] for g in r["apiGroups"]}
    assert groups <= {"gitops.kubepkg.dev", "octohelm.tech", "", "events.k8s.io"}
    core = {res for r in controller["rules"] if r["apiGroups"] == [""] for res in r["resources"]}
    assert core == {"secrets", "events", "serviceaccounts", "pods"}
    (pods,) = [r for r in controller["rules"] if "pods" in r["resources"]]
    assert pods["verbs"] == ["list"]  # status only: never get, watch or write a Pod
    (impersonate,) = [r for r in controller["rules"] if "impersonate" in r["verbs"]]
    assert impersonate["resources"] == ["serviceaccounts"] and impersonate["verbs"] == [
        "impersonate"
    ]


def test_the_roles_grant_no_wildcards_and_secrets_only_by_name() -> None:
    rules = [
        rule
        for o in manifests(DEPLOY)
        if o["kind"] in ("ClusterRole", "Role")
        for rule in o["rules"]
    ]
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert [r["verbs"] for r in secrets] == [["get"]]
    cluster_wide = [
        rule for o in manifests(DEPLOY) if o["kind"] == "ClusterRole" for rule in o["rules"]
    ]
    assert not [r for r in cluster_wide if "leases" in r["resources"]], "Leases: a Role only"


def test_the_controller_only_lists_and_watches_what_tenants_may_apply() -> None:
    """The watch role (for the metadata watches of applied kinds) reads, never writes, and
    covers the tenant role's kinds and no others; no Secrets."""
    roles = {o["metadata"]["name"]: o for o in manifests(DEPLOY) if o["kind"] == "ClusterRole"}

    def kinds(role: dict[str, Any]) -> set[tuple[str, str]]:
        return {(g, res) for r in role["rules"] for g in r["apiGroups"] for res in r["resources"]}

    watch = roles["gitops-kubepkg-controller-watch"]
    assert all(r["verbs"] == ["list", "watch"] for r in watch["rules"])
    assert kinds(watch) == kinds(roles["gitops-kubepkg-tenant"])
    assert ("", "secrets") not in kinds(watch)
