"""``trace``, ``history`` and ``rollback`` on real flows, every field checked against its source.

Catalog tag > promote > approve > controller pass > apply > trace, then an upgrade, ``history``,
``rollback`` (a commit pushed to the served deployment repository) and the pass that applies it;
and the airgap path: export > import > controller pass > apply > trace, the digest checked
against the pull-only registry the nodes would pull from. Git remotes are served by ``git daemon``;
the CLI runs as a user runs it (``gitops_kubepkg.cli.main``).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.cli import main
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.promotion.record import trailers
from gitops_kubepkg.registry.client import RegistryClient
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from tests.integration.controllers import edit_config_map_by_hand, wait_until
from tests.integration.git_servers import git_daemon
from tests.integration.registry_peers import (
    Distribution,
    build_image,
    have_peers,
    push,
    registry_serve,
)

pytestmark = pytest.mark.integration

DIGEST_1 = "sha256:" + "1" * 64
DIGEST_2 = "sha256:" + "2" * 64


def web(namespace: str, version: str, tag: str, digest: str) -> dict[str, Any]:
    image = f"docker.io/library/nginx:{tag}"
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "web"},
        "spec": {
            "version": version,
            "images": {image: digest},
            "manifests": {
                f"web.{namespace}.deployment": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": namespace},
                    "spec": {
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "image": image}]},
                        },
                    },
                },
                f"web-settings.{namespace}.configmap": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "web-settings", "namespace": namespace},
                    "data": {"mode": "safe", "version": version},
                },
            },
        },
    }


def publish(catalog: git.Repository, obj: dict[str, Any]) -> str:
    version = obj["spec"]["version"]
    data = (json.dumps(obj, indent=2) + "\n").encode()
    commit = catalog.commit_files("main", {"web/kubepkg.json": data}, f"web {version}")
    catalog.tag(f"web/v{version}", commit, message=f"web {version}")
    return commit


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, f"gitops-kubepkg {' '.join(argv)}: exit {code}\n{err}"
    return out


def repository(kube: Kube, namespace: str, name: str, url: str, type_: str, **spec: Any) -> None:
    kube.apply(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "Repository",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"url": url, "type": type_, **spec},
        }
    )


def head(repo: git.Repository) -> str:
    commit = repo.resolve("refs/heads/main")
    assert commit is not None
    return commit


def file_at(repo: git.Repository, commit: str, path: str) -> dict[str, Any]:
    data = repo.read(commit, path)
    assert data is not None, f"{path} at {commit[:12]}"
    result: dict[str, Any] = json.loads(data)
    return result


def test_trace_follows_catalog_promotion_and_deployment_and_rollback_commits_an_old_revision(
    kube: Kube,
    kubeconfig: str,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    catalog = git.init_bare(served / "catalog.git")
    deployment = git.init_bare(served / "deploy.git")
    deployment.commit_files("main", {"README.md": b"prod\n"}, "start")
    v1_tag_commit = publish(catalog, web(namespace, "1.0.0", "1.25", DIGEST_1))
    v2_tag_commit = publish(catalog, web(namespace, "1.1.0", "1.27", DIGEST_2))
    publish(catalog, web(namespace, "1.2.0", "1.28", ""))  # never deployed: not pinned
    cluster = ["-n", namespace, "--kubeconfig", kubeconfig]
    once = ["controller", "--once", "--state-dir", str(tmp_path / "state"), *cluster]

    with git_daemon(served, writable=True) as server:
        catalog_url, deployment_url = server.repo_url("catalog.git"), server.repo_url("deploy.git")
        run(capsys, "promote", catalog_url, "web@1.0.0", "--to", deployment_url, "--forge", "none")
        run(capsys, "approve", deployment_url, "promote/web/1.0.0")
        repository(kube, namespace, "catalog", catalog_url, "catalog")
        repository(kube, namespace, "prod", deployment_url, "deployment")
        run(capsys, *once)
        first = head(deployment)

        trace = json.loads(run(capsys, "trace", "deployment/web", "-o", "json", *cluster))
        assert trace["managed"] is True
        assert trace["kubepkg"]["name"] == "web" and trace["kubepkg"]["version"] == "1.0.0"
        source = {
            "repository": f"{namespace}/prod",
            "url": deployment_url,
            "branch": "main",
            "commit": first,
            "path": "web/kubepkg.json",
            "catalogUrl": catalog_url,
            "catalogTag": "web/v1.0.0",
            "catalogCommit": v1_tag_commit,
        }
        assert trace["source"] == source
        assert trace["lastAppliedRevision"] == f"main@sha1:{first}"
        assert trace["applied"]["fieldManager"] == "gitops-kubepkg" and trace["applied"]["time"]
        # The digest the container runs is the one the catalog tag and the deployed file pin.
        image = "docker.io/library/nginx:1.25"
        assert file_at(catalog, v1_tag_commit, "web/kubepkg.json")["spec"]["images"] == {
            image: DIGEST_1
        }
        assert file_at(deployment, first, "web/kubepkg.json")["spec"]["images"] == {image: DIGEST_1}
        assert trace["images"] == [
            {
                "container": "web",
                "image": f"{image}@{DIGEST_1}",
                "digest": DIGEST_1,
                "specImage": image,
                "fixedBy": [
                    {"by": "catalog", "url": catalog_url, "tag": "web/v1.0.0",
                     "commit": v1_tag_commit},
                    {"by": "spec.images", "key": image, "url": deployment_url, "branch": "main",
                     "commit": first, "path": "web/kubepkg.json"},
                ],
            }
        ]  # fmt: skip
        assert trace["inSync"] is True and trace["drift"] == []
        whole = json.loads(run(capsys, "trace", "kubepkg", "web", "-o", "json", *cluster))
        assert whole["source"] == source and whole["images"] == {image: DIGEST_1}
        assert whole["consistent"]["status"] == "True" and whole["missing"] == []
        assert sorted((o["object"]["kind"], o["inSync"]) for o in whole["objects"]) == [
            ("ConfigMap", True),
            ("Deployment", True),
        ]
        text = run(capsys, "trace", "deployment", "web", *cluster)
        assert f"catalog:     {catalog_url} tag web/v1.0.0 commit {v1_tag_commit}" in text
        assert f"branch main commit {first}" in text

        # A hand edit is drift, named by field, with who made it.
        edit_config_map_by_hand(kube, namespace, "web-settings", {"mode": "edited"})
        drifted = json.loads(run(capsys, "trace", "configmap/web-settings", "-o", "json", *cluster))
        assert drifted["inSync"] is False and drifted["drift"] == ["data.mode"]
        assert "kubectl-edit" in [w["manager"] for w in drifted["alsoWrittenBy"]]

        # Objects we did not apply say so; one a Deployment of ours made is traced through it.
        kube.apply(
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "by-hand", "namespace": namespace}, "data": {}},
            field_manager="kubectl",
        )  # fmt: skip
        other = json.loads(run(capsys, "trace", "cm/by-hand", "-o", "json", *cluster))
        assert other["managed"] is False and other["message"] == "not managed by gitops-kubepkg"
        assert "field manager kubectl (Apply)" in other["managedBy"]
        replicasets = wait_until(
            lambda: kube.list("apps/v1", "ReplicaSet", namespace), 60, "the ReplicaSet"
        )
        made = json.loads(
            run(capsys, "trace", f"replicaset/{replicasets[0]['metadata']['name']}", "-o", "json",
                *cluster)
        )  # fmt: skip
        assert made["managed"] is False
        assert made["via"]["object"]["name"] == "web" and made["via"]["managed"] is True
        assert made["managedBy"][0] == "owned by Deployment web (ownerReference)"

        # The catalog's revisions say whether they pin their images, on every pass after the
        # one that read them.
        run(capsys, *once)
        revisions = {
            r["spec"]["revision"]: {c["type"]: c for c in r["status"]["conditions"]}
            for r in kube.list(GITOPS_API_VERSION, "PackageRevision", namespace)
        }
        assert revisions["1.0.0"]["Consistent"]["status"] == "True"
        unpinned = revisions["1.2.0"]["Consistent"]
        assert (unpinned["status"], unpinned["reason"]) == ("False", "UnpinnedImages")
        assert "docker.io/library/nginx:1.28" in unpinned["message"]

        # Upgrade to 1.1.0: a second history entry.
        run(capsys, "promote", catalog_url, "web@1.1.0", "--to", deployment_url, "--upgrade",
            "--forge", "none")  # fmt: skip
        run(capsys, "approve", deployment_url, "promote/web/1.1.0")
        run(capsys, *once)
        second = head(deployment)
        history = json.loads(run(capsys, "history", "kubepkg", "web", "-o", "json", *cluster))
        assert [(h["id"], h["version"], h["commit"], h["path"], h["digests"]) for h in history] == [
            (2, "1.1.0", second, "web/kubepkg.json", {"docker.io/library/nginx:1.27": DIGEST_2}),
            (1, "1.0.0", first, "web/kubepkg.json", {image: DIGEST_1}),
        ]
        table = run(capsys, "history", "kubepkg", "web", *cluster).splitlines()
        assert table[0].split()[:4] == ["ID", "VERSION", "COMMIT", "RESULT"]
        assert [line.split()[:3] for line in table[1:]] == [
            ["2", "1.1.0", second[:12]],
            ["1", "1.0.0", first[:12]],
        ]
        upgraded = json.loads(run(capsys, "trace", "deployment/web", "-o", "json", *cluster))
        assert upgraded["source"]["catalogTag"] == "web/v1.1.0"
        assert upgraded["source"]["catalogCommit"] == v2_tag_commit
        assert upgraded["images"][0]["digest"] == DIGEST_2

        # Roll back to revision 1: a commit on main, with trailers, holding the old file.
        done = json.loads(run(capsys, "rollback", "kubepkg", "web", "--to", "1", "-o", "json",
                              *cluster))  # fmt: skip
        rolled = head(deployment)
        assert done["commit"] == rolled and rolled not in (first, second)
        assert git.is_ancestor(deployment, second, rolled), "rollback adds a commit, never rewinds"
        assert deployment.read(rolled, "web/kubepkg.json") == deployment.read(
            first, "web/kubepkg.json"
        )
        said = trailers(git.commit_message(deployment, rolled))
        assert said["Rolled-Back-From"] == f"1.1.0 {second}"
        assert said["Rolled-Back-To"] == f"1.0.0 {first}"
        assert said["History-Revision"] == "1" and said["KubePkg"] == f"{namespace}/web"

        run(capsys, *once)
        back = json.loads(run(capsys, "trace", "deployment/web", "-o", "json", *cluster))
        assert back["kubepkg"]["version"] == "1.0.0"
        assert back["source"]["commit"] == rolled
        assert back["source"]["catalogTag"] == "web/v1.0.0"
        assert back["images"][0]["digest"] == DIGEST_1
        assert back["inSync"] is True
        history = json.loads(run(capsys, "history", "kubepkg", "web", "-o", "json", *cluster))
        assert [(h["id"], h["version"], h["commit"]) for h in history] == [
            (3, "1.0.0", rolled),
            (2, "1.1.0", second),
            (1, "1.0.0", first),
        ]

        # Rolling back to what runs already pushes nothing.
        assert main(["rollback", "kubepkg", "web", "--to", "3", *cluster]) == 1
        assert "already holds revision 3" in capsys.readouterr().err
        assert head(deployment) == rolled
        assert consistent(kube, namespace)["status"] == "True"

        # Someone pins another digest in the deployment repository: the record says so.
        edited = file_at(deployment, rolled, "web/kubepkg.json")
        edited["spec"]["images"][image] = DIGEST_2
        deployment.commit_files(
            "main", {"web/kubepkg.json": json.dumps(edited).encode()}, "pin another nginx"
        )
        run(capsys, *once)
    condition = consistent(kube, namespace)
    assert (condition["status"], condition["reason"]) == ("False", "DigestMismatch")
    assert f"{image} is {DIGEST_2} here, {DIGEST_1} in the catalog" in condition["message"]
    mismatched = json.loads(run(capsys, "trace", "deployment/web", "-o", "json", *cluster))
    assert [f["by"] for f in mismatched["images"][0]["fixedBy"]] == ["spec.images"]
    assert any(n.startswith("DigestMismatch: ") for n in mismatched["notes"])


def consistent(kube: Kube, namespace: str) -> dict[str, Any]:
    obj = kube.get(API_VERSION, KIND, "web", namespace)
    assert obj is not None
    (condition,) = [c for c in obj["status"]["conditions"] if c["type"] == "Consistent"]
    return dict(condition)


@pytest.mark.skipif(not have_peers(), reason="needs docker-registry (CNCF Distribution)")
def test_trace_on_the_airgap_path_names_the_import_and_the_digest_the_registry_serves(
    kube: Kube,
    kubeconfig: str,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = Distribution(tmp_path / "source-registry")
    try:
        image = build_image([2000])
        client = RegistryClient()
        push(client, source.endpoint, "library/web", "1.0", image)
        client.close()
        digest = str(image.digest)
        pkg = web(namespace, "1.0.0", "1.0", digest)
        pkg["spec"]["images"] = {"docker.io/library/web:1.0": digest}
        container = pkg["spec"]["manifests"][f"web.{namespace}.deployment"]["spec"]["template"]
        container["spec"]["containers"][0]["image"] = "docker.io/library/web:1.0"
        deployment = git.init_bare(tmp_path / "deploy.git")
        data = (json.dumps(pkg, indent=2) + "\n").encode()
        commit = deployment.commit_files("main", {"apps/web/kubepkg.json": data}, "web 1.0.0")
        url = "https://git.example.com/prod/deploy.git"
        out, store, state = tmp_path / "export", tmp_path / "store", tmp_path / "state"
        run(capsys, "airgap", "export", "--out", str(out), "--repo",
            f"{url}={tmp_path / 'deploy.git'}", "--registry-mirror", f"docker.io={source.url}")  # fmt: skip
    finally:
        source.stop()

    # Inside the air gap: import, serve the store, sync the imported mirror, apply.
    run(capsys, "airgap", "import", str(out), "--store", str(store), "--state-dir", str(state))
    cluster = ["-n", namespace, "--kubeconfig", kubeconfig]
    repository(kube, namespace, "prod", url, "deployment", airgap=True)
    with registry_serve(store) as served:
        run(capsys, "controller", "--once", "--state-dir", str(state), "--registry", served.host,
            *cluster)  # fmt: skip
        trace = json.loads(run(capsys, "trace", "deployment/web", "-o", "json", *cluster))
        request = urllib.request.Request(
            f"http://{served.host}/v2/docker.io/library/web/manifests/1.0",
            headers={"Accept": image.media_type},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            served_digest = response.headers["Docker-Content-Digest"]
            served_bytes = response.read()

    assert served_digest == digest and served_bytes == image.raw
    assert trace["source"] == {
        "repository": f"{namespace}/prod",
        "url": url,
        "branch": "main",
        "commit": commit,
        "path": "apps/web/kubepkg.json",
    }
    assert trace["images"] == [
        {
            "container": "web",
            "image": f"{served.host}/docker.io/library/web:1.0@{digest}",
            "digest": digest,
            "specImage": "docker.io/library/web:1.0",
            "fixedBy": [
                {"by": "spec.images", "key": "docker.io/library/web:1.0", "url": url,
                 "branch": "main", "commit": commit, "path": "apps/web/kubepkg.json"},
                {"by": "airgap import", "registry": served.host,
                 "repository": f"{namespace}/prod"},
            ],
        }
    ]  # fmt: skip
    assert trace["inSync"] is True and trace["drift"] == []
    text = run(capsys, "trace", "deployment/web", *cluster)
    assert "catalog:     none recorded (not promoted)" in text
    assert f"digest fixed by airgap import: registry={served.host}" in text

    # Git inside the air gap is fed by bundles: a rollback is refused, with what to do instead.
    assert main(["rollback", "kubepkg", "web", "--to", "1", *cluster]) == 1
    err = capsys.readouterr().err
    assert f"Repository {namespace}/prod is airgapped" in err and "Traceback" not in err
    assert deployment.resolve("refs/heads/main") == commit
