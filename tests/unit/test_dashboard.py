"""The dashboard's pure parts: what each JSON view says of given objects, the flags it refuses,
and deploy/'s wiring of it. The endpoints themselves are tested against the local control plane
(tests/integration/test_dashboard_api.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kubepkg.cli import build_parser
from gitops_kubepkg.dashboard import views
from gitops_kubepkg.dashboard.server import check_listen
from gitops_kubepkg.errors import InputError

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def kubepkg(*conditions: dict[str, str], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team", "name": "web"},
        "spec": {"version": "1.2.0"},
        "status": {"conditions": list(conditions), **status},
    }


def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("conditions", "suspended", "health"),
    [
        ([cond("Ready", "True", "Ready")], False, "Ready"),
        ([cond("Ready", "False", "Progressing"), cond("Reconciling", "True", "Progressing")],
         False, "Progressing"),
        ([cond("Ready", "False", "ApplyFailed"), cond("Reconciling", "True", "ApplyFailed")],
         False, "Degraded"),
        ([cond("Ready", "False", "HealthCheckTimeout"), cond("Stalled", "True", "HealthCheckTimeout")],
         False, "Stalled"),
        ([cond("Ready", "False", "RenderFailed")], False, "Degraded"),
        ([], False, "Unknown"),
        ([cond("Ready", "True", "Ready")], True, "Suspended"),
    ],
    ids=["ready", "rolling out", "a failed pass retried", "stalled", "not ready", "no status yet",
         "its repository is suspended"],
)  # fmt: skip
def test_a_kubepkg_health_follows_its_conditions(
    conditions: list[dict[str, str]], suspended: bool, health: str
) -> None:
    assert views.health(kubepkg(*conditions), suspended)[0] == health


def test_the_overview_redacts_urls_counts_health_and_lists_upgrades() -> None:
    repo = {
        "metadata": {"namespace": "team", "name": "prod"},
        "spec": {"type": "deployment", "url": "https://bob:hunter2@git.example.com/d.git",
                 "suspend": False},
        "status": {"lastFetchedCommit": "c" * 40, "lastSyncTime": "2026-11-30T10:00:00Z",
                   "conditions": [cond("Ready", "False", "FetchFailed",
                                       "fetch https://bob:hunter2@git.example.com/d.git: 500")]},
    }  # fmt: skip
    pkg = kubepkg(
        cond("Ready", "True", "Ready", "1 objects ready"),
        source={"repository": "team/prod", "commit": "c" * 40, "path": "apps/web/kubepkg.json"},
        upgrade={"version": "1.3.0", "tag": "web/v1.3.0", "repository": "team/catalog"},
        lastAppliedVersion="1.2.0",
        inventory=[{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "team",
                    "names": ["a", "b"]}],
    )  # fmt: skip
    doc = views.overview([repo], [pkg], lambda ns, name: ("replica-1", 3))
    assert "hunter2" not in repr(doc), "no credentials in URLs or messages"
    [row] = doc["repositories"]
    assert row["ready"] == "False" and row["reason"] == "FetchFailed"
    assert row["url"].startswith("https://") and "git.example.com/d.git" in row["url"]
    [p] = doc["kubepkgs"]
    assert (p["health"], p["objects"], p["owner"], p["shard"]) == ("Ready", 2, "replica-1", 3)
    assert doc["upgrades"] == [{"namespace": "team", "name": "web", "version": "1.2.0",
                                "available": "1.3.0", "tag": "web/v1.3.0",
                                "repository": "team/catalog"}]  # fmt: skip
    assert doc["counts"]["kubepkgs"]["Ready"] == 1
    assert doc["counts"]["repositories"] == {"Ready": 0, "NotReady": 1, "Suspended": 0}


def test_the_inventory_tree_carries_each_objects_recorded_health() -> None:
    pkg = kubepkg(
        cond("Ready", "False", "Progressing"),
        inventory=[{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "team",
                    "names": ["web"]},
                   {"apiVersion": "v1", "kind": "Secret", "namespace": "team", "names": ["key"]}],
        resources=[{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "team",
                    "name": "web", "state": "InProgress", "message": "1/2 replicas updated"}],
    )  # fmt: skip
    tree = views.inventory_tree(pkg, "Progressing", "")
    assert [(c["kind"], c["name"], c["health"], c["message"]) for c in tree["children"]] == [
        ("Deployment", "web", "InProgress", "1/2 replicas updated"),
        ("Secret", "key", "Current", ""),
    ]
    assert set(tree["children"][1]) == {"apiVersion", "kind", "namespace", "name", "health",
                                        "message", "children"}, "a Secret: its name, no data"  # fmt: skip


def test_events_are_the_kubepkgs_and_its_objects_newest_first() -> None:
    pkg = kubepkg(inventory=[{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "team",
                              "names": ["web"]}])  # fmt: skip

    def event(kind: str, name: str, at: str, namespace: str = "team") -> dict[str, Any]:
        return {"type": "Normal", "reason": "R", "message": f"{kind} {name}",
                "involvedObject": {"kind": kind, "namespace": namespace, "name": name},
                "lastTimestamp": at}  # fmt: skip

    events = [
        event("KubePkg", "web", "2026-11-30T10:00:00Z"),
        event("ConfigMap", "web", "2026-11-30T11:00:00Z"),
        event("ConfigMap", "other", "2026-11-30T12:00:00Z"),
        event("KubePkg", "web", "2026-11-30T13:00:00Z", namespace="elsewhere"),
    ]
    assert [e["message"] for e in views.events_for(pkg, events)] == ["ConfigMap web", "KubePkg web"]


def test_the_catalog_groups_revisions_and_warns_of_a_moved_tag() -> None:
    def revision(version: str, created: str, *, latest: bool = False, moved: bool = False) -> Any:
        return {
            "metadata": {"namespace": "team", "name": f"catalog-web-{version}",
                         "creationTimestamp": created,
                         "labels": {"gitops.kubepkg.dev/latest": "true"} if latest else {}},
            "spec": {"repository": "catalog", "packageName": "web", "revision": version,
                     "tag": f"web/v{version}", "commit": "a" * 40, "lifecycle": "Published"},
            "status": {"conditions": [cond("Ready", "True", "Published")]
                       + ([cond("TagMoved", "True", "TagMoved", "tag web/v1.0.0 moved")]
                          if moved else [])},
        }  # fmt: skip

    doc = views.catalog(
        [revision("1.0.0", "2026-11-01T00:00:00Z", moved=True),
         revision("1.1.0", "2026-11-02T00:00:00Z", latest=True)]
    )  # fmt: skip
    [package] = doc["packages"]
    assert package["repository"] == "team/catalog" and package["latest"] == "1.1.0"
    assert [r["version"] for r in package["revisions"]] == ["1.1.0", "1.0.0"]
    assert doc["warnings"] == [{"repository": "team/catalog", "package": "web",
                                "tag": "web/v1.0.0", "message": "tag web/v1.0.0 moved"}]  # fmt: skip


@pytest.mark.parametrize("listen", ["127.0.0.1:9494", "[::1]:9494", "localhost:9494"])
def test_without_auth_a_loopback_address_is_accepted(listen: str) -> None:
    check_listen(listen, no_auth=True)


@pytest.mark.parametrize("listen", ["0.0.0.0:9494", ":9494", "10.0.0.5:9494", "[::]:9494"])
def test_without_auth_any_other_address_is_refused_naming_the_flag(listen: str) -> None:
    with pytest.raises(InputError, match=r"--dashboard-no-auth.*loopback"):
        check_listen(listen, no_auth=True)
    check_listen(listen, no_auth=False)


def test_deploy_serves_the_dashboard_behind_a_service_with_auth() -> None:
    docs = [
        d for p in sorted(DEPLOY.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d
    ]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args.dashboard_listen == f"$(POD_IP):{ports['dashboard']}"
    assert not args.dashboard_no_auth
    services = [
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("dashboard")
    ]
    assert [p["targetPort"] for s in services for p in s["spec"]["ports"]] == ["dashboard"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dashboard-listen", "0.0.0.0:9494", "--dashboard-no-auth"], "loopback"),
        (["--dashboard-listen", "127.0.0.1:9494", "--once"], "not with --once"),
        (["--dashboard-actions"], "need --dashboard-listen"),
        (["--dashboard-listen", "nonsense"], "--dashboard-listen 'nonsense'"),
        (["--dashboard-listen", "127.0.0.1:0", "--dashboard-tls-cert", "c.pem"], "go together"),
    ],
    ids=[
        "no auth off loopback",
        "with --once",
        "actions without a listener",
        "a bad address",
        "a certificate without its key",
    ],
)
def test_dashboard_flags_that_cannot_work_are_one_line_errors(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gitops_kubepkg.cli import main

    code = main(
        ["controller", "--state-dir", str(tmp_path), "--kubeconfig", "/nonexistent", *flags]
    )
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err


def test_slots_refuse_past_the_per_viewer_and_total_caps_and_free_on_give() -> None:
    from gitops_kubepkg.dashboard.server import _Slots

    slots = _Slots(3, 2, "live streams", "close a tab")
    assert slots.take("a") == "" and slots.take("a") == ""
    assert "at most 2 live streams at once per user; close a tab" in slots.take("a")
    assert slots.take("b") == ""
    assert "too many live streams at once (3)" in slots.take("c")
    slots.give("a")
    assert slots.take("c") == "" and slots.count() == 3


def test_the_import_record_keeps_what_an_import_brought_and_reads_older_records(
    tmp_path: Path,
) -> None:
    import json

    from gitops_kubepkg.airgap.trust import RECORD_NAME, ImportRecord

    (tmp_path / RECORD_NAME).write_text(
        json.dumps({"imports": [{"created": "2026-01-01T00:00:00Z", "sha256": "b" * 64,
                                 "signer": "", "imported": "2026-01-02T00:00:00Z"}]})
    )  # fmt: skip
    record = ImportRecord(tmp_path)
    record.add("2026-02-01T00:00:00Z", "c" * 64, "ops", images={"web:1": "sha256:" + "d" * 64},
               repositories=["https://git.example.com/b.git", "https://git.example.com/a.git"])  # fmt: skip
    old, new = record.entries()
    assert (old.images, old.repositories) == ({}, ())
    assert "images" not in old.to_json(), "an older entry is written back as it was"
    assert new.images == {"web:1": "sha256:" + "d" * 64}
    assert new.repositories == ("https://git.example.com/a.git", "https://git.example.com/b.git")


def test_a_bad_dashboard_certificate_is_named_by_its_flag(tmp_path: Path) -> None:
    from gitops_kubepkg.registry.server import tls_context

    (tmp_path / "cert.pem").write_text("not a certificate")
    with pytest.raises(
        InputError, match=r"^--dashboard-tls-cert .*cert\.pem / --dashboard-tls-key"
    ):
        tls_context(tmp_path / "cert.pem", tmp_path / "cert.pem", "--dashboard-tls")
