"""``make demo`` end to end: scripts/demo.py as a user runs it, on its own control plane.

It must exit 0, say what it applied (PackageRevisions, the promotion, KubePkgs, objects) and stop
every process it started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_the_demo_runs_the_whole_flow_and_stops_what_it_started(tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--summary-json", str(summary_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    summary = json.loads(summary_file.read_text())

    revisions = {(r["package"], r["revision"]): r["latest"] for r in summary["packageRevisions"]}
    assert revisions == {
        ("redis", "6.2.0"): False,
        ("redis", "7.0.0"): True,
        ("web", "1.0.0"): False,
        ("web", "1.1.0"): True,
        ("web", "1.2.0-rc.1"): False,
    }
    promotion = summary["promotion"]
    assert (promotion["package"], promotion["from"], promotion["to"]) == ("redis", "6.2.0", "7.0.0")
    kubepkgs = summary["kubepkgs"]
    assert {name: k["version"] for name, k in kubepkgs.items()} == {
        "redis": "7.0.0",
        "web": "1.1.0",
    }
    assert kubepkgs["redis"]["commit"] == promotion["merged"], "redis from the merge"
    # The merge did not change web's file: web is not re-applied and keeps the commit that did.
    assert len(kubepkgs["web"]["commit"]) == 40 and kubepkgs["web"]["commit"] != promotion["merged"]
    assert {name: k["ready"] for name, k in kubepkgs.items()} == {"redis": "True", "web": "True"}
    objects = {(o["kind"], o["namespace"], o["name"]): o for o in summary["objects"]}
    assert set(objects) == {
        ("Deployment", "gitops-demo", "redis"),
        ("Deployment", "gitops-demo", "web"),
        ("Service", "gitops-demo", "web"),
    }
    assert all(o["exists"] for o in objects.values())
    assert objects[("Deployment", "gitops-demo", "redis")]["images"] == [
        "docker.io/library/redis:7.0-alpine"
    ], "the promoted version is what runs"

    text = out.stdout
    for line in [
        "==> summary",
        "  PackageRevisions (5), from the catalog's tags:",
        "  KubePkgs (2), from the deployment repository:",
        "  Objects applied (3):",
        "    Deployment gitops-demo/redis (KubePkg redis)  image docker.io/library/redis:7.0-alpine",
        "==> stopping the local control plane",
        "==> demo done",
    ]:
        assert line in text.splitlines(), line
    # Everything it started is gone: the control plane's state directory names its processes.
    work = next(
        line.split("KUBECONFIG=", 1)[1].rsplit("/cluster/", 1)[0]
        for line in text.splitlines()
        if "control plane up: KUBECONFIG=" in line
    )
    assert not Path(work).exists(), "the demo removes its work directory"
    leftovers = subprocess.run(["pgrep", "-f", work], capture_output=True, text=True)
    assert leftovers.stdout == "", f"processes left running: {leftovers.stdout}"
