"""Repositories synced into the local control plane: catalog tags become PackageRevisions, a
deployment branch becomes KubePkg objects, failures leave everything in place, webhooks verify.

Real git (served over smart HTTP on loopback where it matters) and the real kube-apiserver."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.controller.runtime import Runtime
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.controller.webhooks import WebhookSecrets
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.serving import parse_listen
from gitops_kubepkg.sources import catalog, deployment
from gitops_kubepkg.sources.webhook import WebhookServer
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from gitops_kubepkg.spec.document import MAX_FILE_BYTES
from tests.integration.git_servers import Server, free_port, http_server

pytestmark = pytest.mark.integration


def kubepkg(name: str, version: str, *, yaml: bool = False) -> bytes:
    doc = {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "images": {"docker.io/library/nginx:alpine": ""},
            "manifests": {
                f"{name}.default.configmap": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "default"},
                    "data": {"version": version},
                }
            },
        },
    }
    if yaml:
        import yaml as pyyaml

        return pyyaml.safe_dump(doc).encode()
    return json.dumps(doc, indent=2).encode()


@pytest.fixture(autouse=True)
def crd_storage_ready(kube: Kube) -> None:
    """Right after a CRD is Established the API may still answer "storage is (re)initializing"."""
    import time

    from gitops_kubepkg.errors import Unavailable

    deadline = time.monotonic() + 60
    for api_version, kind in [
        (GITOPS_API_VERSION, "Repository"),
        (GITOPS_API_VERSION, catalog.KIND),
        (API_VERSION, KIND),
    ]:
        while True:
            try:
                kube.list(api_version, kind, "default")
                break
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "srv"
    root.mkdir()
    with http_server(root, user="alice", password="pw") as server:
        yield server


@pytest.fixture
def syncer(kube: Kube, tmp_path: Path) -> Syncer:
    return Syncer(kube, tmp_path / "state")


def add_repository(kube: Kube, namespace: str, name: str, url: str, kind: str, **spec: Any) -> None:
    kube.apply(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "Repository",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"url": url, "type": kind, **spec},
        }
    )


def add_secret(kube: Kube, namespace: str, name: str, **data: str) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )


@contextlib.contextmanager
def repositories_runtime(kube: Kube, syncer: Syncer, namespace: str) -> Iterator[Runtime]:
    """The controller's runtime for Repositories only (no KubePkg reconciler), as the leader runs
    it: informers, one queue, supervised workers."""
    runtime = Runtime(kube, syncer=syncer, reconciler=None, namespace=namespace, watch_files=False)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


def revisions(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    objs = kube.list(GITOPS_API_VERSION, catalog.KIND, namespace)
    return {o["spec"]["tag"]: o for o in objs}


def latest_tags(kube: Kube, namespace: str) -> list[str]:
    return sorted(
        tag
        for tag, o in revisions(kube, namespace).items()
        if o["metadata"].get("labels", {}).get(catalog.LABEL_LATEST) == "true"
    )


def ready(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    obj = kube.get(GITOPS_API_VERSION, "Repository", name, namespace)
    assert obj is not None
    status = obj.get("status") or {}
    (cond,) = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    return {**cond, "_status": status}


@pytest.fixture
def catalog_repo(served: Server, kube: Kube, namespace: str) -> git.Repository:
    repo = git.init_bare(served.root / "catalog.git")
    c1 = repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.1.0")}, "web 1.1.0")
    repo.tag("web/v1.1.0", c1, message="web 1.1.0")
    add_secret(kube, namespace, "git-auth", username="alice", password="pw")
    add_repository(
        kube,
        namespace,
        "catalog",
        served.repo_url("catalog.git"),
        "catalog",
        secretRef={"name": "git-auth"},
    )
    return repo


def test_a_new_tag_over_http_becomes_the_latest_package_revision(
    catalog_repo: git.Repository, syncer: Syncer, kube: Kube, namespace: str
) -> None:
    first = syncer.sync(namespace, "catalog")
    assert first is not None and first.ready, first
    assert latest_tags(kube, namespace) == ["web/v1.1.0"]

    c2 = catalog_repo.commit_files(
        "main",
        {"web/kubepkg.yaml": kubepkg("web", "1.2.0", yaml=True), "web/kubepkg.json": None},
        "web 1.2.0",
    )
    catalog_repo.tag("web/v1.2.0", c2, message="web 1.2.0")
    second = syncer.sync(namespace, "catalog")
    assert second is not None and second.ready, second
    revs = revisions(kube, namespace)
    assert set(revs) == {"web/v1.1.0", "web/v1.2.0"}
    assert latest_tags(kube, namespace) == ["web/v1.2.0"], "latest moved to the new tag"
    spec = revs["web/v1.2.0"]["spec"]
    assert (spec["packageName"], spec["revision"], spec["lifecycle"], spec["commit"]) == (
        "web",
        "1.2.0",
        "Published",
        c2,
    )
    status = ready(kube, namespace, "catalog")
    assert status["_status"]["packageCount"] == 1
    assert status["_status"]["lastFetchedCommit"] == c2

    catalog_repo.delete_ref("refs/tags/web/v1.2.0")
    third = syncer.sync(namespace, "catalog")
    assert third is not None and third.ready, third
    assert set(revisions(kube, namespace)) == {"web/v1.1.0"}, "the deleted tag's revision is gone"
    assert latest_tags(kube, namespace) == ["web/v1.1.0"]


def test_a_moved_tag_is_reported_and_not_followed(
    catalog_repo: git.Repository, syncer: Syncer, kube: Kube, namespace: str
) -> None:
    assert (syncer.sync(namespace, "catalog") or pytest.fail()).ready
    recorded = revisions(kube, namespace)["web/v1.1.0"]["spec"]["commit"]

    moved_to = catalog_repo.commit_files("main", {"web/README.md": b"sneaky"}, "change")
    catalog_repo.tag("web/v1.1.0", moved_to, force=True)
    outcome = syncer.sync(namespace, "catalog")
    assert outcome is not None and not outcome.ready and outcome.reason == "TagMoved"

    rev = revisions(kube, namespace)["web/v1.1.0"]
    assert rev["spec"]["commit"] == recorded, "the recorded commit is kept"
    conditions = {c["type"]: c for c in rev.get("status", {}).get("conditions", [])}
    assert conditions["TagMoved"]["status"] == "True"
    assert ready(kube, namespace, "catalog")["reason"] == "TagMoved"
    events = [
        e
        for e in kube.list("v1", "Event", namespace)
        if e.get("reason") == "TagMoved" and e["involvedObject"]["name"] == rev["metadata"]["name"]
    ]
    assert len(events) == 1 and moved_to[:12] in events[0]["message"]


def test_a_revision_with_the_wrong_version_is_reported_and_the_others_go_on(
    catalog_repo: git.Repository, syncer: Syncer, kube: Kube, namespace: str
) -> None:
    bad = catalog_repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.3.0")}, "oops")
    catalog_repo.tag("web/v1.4.0", bad)
    outcome = syncer.sync(namespace, "catalog")
    assert outcome is not None and outcome.reason == "InvalidRevisions"
    assert "web/kubepkg.json@web/v1.4.0: spec.version" in outcome.message
    assert set(revisions(kube, namespace)) == {"web/v1.1.0"}


def test_an_oversize_catalog_revision_is_reported_and_the_others_go_on(
    catalog_repo: git.Repository, syncer: Syncer, kube: Kube, namespace: str
) -> None:
    big = catalog_repo.commit_files(
        "main", {"web/kubepkg.json": b" " * (MAX_FILE_BYTES + 1)}, "too big"
    )
    catalog_repo.tag("web/v1.4.0", big)
    good = catalog_repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.5.0")}, "ok")
    catalog_repo.tag("web/v1.5.0", good)
    outcome = syncer.sync(namespace, "catalog")
    assert outcome is not None and outcome.reason == "InvalidRevisions", outcome
    assert (
        f"web/kubepkg.json@web/v1.4.0: {MAX_FILE_BYTES + 1} bytes, over the 4 MiB limit"
        in outcome.message
    )
    assert set(revisions(kube, namespace)) == {"web/v1.1.0", "web/v1.5.0"}


def served_web_and_db(served: Server, kube: Kube, namespace: str) -> git.Repository:
    """A deployment repository over authenticated smart HTTP holding web (JSON) and db (YAML),
    and Repository ``prod`` in ``namespace`` naming it with its secret."""
    repo = git.init_bare(served.root / "prod.git")
    repo.commit_files(
        "main",
        {
            "apps/web/kubepkg.json": kubepkg("web", "1.0.0"),
            "apps/db/kubepkg.yaml": kubepkg("db", "2.0.0", yaml=True),
        },
        "deploy web and db",
    )
    add_secret(kube, namespace, "git-auth", username="alice", password="pw")
    add_repository(
        kube,
        namespace,
        "prod",
        served.repo_url("prod.git"),
        "deployment",
        secretRef={"name": "git-auth"},
    )
    return repo


def test_a_push_to_a_deployment_repo_creates_updates_and_deletes_kubepkgs(
    served: Server, syncer: Syncer, kube: Kube, namespace: str
) -> None:
    repo = served_web_and_db(served, kube, namespace)
    # Someone else's KubePkg in the same namespace must survive every prune.
    kube.apply(
        json.loads(kubepkg("manual", "0.1.0"))
        | {"metadata": {"name": "manual", "namespace": namespace}}
    )

    def live() -> dict[str, str]:
        return {
            o["metadata"]["name"]: o["spec"]["version"]
            for o in kube.list(API_VERSION, KIND, namespace)
        }

    assert (syncer.sync(namespace, "prod") or pytest.fail()).ready
    assert live() == {"web": "1.0.0", "db": "2.0.0", "manual": "0.1.0"}
    web = kube.get(API_VERSION, KIND, "web", namespace) or {}
    annotations = web["metadata"]["annotations"]
    assert annotations[deployment.ANNOTATION_REPOSITORY] == f"{namespace}/prod"
    assert annotations[deployment.ANNOTATION_PATH] == "apps/web/kubepkg.json"

    head = repo.commit_files(
        "main",
        {"apps/web/kubepkg.json": kubepkg("web", "1.1.0"), "apps/db/kubepkg.yaml": None},
        "upgrade web, drop db",
    )
    outcome = syncer.sync(namespace, "prod")
    assert outcome is not None and outcome.ready, outcome
    # db was written with the reconciler's finalizer; no reconciler runs here to prune its
    # objects and release it, so it stays, being deleted, until one does (here: the test).
    db = kube.get(API_VERSION, KIND, "db", namespace) or {}
    assert db["metadata"].get("deletionTimestamp"), db
    kube.patch(API_VERSION, KIND, "db", namespace, {"metadata": {"finalizers": []}})
    assert live() == {"web": "1.1.0", "manual": "0.1.0"}
    web = kube.get(API_VERSION, KIND, "web", namespace) or {}
    assert web["metadata"]["annotations"][deployment.ANNOTATION_COMMIT] == head
    assert ready(kube, namespace, "prod")["_status"]["packageCount"] == 1

    writes = kube.writes
    idle = syncer.sync(namespace, "prod")
    assert idle is not None and idle.reason == "Unchanged" and not idle.fetched
    assert kube.writes == writes, "an idle pass writes nothing to the API"


def test_an_oversize_file_or_an_alias_bomb_fails_alone_and_the_rest_syncs(
    served: Server, syncer: Syncer, kube: Kube, namespace: str
) -> None:
    repo = served_web_and_db(served, kube, namespace)
    assert (syncer.sync(namespace, "prod") or pytest.fail()).ready
    bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    repo.commit_files(
        "main",
        {
            "apps/web/kubepkg.json": kubepkg("web", "1.1.0"),
            "apps/db/kubepkg.yaml": b"# padding\n" * (MAX_FILE_BYTES // 10 + 1),
            "apps/bomb/kubepkg.yaml": "\n".join(bomb).encode(),
        },
        "upgrade web; break db; add a bomb",
    )
    outcome = syncer.sync(namespace, "prod")
    assert outcome is not None and not outcome.failed, outcome
    assert "apps/db/kubepkg.yaml:" in outcome.message and "over the 4 MiB limit" in outcome.message
    assert (
        "apps/bomb/kubepkg.yaml:7:5: invalid YAML: more than 1000000 nodes, counting every expansion"
        in outcome.message
    )
    live = {
        o["metadata"]["name"]: o["spec"]["version"] for o in kube.list(API_VERSION, KIND, namespace)
    }
    assert live == {"web": "1.1.0", "db": "2.0.0"}, "web synced; db kept as it was"


def test_an_unreachable_remote_leaves_every_object_in_place_and_says_why(
    tmp_path: Path, kube: Kube, namespace: str
) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    repo = git.init_bare(root / "prod.git")
    repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.0.0")}, "deploy")
    cat = git.init_bare(root / "cat.git")
    cat.tag(
        "web/v1.0.0", cat.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.0.0")}, "c")
    )
    syncer = Syncer(kube, tmp_path / "state")
    with http_server(root) as server:
        add_repository(kube, namespace, "prod", server.repo_url("prod.git"), "deployment")
        add_repository(kube, namespace, "cat", server.repo_url("cat.git"), "catalog")
        assert all(o.ready for o in syncer.sync_all(namespace))
    # The server is gone now.
    outcomes = {o.key: o for o in syncer.sync_all(namespace)}
    for key in (f"{namespace}/prod", f"{namespace}/cat"):
        assert outcomes[key].failed and outcomes[key].reason == "FetchFailed"
        cond = ready(kube, namespace, key.split("/")[1])
        assert cond["status"] == "False" and cond["reason"] == "FetchFailed"
        assert "127.0.0.1" in cond["message"] and "nothing was deleted" in cond["message"]
    assert [o["metadata"]["name"] for o in kube.list(API_VERSION, KIND, namespace)] == ["web"]
    assert set(revisions(kube, namespace)) == {"web/v1.0.0"}


def test_webhooks_verify_signatures_and_a_valid_push_syncs_at_once(
    tmp_path: Path, kube: Kube, namespace: str
) -> None:
    root = tmp_path / "srv"
    repo = git.init_bare(root / "catalog.git")
    repo.tag(
        "web/v1.0.0", repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.0.0")}, "c")
    )
    add_secret(kube, namespace, "hook", token="hook-secret")
    add_repository(
        kube,
        namespace,
        "catalog",
        f"file://{root / 'catalog.git'}",
        "catalog",
        interval="1h",
        webhookSecretRef={"name": "hook"},
    )
    add_repository(
        kube, namespace, "nohook", f"file://{root / 'catalog.git'}", "catalog", interval="1h"
    )
    secrets = WebhookSecrets(kube, namespace)
    with repositories_runtime(kube, Syncer(kube, tmp_path / "state"), namespace) as runtime:
        secrets.start()
        webhooks = WebhookServer(
            parse_listen(f"127.0.0.1:{free_port()}", "--webhook-listen"),
            secrets.lookup,
            runtime.trigger,
        )
        webhooks.start()
        try:
            check_webhooks(kube, namespace, repo, root, secrets, webhooks.port)
        finally:
            webhooks.stop()
            secrets.stop()


def check_webhooks(
    kube: Kube,
    namespace: str,
    repo: git.Repository,
    root: Path,
    secrets: WebhookSecrets,
    port: int,
) -> None:
    base = f"http://127.0.0.1:{port}/hooks/{namespace}"
    for name in ("catalog", "nohook"):  # both first syncs done before the push
        kube.wait_for(GITOPS_API_VERSION, "Repository", name, namespace, condition="Ready")
    before = set(revisions(kube, namespace))

    c2 = repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.1.0")}, "c2")
    repo.tag("web/v1.1.0", c2)
    body = json.dumps({"ref": "refs/tags/web/v1.1.0"}).encode()

    def post(path: str, headers: dict[str, str]) -> int:
        request = urllib.request.Request(
            f"{base}/{path}", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    good = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    refreshes = secrets.refreshes
    for _ in range(10):  # unknown and unauthorised look the same: 404
        assert (
            post(
                "catalog",
                {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
            )
            == 404
        )
        assert post("catalog", {"X-GitHub-Event": "push"}) == 404
        assert post("catalog", {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "wrong"}) == 404
        assert post("nohook", {"X-GitHub-Event": "push", "X-Hub-Signature-256": good}) == 404
        assert post("missing", {"X-GitHub-Event": "push", "X-Hub-Signature-256": good}) == 404
    # 50 refused requests: no API call of their own; the misses asked for one cache refresh
    # (rate-limited), not one per request.
    assert secrets.refreshes - refreshes <= 2
    assert set(revisions(kube, namespace)) == before, "a refused webhook changes nothing"

    assert post("catalog", {"X-GitHub-Event": "push", "X-Hub-Signature-256": good}) == 202
    name = catalog.revision_name("catalog", "web", "1.1.0")
    kube.wait_for(GITOPS_API_VERSION, catalog.KIND, name, namespace, timeout=30)

    # A webhook added while the controller runs: a request that misses the cache asks for a
    # refresh (at most one per 5 s); a retry, as forges retry, then verifies.
    add_repository(
        kube,
        namespace,
        "later",
        f"file://{root / 'catalog.git'}",
        "catalog",
        interval="1h",
        webhookSecretRef={"name": "hook"},
    )
    later = [post("later", {"X-GitHub-Event": "push", "X-Hub-Signature-256": good})]
    while later[-1] == 404 and len(later) < 100:
        threading.Event().wait(0.2)
        later.append(post("later", {"X-GitHub-Event": "push", "X-Hub-Signature-256": good}))
    assert later[-1] == 202, later


def test_controller_once_exits_non_zero_when_a_repository_failed(
    tmp_path: Path, kubeconfig: str, kube: Kube, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from gitops_kubepkg.cli import main

    root = tmp_path / "srv"
    repo = git.init_bare(root / "prod.git")
    repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.0.0")}, "deploy")
    args = ["--kubeconfig", kubeconfig, "-n", namespace]
    assert (
        main(
            [
                "repo",
                "add",
                "prod",
                "--url",
                f"file://{root / 'prod.git'}",
                "--type",
                "deployment",
                *args,
            ]
        )
        == 0
    )
    once = ["controller", "--once", "--state-dir", str(tmp_path / "state"), *args]
    assert "applied Repository" in capsys.readouterr().out
    assert main([*once, "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["repository"] == f"{namespace}/prod" and out[0]["ready"]

    assert (
        main(
            [
                "repo",
                "add",
                "gone",
                "--url",
                f"file://{root / 'nope.git'}",
                "--type",
                "catalog",
                *args,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(once) == 1
    captured = capsys.readouterr()
    assert "FetchFailed" in captured.out, captured.out + captured.err


def test_the_mirror_of_a_deleted_repository_is_removed_and_a_shared_one_kept(
    kube: Kube, namespace: str, tmp_path: Path, syncer: Syncer
) -> None:
    shared = git.init_bare(tmp_path / "shared.git")
    shared.commit_files("main", {"a/kubepkg.json": kubepkg("a", "1.0.0")}, "a")
    alone = git.init_bare(tmp_path / "alone.git")
    alone.commit_files("main", {"b/kubepkg.json": kubepkg("b", "1.0.0")}, "b")
    for name, path in [("one", "shared.git"), ("two", "shared.git"), ("three", "alone.git")]:
        add_repository(kube, namespace, name, f"file://{tmp_path / path}", "catalog")
    mirrors = tmp_path / "state" / "mirrors"
    with repositories_runtime(kube, syncer, namespace):
        for name in ("one", "two", "three"):
            kube.wait_for(GITOPS_API_VERSION, "Repository", name, namespace, condition="Ready")
        assert len(list(mirrors.iterdir())) == 2

        kube.delete(GITOPS_API_VERSION, "Repository", "three", namespace)
        kube.delete(GITOPS_API_VERSION, "Repository", "one", namespace)
        # The runtime sees the deletions and removes what no Repository names (bounded wait).
        for _ in range(150):
            if len(list(mirrors.iterdir())) == 1:
                break
            threading.Event().wait(0.1)
    # "two" still names the shared URL; nothing names alone.git any more.
    (left,) = mirrors.iterdir()
    assert left == syncer.mirror(repository_spec(kube, namespace, "two")).path
    assert syncer.sync(namespace, "two") is not None
    assert ready(kube, namespace, "two")["status"] == "True"


def repository_spec(kube: Kube, namespace: str, name: str) -> Any:
    from gitops_kubepkg.controller import repository

    obj = kube.get(GITOPS_API_VERSION, "Repository", name, namespace)
    assert obj is not None
    return repository.parse(obj)


def test_a_kubepkg_deleted_by_hand_is_written_again_from_its_file(
    kubeconfig: str, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """Git says the KubePkg exists, so its Repository writes it again once it is gone; while it is
    being deleted (another finalizer holds it) the Repository leaves it alone and stays Ready."""
    from tests.integration.controllers import RunningController, wait_until

    root = tmp_path / "srv"
    repo = git.init_bare(root / "prod.git")
    name = f"heal-{namespace[-6:]}"
    repo.commit_files("main", {f"{name}/kubepkg.json": kubepkg(name, "1.0.0")}, "deploy")
    add_repository(kube, namespace, "prod", f"file://{root / 'prod.git'}", "deployment")
    hold = "example.com/hold"

    def live() -> dict[str, Any] | None:
        return kube.get(API_VERSION, KIND, name, namespace)

    def version() -> str:
        config = kube.get("v1", "ConfigMap", name, namespace)
        return str(((config or {}).get("data") or {}).get("version", ""))

    args = ("-n", namespace, "--no-leader-elect")
    with RunningController(kubeconfig, tmp_path / "state", *args, log=tmp_path / "log") as ctl:
        try:
            first = wait_until(lambda: version() == "1.0.0" and live(), 60, "the first apply")
            # The Repository wrote it with the reconciler's finalizer: no pass had to add it.
            assert first["metadata"]["finalizers"] == ["gitops.kubepkg.dev/finalizer"]

            kube.delete(API_VERSION, KIND, name, namespace)
            again = wait_until(
                lambda: (o := live()) and o["metadata"]["uid"] != first["metadata"]["uid"] and o,
                60,
                "the KubePkg written again",
            )
            assert again["spec"]["version"] == "1.0.0"

            kube.patch(API_VERSION, KIND, name, namespace, {"metadata": {"finalizers": [
                "gitops.kubepkg.dev/finalizer", hold]}})  # fmt: skip
            kube.delete(API_VERSION, KIND, name, namespace)
            # Our finalizer goes (the objects are pruned), the other one holds the KubePkg.
            wait_until(
                lambda: (o := live()) and o["metadata"]["finalizers"] == [hold], 60, "our cleanup"
            )
            repo.commit_files("main", {f"{name}/kubepkg.json": kubepkg(name, "2.0.0")}, "bump")
            kube.patch(GITOPS_API_VERSION, "Repository", "prod", namespace, {"metadata": {
                "annotations": {"gitops.kubepkg.dev/requestedAt": "bump"}}})  # fmt: skip
            status = wait_until(
                lambda: (
                    (c := ready(kube, namespace, "prod"))["_status"].get("lastHandledReconcileAt")
                    == "bump"
                    and c
                ),
                60,
                "the requested sync",
            )
            assert status["status"] == "True", status
            held = live()
            assert held is not None and held["spec"]["version"] == "1.0.0"  # not written to
            assert "is being deleted; created again from its file once it is gone" in ctl.log()

            kube.patch(API_VERSION, KIND, name, namespace, {"metadata": {"finalizers": []}})
            wait_until(lambda: version() == "2.0.0", 60, "2.0.0 applied from the file")
            last = live()
            assert last is not None and last["spec"]["version"] == "2.0.0"
        finally:
            obj = live()
            if obj is not None and hold in (obj["metadata"].get("finalizers") or []):
                kube.patch(API_VERSION, KIND, name, namespace, {"metadata": {"finalizers": []}})
