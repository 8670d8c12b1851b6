"""Promotion against real remotes: bare repositories served by ``git daemon`` and smart HTTP.

The CLI runs as a user runs it (``gitops_kubepkg.cli.main``; racing approvals as separate
processes). A "push" by someone else is a commit written straight into the served repository.
Forges are stood in for only where they can be honestly: push options and AGit refs recorded by a
real ``pre-receive`` hook, and a local HTTP server that checks GitHub's pull-request call in full.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kubepkg import git
from gitops_kubepkg.cli import main
from tests.integration.git_servers import (
    free_port,
    git_daemon,
    http_server,
    ssh_server,
)

pytestmark = pytest.mark.integration

DIGEST_1 = "sha256:" + "1" * 64
DIGEST_2 = "sha256:" + "2" * 64
DIGEST_3 = "sha256:" + "3" * 64
REPO_ROOT = Path(__file__).resolve().parents[2]


def kubepkg(
    name: str,
    version: str,
    *,
    replicas: int = 1,
    tag: str = "1.25",
    digest: str = DIGEST_1,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    image = f"docker.io/library/nginx:{tag}"
    container: dict[str, Any] = {"name": "web", "image": image}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "images": {image: digest},
            "manifests": {
                f"{name}.default.deployment": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {"containers": [container]},
                        },
                    },
                }
            },
        },
    }


def encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def publish(catalog: git.Repository, package: str, obj: dict[str, Any]) -> str:
    """Commit the package on the catalog's main and tag ``<package>/v<version>``."""
    version = obj["spec"]["version"]
    commit = catalog.commit_files(
        "main", {f"{package}/kubepkg.json": encode(obj)}, f"{package} {version}"
    )
    catalog.tag(f"{package}/v{version}", commit, message=f"{package} {version}")
    return commit


@contextlib.contextmanager
def writable_git_daemon(root: Path) -> Iterator[str]:
    """``git daemon`` serving ``root`` with pushes allowed; yields its base URL."""
    with git_daemon(root, writable=True) as server:
        yield server.url


class Remotes:
    """A served catalog and deployment repository, and ways to run the CLI against them."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root
        self.base = base_url
        self.catalog = git.open_bare(root / "catalog.git")
        self.deployment = git.open_bare(root / "deploy.git")

    @property
    def catalog_url(self) -> str:
        return f"{self.base}/catalog.git"

    @property
    def deployment_url(self) -> str:
        return f"{self.base}/deploy.git"

    def deployed(self, path: str = "web/kubepkg.json", branch: str = "main") -> dict[str, Any]:
        commit = self.deployment.resolve(f"refs/heads/{branch}")
        assert commit is not None
        data = self.deployment.read(commit, path)
        assert data is not None, f"{path} is not on {branch}"
        result: dict[str, Any] = json.loads(data)
        return result

    def branches(self) -> set[str]:
        return {
            r.removeprefix("refs/heads/")
            for r in self.deployment.refs()
            if r.startswith("refs/heads/")
        }


def make_remotes(root: Path, base_url: str) -> Remotes:
    catalog = git.init_bare(root / "catalog.git")
    publish(catalog, "web", kubepkg("web", "1.0.0"))
    publish(catalog, "web", kubepkg("web", "1.1.0", tag="1.27", digest=DIGEST_2))
    publish(catalog, "api", kubepkg("api", "0.3.0"))
    deployment = git.init_bare(root / "deploy.git")
    deployment.commit_files("main", {"README.md": b"what this cluster runs\n"}, "start")
    return Remotes(root, base_url)


@pytest.fixture(params=["git-daemon", "smart-http"])
def remotes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Remotes]:
    root = tmp_path / "served"
    root.mkdir()
    if request.param == "git-daemon":
        with writable_git_daemon(root) as url:
            yield make_remotes(root, url)
    else:
        # git http-backend accepts pushes from an authenticated user; the server sets one.
        with http_server(root) as server:
            yield make_remotes(root, server.url)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def promote_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = cli(capsys, "promote", *argv, "--forge", "none", "-o", "json")
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


# -- promote and approve -------------------------------------------------------------------------


def test_a_promotion_approved_puts_the_package_on_main_with_its_origin(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    tag_commit = remotes.catalog.resolve("refs/tags/web/v1.0.0")
    done = promote_json(capsys, remotes.catalog_url, "web@1.0.0", "--to", remotes.deployment_url)
    assert done["branch"] == "promote/web/1.0.0"
    assert done["catalog"] == {
        "url": remotes.catalog_url,
        "tag": "web/v1.0.0",
        "commit": tag_commit,
    }
    assert "promote/web/1.0.0" in remotes.branches()
    # The branch holds the file; main does not yet.
    on_branch = remotes.deployed(branch="promote/web/1.0.0")
    annotations = on_branch["metadata"]["annotations"]
    assert annotations == {
        "gitops.kubepkg.dev/catalog-url": remotes.catalog_url,
        "gitops.kubepkg.dev/catalog-tag": "web/v1.0.0",
        "gitops.kubepkg.dev/catalog-commit": tag_commit,
        "gitops.kubepkg.dev/catalog-images": json.dumps(
            {"docker.io/library/nginx:1.25": DIGEST_1}, separators=(",", ":")
        ),
    }
    assert on_branch["spec"]["images"] == {"docker.io/library/nginx:1.25": DIGEST_1}
    message = git.commit_message(remotes.deployment, done["commit"])
    assert f"Promoted-From: {remotes.catalog_url}" in message
    assert "Catalog-Tag: web/v1.0.0" in message
    assert f"Catalog-Commit: {tag_commit}" in message

    code, out, err = cli(capsys, "approve", remotes.deployment_url, "promote/web/1.0.0")
    assert code == 0, err
    assert "merged promote/web/1.0.0 into main" in out
    assert remotes.deployed() == on_branch
    assert "promote/web/1.0.0" not in remotes.branches()
    tip = remotes.deployment.resolve("refs/heads/main")
    assert tip is not None
    merge = git.commit_message(remotes.deployment, tip)
    assert merge.startswith("Merge branch 'promote/web/1.0.0' into main")
    assert "Catalog-Tag: web/v1.0.0" in merge


def test_latest_promotes_the_highest_release(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(remotes.catalog, "web", kubepkg("web", "1.2.0-rc.1"))
    done = promote_json(capsys, remotes.catalog_url, "web@latest", "--to", remotes.deployment_url)
    assert (done["version"], done["branch"]) == ("1.1.0", "promote/web/1.1.0")


def approve_in_processes(url: str, *branches: str) -> list[subprocess.CompletedProcess[str]]:
    """Run one ``approve`` process per branch at the same time; wait for all."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gitops_kubepkg", "approve", url, b, "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for b in branches
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def test_two_racing_approvals_both_end_merged_one_after_the_other(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    promote_json(capsys, remotes.catalog_url, "web@1.0.0", "--to", remotes.deployment_url)
    promote_json(capsys, remotes.catalog_url, "api@0.3.0", "--to", remotes.deployment_url)
    results = approve_in_processes(remotes.deployment_url, "promote/web/1.0.0", "promote/api/0.3.0")
    for r in results:
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
    # Nothing lost: main holds both packages and both merges are in its history.
    assert remotes.deployed("web/kubepkg.json")["spec"]["version"] == "1.0.0"
    assert remotes.deployed("api/kubepkg.json")["spec"]["version"] == "0.3.0"
    assert remotes.branches() == {"main"}
    tip = remotes.deployment.resolve("refs/heads/main")
    assert tip is not None
    log = subprocess.run(
        ["git", "-C", str(remotes.root / "deploy.git"), "log", "--merges", "--format=%s", tip],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert sorted(log) == [
        "Merge branch 'promote/api/0.3.0' into main",
        "Merge branch 'promote/web/1.0.0' into main",
    ]


def test_two_racing_approvals_of_one_branch_merge_it_once(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    promote_json(capsys, remotes.catalog_url, "web@1.0.0", "--to", remotes.deployment_url)
    results = approve_in_processes(remotes.deployment_url, "promote/web/1.0.0", "promote/web/1.0.0")
    for r in results:
        # Either it merged, or it saw the other merge it, or it failed with a clear message.
        assert "Traceback" not in r.stderr
        assert r.returncode == 0 or "error:" in r.stderr, r.stderr
    assert any(r.returncode == 0 for r in results)
    log = subprocess.run(
        ["git", "-C", str(remotes.root / "deploy.git"), "log", "--merges", "--format=%s", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert log == ["Merge branch 'promote/web/1.0.0' into main"]


def test_an_approval_merges_onto_a_target_that_moved(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    promote_json(capsys, remotes.catalog_url, "web@1.0.0", "--to", remotes.deployment_url)
    # Someone pushes to main after the promotion branched off.
    remotes.deployment.commit_files("main", {"notes.txt": b"ops notes\n"}, "notes")
    code, _, err = cli(capsys, "approve", remotes.deployment_url, "promote/web/1.0.0")
    assert code == 0, err
    tip = remotes.deployment.resolve("refs/heads/main")
    assert tip is not None
    assert remotes.deployment.read(tip, "notes.txt") == b"ops notes\n"
    assert remotes.deployed()["spec"]["version"] == "1.0.0"


MOVING_HOOK = """#!{python}
# The first push to main finds main moved by someone else while it was in flight.
import os, subprocess, sys
sys.stdin.read()
flag = os.path.join(os.environ["GIT_DIR"], "moved-once")
if not os.path.exists(flag):
    open(flag, "w").close()
    env = {{k: v for k, v in os.environ.items() if "QUARANTINE" not in k and "OBJECT_DIR" not in k}}
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{{who}}_NAME"], env[f"GIT_{{who}}_EMAIL"] = "someone", "someone@localhost"
    def git(*args):
        return subprocess.run(["git", *args], env=env, check=True, capture_output=True, text=True).stdout.strip()
    parent = git("rev-parse", "refs/heads/main")
    commit = git("commit-tree", parent + "^{{tree}}", "-p", parent, "-m", "someone else")
    git("update-ref", "refs/heads/main", commit, parent)
"""


def test_an_approval_whose_target_moves_mid_push_is_rebuilt_and_retried(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    promote_json(capsys, remotes.catalog_url, "web@1.0.0", "--to", remotes.deployment_url)
    hook = remotes.root / "deploy.git" / "hooks" / "pre-receive"
    hook.write_text(MOVING_HOOK.format(python=sys.executable))
    hook.chmod(0o755)
    code, out, err = cli(
        capsys, "approve", remotes.deployment_url, "promote/web/1.0.0", "-o", "json"
    )
    assert code == 0, err
    done = json.loads(out)
    assert done["attempts"] == 2
    log = subprocess.run(
        ["git", "-C", str(remotes.root / "deploy.git"), "log", "--format=%s", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    # The intruding commit is kept under the merge: nothing lost.
    assert log[:2] == ["Merge branch 'promote/web/1.0.0' into main", "someone else"]
    assert remotes.deployed()["spec"]["version"] == "1.0.0"


# -- upgrades ------------------------------------------------------------------------------------


def deploy(remotes: Remotes, capsys: pytest.CaptureFixture[str], request: str) -> None:
    done = promote_json(capsys, remotes.catalog_url, request, "--to", remotes.deployment_url)
    code, _, err = cli(capsys, "approve", remotes.deployment_url, done["branch"])
    assert code == 0, err


def edit_deployed(remotes: Remotes, change: Any, path: str = "web/kubepkg.json") -> None:
    """Someone edits the deployed file on main and pushes (written straight into the remote)."""
    obj = remotes.deployed(path)
    change(obj)
    remotes.deployment.commit_files("main", {path: encode(obj)}, "local edit")


def manifest(obj: dict[str, Any], name: str = "web") -> dict[str, Any]:
    result: dict[str, Any] = obj["spec"]["manifests"][f"{name}.default.deployment"]
    return result


def test_an_upgrade_keeps_a_local_edit_and_takes_the_catalog_change(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(remotes, capsys, "web@1.0.0")
    edit_deployed(remotes, lambda o: manifest(o)["spec"].update(replicas=5))
    done = promote_json(
        capsys, remotes.catalog_url, "web@1.1.0", "--to", remotes.deployment_url, "--upgrade"
    )
    assert done["upgradedFrom"] == "web/v1.0.0"
    code, _, err = cli(capsys, "approve", remotes.deployment_url, done["branch"])
    assert code == 0, err
    now = remotes.deployed()
    assert now["spec"]["version"] == "1.1.0"
    assert manifest(now)["spec"]["replicas"] == 5  # the local edit
    container = manifest(now)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/library/nginx:1.27"  # the catalog's change
    assert now["spec"]["images"] == {"docker.io/library/nginx:1.27": DIGEST_2}
    annotations = now["metadata"]["annotations"]
    assert annotations["gitops.kubepkg.dev/catalog-tag"] == "web/v1.1.0"
    assert annotations["gitops.kubepkg.dev/catalog-commit"] == remotes.catalog.resolve(
        "refs/tags/web/v1.1.0"
    )


def test_an_upgrade_of_a_yaml_file_keeps_its_comments_and_layout(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(remotes, capsys, "web@1.0.0")
    # Someone moves the package to YAML and annotates it by hand.
    text = yaml.safe_dump(remotes.deployed(), sort_keys=False).replace(
        "  replicas: 1\n", "  replicas: 1  # one is enough for staging\n"
    )
    text = "# web, as the platform team runs it\n" + text
    assert "# one is enough" in text
    remotes.deployment.commit_files(
        "main",
        {"web/kubepkg.json": None, "web/kubepkg.yaml": text.encode()},
        "web as YAML, with comments",
    )
    done = promote_json(
        capsys, remotes.catalog_url, "web@1.1.0", "--to", remotes.deployment_url, "--upgrade"
    )
    assert done["path"] == "web/kubepkg.yaml"
    code, _, err = cli(capsys, "approve", remotes.deployment_url, done["branch"])
    assert code == 0, err
    commit = remotes.deployment.resolve("refs/heads/main")
    assert commit is not None
    after = (remotes.deployment.read(commit, "web/kubepkg.yaml") or b"").decode()
    assert after.startswith("# web, as the platform team runs it\n")
    assert "replicas: 1  # one is enough for staging" in after
    upgraded = yaml.safe_load(after)
    assert upgraded["spec"]["version"] == "1.1.0"
    assert manifest(upgraded)["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "docker.io/library/nginx:1.27"
    )


def test_a_conflicting_upgrade_is_refused_with_the_field_named_and_nothing_pushed(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(remotes, capsys, "web@1.0.0")
    publish(remotes.catalog, "web", kubepkg("web", "1.2.0", replicas=3, digest=DIGEST_3))
    edit_deployed(remotes, lambda o: manifest(o)["spec"].update(replicas=5))
    before = remotes.deployment.refs()
    code, _, err = cli(
        capsys, "promote", remotes.catalog_url, "web@1.2.0", "--to", remotes.deployment_url,
        "--upgrade", "--forge", "none",
    )  # fmt: skip
    assert code == 1
    assert "Traceback" not in err
    assert (
        'spec.manifests["web.default.deployment"].spec.replicas: '
        "catalog 1.2.0 says 3, deployment says 5 (was 1)"
    ) in err
    assert "--strategy" in err
    assert remotes.deployment.refs() == before

    done = promote_json(
        capsys, remotes.catalog_url, "web@1.2.0", "--to", remotes.deployment_url,
        "--upgrade", "--strategy", "theirs",
    )  # fmt: skip
    assert len(done["settled"]) == 1
    on_branch = remotes.deployed(branch=done["branch"])
    assert manifest(on_branch)["spec"]["replicas"] == 3
    assert "Merge-Strategy: theirs" in git.commit_message(remotes.deployment, done["commit"])


def test_upgrades_lists_newer_revisions_and_prereleases_only_when_asked(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(remotes, capsys, "web@1.0.0")
    deploy(remotes, capsys, "api@0.3.0")
    publish(remotes.catalog, "web", kubepkg("web", "2.0.0"))
    publish(remotes.catalog, "web", kubepkg("web", "2.1.0-rc.1"))
    remotes.catalog.tag("web/v2.2", remotes.catalog.resolve("refs/heads/main") or "")

    code, out, err = cli(capsys, "upgrades", remotes.deployment_url, "-o", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["upgrades"] == [
        {
            "path": "web/kubepkg.json",
            "name": "web",
            "package": "web",
            "current": "1.0.0",
            "latest": "2.0.0",
            "newer": ["1.1.0", "2.0.0"],
            "catalog": remotes.catalog_url,
        }
    ]
    assert report["current"] == ["api/kubepkg.json"]

    code, out, err = cli(
        capsys, "upgrades", remotes.deployment_url, "--catalog", remotes.catalog_url, "--pre",
        "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["upgrades"][0]["newer"] == ["1.1.0", "2.0.0", "2.1.0-rc.1"]


def test_an_approval_settles_a_kubepkg_file_both_branches_changed_field_by_field(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(remotes, capsys, "web@1.0.0")
    done = promote_json(
        capsys, remotes.catalog_url, "web@1.1.0", "--to", remotes.deployment_url, "--upgrade"
    )
    # After the upgrade branched off, main gets an annotation right next to the lines the
    # upgrade rewrites: git cannot merge that line by line; the KubePkg merge can.
    edit_deployed(remotes, lambda o: o["metadata"]["annotations"].update(team="payments"))
    code, _, err = cli(capsys, "approve", remotes.deployment_url, done["branch"])
    assert code == 0, err
    now = remotes.deployed()
    assert now["metadata"]["annotations"]["team"] == "payments"
    assert now["metadata"]["annotations"]["gitops.kubepkg.dev/catalog-tag"] == "web/v1.1.0"
    assert now["spec"]["version"] == "1.1.0"


def test_a_deployment_repository_without_its_branch_starts_it_from_the_promotion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "served"
    root.mkdir()
    with writable_git_daemon(root) as url:
        remotes = make_remotes(root, url)
        git.init_bare(root / "empty.git")
        empty = f"{url}/empty.git"
        done = promote_json(capsys, remotes.catalog_url, "web@1.0.0", "--to", empty)
        code, _, err = cli(capsys, "approve", empty, done["branch"])
        assert code == 0, err
    repo = git.open_bare(root / "empty.git")
    assert set(repo.refs()) == {"refs/heads/main"}
    assert repo.resolve("refs/heads/main") == done["commit"]


def test_without_a_branch_named_promote_and_approve_target_the_remotes_head_branch(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    trunk = git.init_bare(remotes.root / "trunk.git")
    trunk.commit_files("trunk", {"README.md": b"a repository whose HEAD is trunk\n"}, "start")
    subprocess.run(
        ["git", "--git-dir", str(remotes.root / "trunk.git"), "symbolic-ref", "HEAD",
         "refs/heads/trunk"],
        check=True,
    )  # fmt: skip
    url = f"{remotes.base}/trunk.git"
    assert git.remote_default_branch(url) == "trunk"
    done = promote_json(capsys, remotes.catalog_url, "web@1.0.0", "--to", url)
    assert done["target"] == "trunk"
    code, out, err = cli(capsys, "approve", url, done["branch"], "-o", "json")
    assert code == 0, err
    assert json.loads(out)["target"] == "trunk"
    repo = git.open_bare(remotes.root / "trunk.git")
    assert set(repo.refs()) == {"refs/heads/trunk"}
    merged = repo.resolve("refs/heads/trunk")
    assert merged is not None and repo.read(merged, "web/kubepkg.json") is not None


def test_promote_and_approve_over_ssh_with_a_verified_host_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "served"
    root.mkdir()
    with ssh_server(root, tmp_path / "sshd") as server:
        remotes = make_remotes(root, server.url)
        key = tmp_path / "id"
        key.write_text(server.private_key)
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts)
        ssh = ["--ssh-key", str(key), "--known-hosts", str(known)]
        code, _, err = cli(
            capsys, "promote", remotes.catalog_url, "web@1.0.0", "--to", remotes.deployment_url,
            "--forge", "none", *ssh,
        )  # fmt: skip
        assert code == 0, err
        code, _, err = cli(capsys, "approve", remotes.deployment_url, "promote/web/1.0.0", *ssh)
        assert code == 0, err
        known.write_text(server.other_known_hosts)
        code, _, err = cli(capsys, "upgrades", remotes.deployment_url, *ssh)
        assert code == 2
        assert "host key" in err
    assert remotes.deployed()["spec"]["version"] == "1.0.0"


def test_an_approval_that_would_define_a_kubepkg_twice_is_refused(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(remotes, capsys, "web@1.0.0")
    main_tip = remotes.deployment.resolve("refs/heads/main")
    assert main_tip is not None
    # Someone pushes a branch that adds a second file defining KubePkg "web": fine on its own.
    remotes.deployment.set_ref("refs/heads/promote/copy/1.0.0", main_tip)
    remotes.deployment.commit_files(
        "promote/copy/1.0.0",
        {"copy/kubepkg.json": encode(kubepkg("web", "1.0.0"))},
        "a copy",
    )
    before = remotes.deployment.refs()
    code, _, err = cli(capsys, "approve", remotes.deployment_url, "promote/copy/1.0.0")
    assert code == 1
    assert "would leave KubePkgs the controller cannot apply" in err
    assert "KubePkg default/web is also defined in copy/kubepkg.json" in err
    assert remotes.deployment.refs() == before


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_text", "message"),
    [
        pytest.param("nope@1.0.0", "no package 'nope'", id="an unknown package"),
        pytest.param("web@9.9.9", "has no version 9.9.9", id="an unknown version"),
        pytest.param(
            "web@1.2", "'1.2' is not a semantic version", id="a version that is not semver"
        ),
    ],
)
def test_bad_requests_name_what_is_wrong_and_push_nothing(
    remotes: Remotes, capsys: pytest.CaptureFixture[str], request_text: str, message: str
) -> None:
    before = remotes.deployment.refs()
    code, _, err = cli(
        capsys, "promote", remotes.catalog_url, request_text, "--to", remotes.deployment_url
    )
    assert code == 1
    assert message in err
    assert "Traceback" not in err
    assert remotes.deployment.refs() == before


def test_an_existing_promotion_branch_is_refused(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    promote_json(capsys, remotes.catalog_url, "web@1.0.0", "--to", remotes.deployment_url)
    before = remotes.deployment.refs()
    code, _, err = cli(
        capsys, "promote", remotes.catalog_url, "web@1.0.0", "--to", remotes.deployment_url
    )
    assert code == 1
    assert "branch promote/web/1.0.0 already exists" in err
    assert remotes.deployment.refs() == before


def test_an_unreachable_remote_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"git://127.0.0.1:{free_port()}/catalog.git"
    code, _, err = cli(capsys, "promote", dead, "web@1.0.0", "--to", dead)
    assert code == 2
    assert "the catalog repository" in err and dead in err
    assert "Traceback" not in err


def test_a_promotion_already_deployed_needs_upgrade(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(remotes, capsys, "web@1.0.0")
    code, _, err = cli(
        capsys, "promote", remotes.catalog_url, "web@1.1.0", "--to", remotes.deployment_url
    )
    assert code == 1
    assert "already deployed at web/kubepkg.json (from web/v1.0.0); use --upgrade" in err


def test_approving_a_branch_that_does_not_exist_fails_cleanly(
    remotes: Remotes, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "approve", remotes.deployment_url, "promote/web/9.9.9")
    assert code == 1
    assert "no branch promote/web/9.9.9" in err


# -- forges --------------------------------------------------------------------------------------

RECORDING_HOOK = """#!{python}
# Record what the push asked for: ref updates on stdin, push options in the environment.
import os, sys
git_dir = os.environ["GIT_DIR"]
with open(os.path.join(git_dir, "pushed-refs"), "a") as f:
    f.write(sys.stdin.read())
count = int(os.environ.get("GIT_PUSH_OPTION_COUNT", "0"))
with open(os.path.join(git_dir, "push-options"), "a") as f:
    for i in range(count):
        f.write(os.environ[f"GIT_PUSH_OPTION_{{i}}"] + "\\n")
sys.stderr.write({say!r})
"""


def record_pushes(repo: Path, say: str = "") -> None:
    """Make ``repo`` take push options and record each push, printing ``say`` on the sideband."""
    subprocess.run(
        ["git", "-C", str(repo), "config", "receive.advertisePushOptions", "true"], check=True
    )
    hook = repo / "hooks" / "pre-receive"
    hook.write_text(RECORDING_HOOK.format(python=sys.executable, say=say))
    hook.chmod(0o755)


def test_gitlab_gets_merge_request_push_options_and_its_url_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "served"
    root.mkdir()
    with writable_git_daemon(root) as url:
        remotes = make_remotes(root, url)
        record_pushes(
            root / "deploy.git",
            say="View merge request for promote/web/1.0.0:\n"
            "  https://gitlab.example/ops/deploy/-/merge_requests/7\n",
        )
        code, out, err = cli(
            capsys, "promote", remotes.catalog_url, "web@1.0.0", "--to", remotes.deployment_url,
            "--forge", "gitlab",
        )  # fmt: skip
        assert code == 0, err
    assert out.strip().splitlines()[-1] == "https://gitlab.example/ops/deploy/-/merge_requests/7"
    options = (root / "deploy.git" / "push-options").read_text().splitlines()
    assert options[:3] == [
        "merge_request.create",
        "merge_request.target=main",
        "merge_request.title=Promote web 1.0.0",
    ]
    assert options[3].startswith("merge_request.description=From the catalog ")
    refs = (root / "deploy.git" / "pushed-refs").read_text()
    assert refs.split()[1:] == [
        remotes.deployment.resolve("refs/heads/promote/web/1.0.0"),
        "refs/heads/promote/web/1.0.0",
    ]


def test_gitea_gets_an_agit_push_to_refs_for_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "served"
    root.mkdir()
    with http_server(root) as server:
        remotes = make_remotes(root, server.url)
        record_pushes(root / "deploy.git")
        done = json.loads(
            cli(
                capsys, "promote", remotes.catalog_url, "web@1.0.0", "--to",
                remotes.deployment_url, "--forge", "gitea", "-o", "json",
            )[1]
        )  # fmt: skip
    pushed = [
        line.split() for line in (root / "deploy.git" / "pushed-refs").read_text().splitlines()
    ]
    assert sorted((new, ref) for _, new, ref in pushed) == sorted(
        [(done["commit"], "refs/heads/promote/web/1.0.0"), (done["commit"], "refs/for/main")]
    )
    options = (root / "deploy.git" / "push-options").read_text().splitlines()
    assert options[:2] == ["topic=promote/web/1.0.0", "title=Promote web 1.0.0"]
    assert options[2].startswith("description=From the catalog ")


class GitHubStandIn:
    """GitHub's ``POST /repos/{owner}/{repo}/pulls``, checking the request as GitHub would."""

    def __init__(self, token: str, status: int = 201) -> None:
        self.token = token
        self.status = status
        self.calls: list[dict[str, Any]] = []
        self.problems: list[str] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                problems = []
                if self.path != "/repos/ops/deploy/pulls":
                    problems.append(f"path {self.path}")
                if self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                    problems.append("authorization")
                if self.headers.get("Accept") != "application/vnd.github+json":
                    problems.append("accept")
                if self.headers.get("X-GitHub-Api-Version") != "2022-11-28":
                    problems.append("api version")
                if self.headers.get("Content-Type") != "application/json":
                    problems.append("content type")
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {}
                    problems.append("body is not JSON")
                for key in ("title", "head", "base"):
                    if not isinstance(data.get(key), str) or not data[key]:
                        problems.append(f"body.{key}")
                stand_in.calls.append(data)
                stand_in.problems += problems
                if problems:
                    self.reply(422, {"message": "Validation Failed", "errors": problems})
                elif stand_in.status != 201:
                    self.reply(stand_in.status, {"message": "Bad credentials"})
                else:
                    self.reply(
                        201,
                        {"number": 12, "html_url": "https://github.com/ops/deploy/pull/12"},
                    )

            def reply(self, status: int, data: dict[str, Any]) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


@contextlib.contextmanager
def github_api(stand_in: GitHubStandIn) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), stand_in.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("status", [201, 401], ids=["opened", "token refused"])
def test_github_pull_request_is_opened_through_the_api_or_the_branch_withdrawn(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    # The deployment is served as <root>/ops/deploy.git so its URL names owner "ops", repo "deploy".
    root = tmp_path / "served"
    (root / "ops").mkdir(parents=True)
    stand_in = GitHubStandIn("t0ken", status)
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    with writable_git_daemon(root) as url, github_api(stand_in) as api:
        remotes = make_remotes(root, url)
        (root / "deploy.git").rename(root / "ops" / "deploy.git")
        deployment_url = f"{url}/ops/deploy.git"
        code, out, err = cli(
            capsys, "promote", remotes.catalog_url, "web@1.0.0", "--to", deployment_url,
            "--forge", "github", "--github-api", api,
        )  # fmt: skip
    assert stand_in.problems == []
    assert stand_in.calls[0]["head"] == "promote/web/1.0.0"
    assert stand_in.calls[0]["base"] == "main"
    assert stand_in.calls[0]["title"] == "Promote web 1.0.0"
    deployment = git.open_bare(root / "ops" / "deploy.git")
    if status == 201:
        assert code == 0, err
        assert out.strip().splitlines()[-1] == "https://github.com/ops/deploy/pull/12"
        assert "refs/heads/promote/web/1.0.0" in deployment.refs()
    else:
        assert code == 2
        assert "GitHub refused the token (401): Bad credentials" in err
        assert "refs/heads/promote/web/1.0.0" not in deployment.refs()


def test_github_without_a_token_pushes_nothing(
    remotes: Remotes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    before = remotes.deployment.refs()
    code, _, err = cli(
        capsys, "promote", remotes.catalog_url, "web@1.0.0", "--to", remotes.deployment_url,
        "--forge", "github",
    )  # fmt: skip
    assert code == 2
    assert "GitHub needs a token" in err
    assert remotes.deployment.refs() == before
