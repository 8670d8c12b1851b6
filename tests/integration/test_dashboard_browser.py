"""The dashboard in a real browser: headless Chromium (Debian's chromium-headless-shell, driven
through the DevTools protocol by tests/integration/browser.py) against the real controller
(``controller --dashboard-listen --dashboard-actions``) on the local control plane.

One world for the module (two cores are shared): a catalog with web 1.0.0 and 1.1.0, a
deployment repository where the CLI promoted and approved web 1.0.0, a KubePkg kept in a
directory whose name is HTML, and a Repository whose branch is an HTML tag. Users are
ServiceAccounts with tokens: a viewer (get/list/watch), an operator (also patch), a stranger
(no RBAC). Each page is checked for what the cluster holds and photographed at 1280x800 and
375x812 into build/screenshots/ (the CI artefact the README names).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kubepkg import git
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.registry.client import RegistryClient
from gitops_kubepkg.registry.digest import digest_bytes
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from tests.integration.browser import (
    CHROMIUM,
    DESKTOP,
    PHONE,
    BrowserError,
    Chromium,
    NetnsRelay,
    Page,
)
from tests.integration.controllers import RunningController, service_account_token, wait_until
from tests.integration.git_servers import free_port
from tests.integration.registry_peers import Distribution, build_image, have_peers, push

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason="needs chromium-headless-shell (scripts/install-system-deps)",
    ),
    pytest.mark.skipif(not have_peers(), reason="needs docker-registry and skopeo"),
]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "screenshots"
HOSTILE_DIR = "<b>bold</b>"
HOSTILE_BRANCH = "<img/src=x/onerror=window.__pwned=1>"
AIRGAP_IMAGE = "docker.io/library/nginx:1.25"
VIEWER_ROLE, OPERATOR_ROLE = "gitops-kubepkg-dashboard-viewer", "gitops-kubepkg-dashboard-operator"


def web(version: str, name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "manifests": {
                "cm": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name},
                    "data": {"version": version},
                }
            },
        },
    }


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.test",
    }
    done = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"gitops-kubepkg {' '.join(args)}: {done.stderr}"
    return done


def bind(kube: Kube, namespace: str, user: str, cluster_role: str) -> None:
    """Bind one of deploy/dashboard.yaml's ClusterRoles to ServiceAccount ``user`` in
    ``namespace``, as docs/dashboard.md tells an operator to."""
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{user}-{cluster_role}", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": user, "namespace": namespace}],
        }
    )


def airgap_store(tmp: Path) -> tuple[Path, str]:
    """A registry store holding one image, imported the airgapped way: pushed to a real
    Distribution, exported with ``airgap export``, imported with ``airgap import --store``.
    Returns the store and the image's digest."""
    registry = Distribution(tmp / "source-registry")
    try:
        client = RegistryClient()
        image = build_image([4000, 60000], seed="dashboard")
        push(client, registry.endpoint, "library/nginx", "1.25", image)
        client.close()
        pkg = tmp / "airgap-pkg" / "kubepkg.json"
        pkg.parent.mkdir()
        doc = web("2.0.0", "edge")
        doc["spec"]["images"] = {AIRGAP_IMAGE: ""}
        pkg.write_text(json.dumps(doc))
        mirror = ["--registry-mirror", f"docker.io={registry.url}"]
        cli("airgap", "export", str(pkg), "--out", str(tmp / "export"), *mirror)
    finally:
        registry.stop()
    store = tmp / "store"
    cli("airgap", "import", str(tmp / "export"), "--store", str(store), "--images-only")
    return store, str(digest_bytes(image.raw))


@dataclass
class World:
    kube: Kube
    namespace: str
    url: str
    port: int
    catalog_url: str
    image_digest: str
    deployment: git.Repository
    tools: git.Repository
    deployment_url: str
    viewer: str
    operator: str
    stranger: str
    browser: Chromium
    tmp: Path

    def api(self, path: str, token: str) -> Any:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.load(r)

    def kubepkg(self, name: str) -> dict[str, Any] | None:
        return self.kube.get(API_VERSION, KIND, name, self.namespace)

    def branches(self) -> set[str]:
        return {r for r in self.deployment.refs() if r.startswith("refs/heads/")}


@pytest.fixture(scope="module")
def world(kube: Kube, kubeconfig: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("dashboard")
    namespace = f"dash-{uuid.uuid4().hex[:8]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    catalog = git.init_bare(tmp / "catalog.git")
    deployment = git.init_bare(tmp / "deploy.git")
    hostile = git.init_bare(tmp / "hostile.git")
    # A second catalog, whose published tag a test moves (its Repository then stops being Ready).
    tools = git.init_bare(tmp / "tools.git")
    commit = tools.commit_files("main", {"db/kubepkg.json": json.dumps(web("1.0.0", "db")).encode()}, "db")  # fmt: skip
    tools.tag("db/v1.0.0", commit, message="db 1.0.0")
    catalog_url, deployment_url = f"file://{tmp}/catalog.git", f"file://{tmp}/deploy.git"
    for version in ("1.0.0", "1.1.0"):
        commit = catalog.commit_files(
            "main", {"web/kubepkg.json": json.dumps(web(version)).encode()}, f"web {version}"
        )
        catalog.tag(f"web/v{version}", commit, message=f"web {version}")
    deployment.commit_files(
        "main",
        {f"apps/{HOSTILE_DIR}/kubepkg.json": json.dumps(web("0.1.0", "odd")).encode()},
        "a directory named with HTML",
    )
    hostile.commit_files("main", {"README.md": b"nothing\n"}, "start")
    cli("promote", catalog_url, "web@1.0.0", "--to", deployment_url, "--forge", "none")
    cli("approve", deployment_url, "promote/web/1.0.0")
    for name, url, kind, branch in (
        ("catalog", catalog_url, "catalog", "main"),
        ("deploy", deployment_url, "deployment", "main"),
        ("hostile", f"file://{tmp}/hostile.git", "deployment", HOSTILE_BRANCH),
        ("tools", f"file://{tmp}/tools.git", "catalog", "main"),
    ):
        kube.apply(
            {
                "apiVersion": GITOPS_API_VERSION,
                "kind": "Repository",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "url": url,
                    "type": kind,
                    "branch": branch,
                    "interval": "2s",
                    "forge": "none",
                },
            }
        )
    for doc in yaml.safe_load_all((REPO / "deploy" / "dashboard.yaml").read_text()):
        if doc["kind"] == "ClusterRole":
            kube.apply(doc)
    viewer = service_account_token(kube, namespace, "viewer")
    operator = service_account_token(kube, namespace, "operator")
    stranger = service_account_token(kube, namespace, "stranger")
    bind(kube, namespace, "viewer", VIEWER_ROLE)
    # Tracing an object reads the live object: the viewer also needs `get` on its kind
    # (Kubernetes' own `view` role; the dashboard role covers only our kinds).
    bind(kube, namespace, "viewer", "view")
    bind(kube, namespace, "operator", VIEWER_ROLE)
    bind(kube, namespace, "operator", OPERATOR_ROLE)
    # The airgap and registry pages need `get` on airgapimports where the controller runs:
    # cluster-wide here (the test's controller has no POD_NAMESPACE), so the namespace's
    # binding of the viewer role does not reach it.
    airgap_reader = f"{namespace}-airgap-reader"
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": airgap_reader},
            "rules": [
                {
                    "apiGroups": ["gitops.kubepkg.dev"],
                    "resources": ["airgapimports"],
                    "verbs": ["get"],
                }
            ],
        }
    )
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": airgap_reader},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": airgap_reader,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": user, "namespace": namespace}
                for user in ("viewer", "operator")
            ],
        }
    )
    store, image_digest = airgap_store(tmp)
    port = free_port()
    env_before = os.environ.get("GIT_AUTHOR_NAME")
    os.environ.setdefault("GIT_AUTHOR_NAME", "Dashboard")  # the promote action commits
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "dashboard@example.test")
    try:
        with (
            RunningController(
                kubeconfig,
                tmp / "state",
                "-n",
                namespace,
                "--no-leader-elect",
                "--dashboard-listen",
                f"127.0.0.1:{port}",
                "--dashboard-actions",
                "--serve-registry",
                str(store),
                "--registry-listen",
                f"127.0.0.1:{free_port()}",
                log=tmp / "controller.log",
            ) as controller,
            Chromium() as browser,
        ):
            w = World(
                kube,
                namespace,
                f"http://127.0.0.1:{port}",
                port,
                catalog_url,
                image_digest,
                deployment,
                tools,
                deployment_url,
                viewer,
                operator,
                stranger,
                browser,
                tmp,
            )

            def settled() -> bool:
                try:
                    overview = w.api("/api/overview", viewer)
                except (OSError, urllib.error.HTTPError):
                    return False
                pkgs = {p["name"]: p for p in overview["kubepkgs"]}
                return "web" in pkgs and pkgs["web"]["health"] == "Ready" and "odd" in pkgs

            try:
                wait_until(settled, 120, "the controller to apply web and odd")
            except AssertionError as e:
                raise AssertionError(f"{e}\n{controller.log()[-3000:]}") from None
            yield w
    finally:
        if env_before is None:
            os.environ.pop("GIT_AUTHOR_NAME", None)
            os.environ.pop("GIT_AUTHOR_EMAIL", None)
        kube.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", airgap_reader)
        kube.delete("rbac.authorization.k8s.io/v1", "ClusterRole", airgap_reader)
        kube.delete("v1", "Namespace", namespace)


@pytest.fixture(autouse=True)
def _pages_closed(world: World) -> Iterator[None]:
    """Each test's pages go with it: an open page holds one of the 4 streams a token may have."""
    yield
    world.browser.close_pages()


def sign_in(
    world: World,
    token: str,
    size: tuple[int, int] = DESKTOP,
    mobile: bool = False,
    browser: Chromium | None = None,
) -> Page:
    """A fresh browser context that signs in with ``token`` through the login form."""
    page = (browser or world.browser).page(size, mobile=mobile)
    page.goto(world.url + "/")
    page.wait_for("document.querySelector('form.login #token')", "the login form")
    page.type_into("#token", token)
    page.click("form.login button[type=submit]")
    page.wait_for("document.querySelector('main').dataset.page === 'overview'", "the overview")
    return page


def show(page: Page, route: str, name: str) -> None:
    """Go to ``#/route`` inside the app and wait until that page has rendered."""
    page.js(f"location.hash = {json.dumps(route)}")
    page.wait_for(
        f"document.querySelector('main').dataset.page === {json.dumps(name)}", f"the {name} page"
    )


def photograph(page: Page, name: str) -> None:
    """A screenshot for build/screenshots/, after checking that no JavaScript value leaked
    into the page as a word (an unfiltered null, an object turned into text)."""
    leaked = re.findall(r"\bnull\b|\bundefined\b|\[object Object\]|\bNaN\b", page.text("main"))
    assert leaked == [], f"{name}: {leaked} shown as text"
    page.screenshot(SCREENSHOTS / f"{name}.png")


def unexpected_errors(page: Page) -> list[str]:
    """The page's errors, but for the 401 that asking /api/whoami before login answers."""
    return [
        e for e in page.console_errors() if not ("status of 401" in e and e.endswith("/api/whoami"))
    ]


def only_same_origin(world: World, page: Page) -> None:
    sent = page.requests()
    assert sent, "the page sent requests"
    strays = [u for u in sent if not u.startswith(world.url + "/")]
    assert strays == [], f"requests that left the dashboard's origin: {strays}"


def test_each_page_renders_what_the_cluster_holds(world: World) -> None:
    page = sign_in(world, world.viewer)
    ns = world.namespace
    # Overview: the three Repositories, the KubePkgs with health, the upgrade to 1.1.0.
    page.wait_for(
        "document.querySelector('#upgrades tbody td[data-label=Available]')", "an upgrade row"
    )
    repos = page.text("#repositories")
    for name in ("catalog", "deploy", "hostile"):
        assert name in repos
    deploy_commit = world.deployment.resolve("refs/heads/main")
    assert deploy_commit is not None and deploy_commit[:12] in repos
    pkgs = page.text("#kubepkgs")
    assert "web" in pkgs and "1.0.0" in pkgs and "Ready" in pkgs and ns in pkgs
    assert "1.1.0" in page.text("#upgrades")
    assert (
        page.js("document.querySelectorAll('#kubepkgs .badge[data-health=Ready] svg').length") >= 1
    )
    assert page.text("#user").endswith(f":{ns}:viewer")
    photograph(page, "overview-desktop")
    # Dark mode is the same page under prefers-color-scheme.
    page.color_scheme("dark")
    background = page.js("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)" and background != "rgb(246, 247, 249)"
    photograph(page, "overview-desktop-dark")
    page.color_scheme("light")

    # Tables sort and filter.
    page.type_into("#repositories-filter", "hostile")
    page.wait_for("document.querySelectorAll('#repositories tbody tr').length === 1", "the filter")
    page.type_into("#repositories-filter", "")
    page.click("#repositories th:nth-child(3) button")
    first = page.js("document.querySelector('#repositories tbody tr td:nth-child(3)').innerText")
    page.click("#repositories th:nth-child(3) button")
    assert (
        page.js("document.querySelector('#repositories th:nth-child(3)').getAttribute('aria-sort')")
        == "descending"
    )
    assert (
        page.js("document.querySelector('#repositories tbody tr td:nth-child(3)').innerText")
        != first
    )

    # The KubePkg page: version, source, history, conditions, the inventory tree, a trace.
    show(page, f"#/kubepkg/{ns}/web", "kubepkg")
    body = page.text("main")
    for expected in ("1.0.0", "web/kubepkg.json", deploy_commit):
        assert expected in body, body
    assert page.js("document.querySelectorAll('#history tbody tr:not(.empty)').length") >= 1
    assert "Ready" in page.text("#conditions")
    assert "ConfigMap" in page.text(".tree") and f"{ns}/web" in page.text(".tree")
    page.click(".tree button[data-action=trace]")
    page.wait_for(
        "!document.getElementById('trace').hidden && document.querySelector('#trace dl')",
        "the trace panel",
    )
    assert "web/v1.0.0" in page.text("#trace"), "the trace names the catalog tag it came from"
    photograph(page, "kubepkg-desktop")

    # The catalog: both revisions, 1.1.0 latest.
    show(page, "#/catalog", "catalog")
    revisions = page.text("#revisions")
    assert "1.0.0" in revisions and "1.1.0" in revisions and "web/v1.1.0" in revisions
    latest = page.js(
        "[...document.querySelectorAll('#revisions tbody tr')].filter(r => r.querySelector('.tag')).map(r => r.innerText.split('\\t').slice(0, 2).join(' '))"
    )
    assert sorted(latest) == ["db 1.0.0latest", "web 1.1.0latest"]
    photograph(page, "catalog-desktop")

    # The airgap import and the registry it filled.
    show(page, "#/airgap", "airgap")
    assert page.js("document.querySelectorAll('#imports tbody tr:not(.empty)').length") == 1
    assert AIRGAP_IMAGE in page.text("#imports"), "the import says what it brought"
    assert world.image_digest in page.text("#airgap-images")
    assert "library/nginx" in page.text("#airgap-images")
    photograph(page, "airgap-desktop")
    show(page, "#/registry", "registry")
    row = page.text("#registry")
    assert "library/nginx" in row and "1.25" in row and world.image_digest in row
    assert "KiB" in row, "the image's size (manifest, config and two layers) is shown"
    photograph(page, "registry-desktop")
    assert unexpected_errors(page) == []
    only_same_origin(world, page)

    # A phone: every page is readable at 375x812 (no horizontal scrolling of the page).
    phone = sign_in(world, world.viewer, PHONE, mobile=True)
    for route, name in (
        ("#/", "overview"),
        (f"#/kubepkg/{ns}/web", "kubepkg"),
        ("#/catalog", "catalog"),
        ("#/airgap", "airgap"),
        ("#/registry", "registry"),
    ):
        show(phone, route, name)
        assert phone.js("document.documentElement.scrollWidth") <= PHONE[0], (
            f"{name} is wider than a phone"
        )
        photograph(phone, f"{name}-phone")


def test_a_git_push_appears_without_reload(world: World) -> None:
    page = sign_in(world, world.viewer)
    page.wait_for("document.getElementById('live').dataset.state === 'live'", "the event stream")
    page.js("window.__sameDocument = true")
    world.deployment.commit_files(
        "main", {"apps/extra/kubepkg.json": json.dumps(web("3.0.0", "extra")).encode()}, "extra"
    )
    page.wait_for(
        "[...document.querySelectorAll('#kubepkgs tbody tr')].some(r => r.innerText.includes('extra') && r.innerText.includes('3.0.0'))",
        "the pushed KubePkg on the overview",
        timeout=90,
    )
    assert page.js("window.__sameDocument") is True, "the page was not reloaded"

    # A published tag moved: the catalog page, open already, warns.
    show(page, "#/catalog", "catalog")
    assert "db/v1.0.0" in page.text("#revisions") and not page.js("document.getElementById('moved-tags')")  # fmt: skip
    sneaky = world.tools.commit_files("main", {"db/README.md": b"sneaky"}, "sneaky")
    world.tools.tag("db/v1.0.0", sneaky, force=True)
    page.wait_for("document.getElementById('moved-tags')", "the moved-tag warning", timeout=90)
    assert "db/v1.0.0" in page.text("#moved-tags")
    assert "Tag moved" in page.text("#revisions")
    assert page.js("window.__sameDocument") is True, "the page was not reloaded"
    photograph(page, "catalog-moved-tag-desktop")


def test_html_in_names_and_messages_is_shown_as_text(world: World) -> None:
    page = sign_in(world, world.viewer)
    # The Repository whose branch is an <img> tag: its name and error are text.
    hostile = next(
        r
        for r in world.api("/api/overview", world.viewer)["repositories"]
        if r["name"] == "hostile"
    )
    assert HOSTILE_BRANCH in hostile["message"], "the controller's message quotes the branch"
    page.wait_for(
        f"document.querySelector('#repositories').innerText.includes({json.dumps(HOSTILE_BRANCH)})",
        "the branch, as text, in the Repository's message",
    )
    assert page.js("document.querySelectorAll('main img').length") == 0
    # A KubePkg kept in a directory named <b>bold</b>: the path is text, nothing is bold.
    show(page, f"#/kubepkg/{world.namespace}/odd", "kubepkg")
    assert f"apps/{HOSTILE_DIR}/kubepkg.json" in page.text("main")
    assert page.js("document.querySelectorAll('main b, main img').length") == 0
    assert page.js("window.__pwned") is None


def test_an_unauthenticated_or_unauthorised_browser_sees_nothing(world: World) -> None:
    page = world.browser.page()
    page.goto(world.url + "/#/catalog")
    page.wait_for("document.querySelector('form.login #token')", "the login form")
    assert world.namespace not in page.text("body")
    photograph(page, "login-desktop")
    # A token the API server does not know.
    page.type_into("#token", "not-a-token")
    page.click("form.login button[type=submit]")
    page.wait_for(
        "document.querySelector('form.login .form-error[role=alert]').innerText", "the refusal"
    )
    assert world.namespace not in page.text("body")
    # A real token without RBAC: signed in, and shown nothing.
    stranger = sign_in(world, world.stranger)
    for route, name in (("#/", "overview"), ("#/catalog", "catalog")):
        show(stranger, route, name)
        assert world.namespace not in stranger.text("main") and "1.1.0" not in stranger.text("main")
        assert stranger.js("document.querySelectorAll('main tbody tr:not(.empty)').length") == 0
    stranger.js(f"location.hash = '#/kubepkg/{world.namespace}/web'")
    stranger.wait_for("document.querySelector('main').dataset.page === 'error'", "the refusal")
    assert "web/kubepkg.json" not in stranger.text("main")
    # Logging out ends the session: the next load asks for a token again.
    viewer = sign_in(world, world.viewer)
    viewer.click("#logout")
    viewer.wait_for("document.querySelector('form.login #token')", "the login form after logout")
    viewer.goto(world.url + "/")
    viewer.wait_for("document.querySelector('form.login #token')", "the login form after reload")


def requested_at(world: World) -> str | None:
    annotations = (world.kubepkg("web") or {})["metadata"].get("annotations") or {}
    return annotations.get("gitops.kubepkg.dev/requestedAt")


def test_actions_need_rbac_and_do_what_the_cli_does(world: World) -> None:
    before = requested_at(world)

    # A viewer is offered no button, and the API refuses the action all the same.
    viewer = sign_in(world, world.viewer)
    assert viewer.js("document.querySelectorAll('button[data-action]').length") == 0
    show(viewer, f"#/kubepkg/{world.namespace}/web", "kubepkg")
    assert viewer.js("document.querySelectorAll('button[data-action=reconcile]').length") == 0
    status = viewer.js(
        "fetch('/api/actions/reconcile', {method: 'POST', headers: {'Content-Type': 'application/json',"
        f" 'X-Requested-With': 'dashboard'}}, body: JSON.stringify({{kind: 'KubePkg', namespace: {json.dumps(world.namespace)}, name: 'web'}})}})"
        ".then(r => r.status)"
    )
    assert status == 403 and requested_at(world) == before, "a viewer cannot reconcile"

    # An operator (deploy/dashboard.yaml's operator role): reconcile as the CLI does it.
    operator = sign_in(world, world.operator)
    show(operator, f"#/kubepkg/{world.namespace}/web", "kubepkg")
    operator.click("button[data-action=reconcile]")
    wait_until(
        lambda: requested_at(world) not in (None, before),
        30,
        "the requestedAt annotation the reconcile CLI sets",
    )

    # Promote the upgrade: the branch `promote ... --upgrade` pushes.
    show(operator, "#/", "overview")
    operator.wait_for(
        "document.querySelector('#upgrades button[data-action=promote]')", "the promote button"
    )
    operator.js("document.getElementById('banner').hidden = true")
    operator.click("#upgrades button[data-action=promote]")
    operator.wait_for("!document.getElementById('banner').hidden", "the promotion's answer", 60)
    assert "info" in operator.js("document.getElementById('banner').className"), operator.text(
        "#banner"
    )
    assert "refs/heads/promote/web/1.1.0" in world.branches()
    assert "promote/web/1.1.0" in operator.text("#banner")
    photograph(operator, "overview-promoted-desktop")

    # The branch shows as a Proposed revision; Approve merges it as `approve` does.
    show(operator, "#/catalog", "catalog")
    operator.wait_for(
        "document.querySelector('#revisions button[data-action=approve]')",
        "the proposed revision's approve button",
        timeout=60,
    )
    photograph(operator, "catalog-proposed-desktop")
    operator.js("document.getElementById('banner').hidden = true")
    operator.click("#revisions button[data-action=approve]")
    operator.wait_for("!document.getElementById('banner').hidden", "the approval's answer", 60)
    assert "info" in operator.js("document.getElementById('banner').className"), operator.text(
        "#banner"
    )
    assert "refs/heads/promote/web/1.1.0" not in world.branches(), "merged and deleted"
    main = world.deployment.resolve("refs/heads/main")
    assert main is not None
    merged = json.loads(world.deployment.read(main, "web/kubepkg.json") or b"{}")
    assert merged["spec"]["version"] == "1.1.0"
    # ... and the controller applies it: the overview shows web at 1.1.0 without a reload.
    show(operator, "#/", "overview")
    operator.wait_for(
        "[...document.querySelectorAll('#kubepkgs tbody tr')].some(r => r.innerText.includes('web') && r.innerText.includes('1.1.0') && r.innerText.includes('Ready'))",
        "web 1.1.0 Ready on the overview",
        timeout=90,
    )


def test_the_pages_render_with_the_network_cut_off_but_for_the_controller(world: World) -> None:
    """Chromium in its own network namespace: loopback only, the dashboard's port relayed in.
    The relay is then cut for a while: the page says so, backs off, and once the relay is back
    shows what changed meanwhile, without a reload."""
    with NetnsRelay(world.port, world.tmp) as relay, Chromium(prefix=relay.prefix) as browser:
        page = sign_in(world, world.viewer, browser=browser)
        assert "web" in page.text("#kubepkgs")
        for route, name, expected in (
            (f"#/kubepkg/{world.namespace}/web", "kubepkg", "web/kubepkg.json"),
            ("#/catalog", "catalog", "web/v1.1.0"),
            ("#/airgap", "airgap", "Imports"),
            ("#/registry", "registry", "Repositories and tags"),
        ):
            show(page, route, name)
            assert expected in page.text("main")
        assert unexpected_errors(page) == []
        only_same_origin(world, page)

        show(page, "#/", "overview")
        page.wait_for("document.getElementById('live').dataset.state === 'live'", "the stream")
        page.js("window.__sameDocument = true")
        relay.cut()
        page.wait_for(
            "document.getElementById('live').dataset.state === 'reconnecting'", "the lost stream"
        )
        world.deployment.commit_files(
            "main", {"apps/late/kubepkg.json": json.dumps(web("4.0.0", "late")).encode()}, "late"
        )
        wait_until(
            lambda: any(
                p["name"] == "late" for p in world.api("/api/overview", world.viewer)["kubepkgs"]
            ),
            90,
            "the controller to take the KubePkg pushed while the page was cut off",
        )
        assert "late" not in page.text("#kubepkgs")
        relay.restore()
        page.wait_for(
            "[...document.querySelectorAll('#kubepkgs tbody tr')].some(r => r.innerText.includes('late'))",
            "the change made while cut off, once the stream is back",
            timeout=90,
        )
        assert page.js("document.getElementById('live').dataset.state") == "live"
        assert page.js("window.__sameDocument") is True, "the page was not reloaded"
        # Nothing else is reachable from in there.
        with pytest.raises(BrowserError, match="ERR_"):
            page.goto("http://192.0.2.1/")
    # The browser, its relay inside the namespace and its profile are gone.
    wait_until(browser.gone, 10, "the browser's process group and profile to go")
