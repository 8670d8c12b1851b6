"""A real Gitea for promotion tests: built from the Go module, run on loopback with sqlite.

Place in the flow: test infrastructure only. ``build()`` compiles ``code.gitea.io/gitea`` (the
version in ``GITEA_VERSION``) from the Go module proxy once into the cache
(``$GITOPS_KUBEPKG_CACHE``, default ``~/.cache/gitops-kubepkg``), the way
``scripts/local-cluster`` builds the control plane: ``go mod download``, a copy of the module
source, ``go build`` with CGO off (sqlite is the pure-Go modernc driver, Gitea's default since
1.26; no build tags needed). About 10 minutes on 2 cores, then cached.

Gitea 1.27 requires two modules the Go module proxy refuses (403 Forbidden for every path under
``gitea.dev/``), so the build adjusts two things, and nothing that a test touches:

- ``gitea.dev/actions-proto-go`` v0.6.0 (the Actions runner protocol) is on the proxy under its
  previous path ``code.gitea.io/actions-proto-go`` at the same version; the build copies it and
  renames its module path (a ``replace`` to the copy);
- ``gitea.dev/sdk`` v1.1.0 has no such twin (``code.gitea.io/sdk/gitea`` stops at v0.25, another
  API). Its only user is ``services/migrations/gitea_downloader.go``, the importer that migrates a
  repository from another Gitea; the build leaves that file out (the importer is not
  registered) and points the requirement at an empty module.

``GiteaServer`` writes its own ``app.ini`` (sqlite, HTTP on a free loopback port, no SSH, no
registration, install locked), migrates the database, creates an admin user, starts ``gitea web``
in its own process group and always stops it in ``stop()``. ``create_repository`` makes a
repository with manual-merge detection on (so a merge pushed by ``approve`` marks the pull
request merged), ``pulls`` lists pull requests through the REST API.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.git_servers import free_port

GITEA_MODULE = "code.gitea.io/gitea"
GITEA_VERSION = "v1.27.3"
# Module path the proxy refuses -> (module the proxy serves with the same code, its version).
RENAMED = {"gitea.dev/actions-proto-go": ("code.gitea.io/actions-proto-go", "v0.6.0")}
# Module path the proxy refuses and no twin serves -> the files of the Gitea source that use it,
# left out of the build.
LEFT_OUT = {"gitea.dev/sdk": ["services/migrations/gitea_downloader.go"]}
CACHE = Path(os.environ.get("GITOPS_KUBEPKG_CACHE") or Path.home() / ".cache" / "gitops-kubepkg")
USER, PASSWORD = "gitops", "gitops-test-password"


def cache_dir() -> Path:
    return CACHE / f"gitea-{GITEA_VERSION}"


def binary() -> Path:
    return cache_dir() / "bin" / "gitea"


def _go(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    done = subprocess.run(
        ["go", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def _module_dir(module: str, version: str) -> Path:
    info = json.loads(_go("mod", "download", "-json", f"{module}@{version}"))
    return Path(info["Dir"])


def build() -> Path:
    """The Gitea binary, built once (under a lock, so parallel callers wait for one build)."""
    if binary().exists():
        return binary()
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary().exists():
            return binary()
        src = root / "src"
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(_module_dir(GITEA_MODULE, GITEA_VERSION), src)
        _writable(src)
        replaces = []
        for path, (module, version) in RENAMED.items():
            shim = root / "shim" / path.replace("/", "_")
            shutil.rmtree(shim, ignore_errors=True)
            shutil.copytree(_module_dir(module, version), shim)
            _writable(shim)
            for file in shim.rglob("*"):
                if file.suffix in (".go", ".mod") and file.is_file():
                    text = file.read_text()
                    file.write_text(text.replace(module, path))
            replaces.append(f"replace {path} => {shim}\n")
        for path, files in LEFT_OUT.items():
            for name in files:
                (src / name).unlink()
                (src / name.replace(".go", "_test.go")).unlink(missing_ok=True)
            empty = root / "shim" / path.replace("/", "_")
            shutil.rmtree(empty, ignore_errors=True)
            empty.mkdir(parents=True)
            (empty / "go.mod").write_text(f"module {path}\n\ngo 1.21\n")
            replaces.append(f"replace {path} => {empty}\n")
        with open(src / "go.mod", "a") as mod:
            mod.write("\n" + "".join(replaces))
        (root / "bin").mkdir(exist_ok=True)
        partial = root / "bin" / "gitea.partial"
        _go(
            "build",
            "-trimpath",
            "-ldflags",
            f"-X main.Version={GITEA_VERSION.lstrip('v')}",
            "-o",
            str(partial),
            ".",
            cwd=src,
        )
        partial.rename(binary())
    return binary()


def _writable(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)


class GiteaServer:
    """One ``gitea web`` on 127.0.0.1:<free port>, all state under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.gitea = build()
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "app.ini"
        self.config.write_text(
            f"""APP_NAME = gitops-kubepkg test
RUN_MODE = prod
WORK_PATH = {directory}

[database]
DB_TYPE = sqlite3
PATH = {directory}/gitea.db

[repository]
ROOT = {directory}/repositories
DEFAULT_BRANCH = main

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {self.port}
ROOT_URL = {self.url}/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = {cache_dir() / "src"}
APP_DATA_PATH = {directory}/data

[security]
INSTALL_LOCK = true
SECRET_KEY = {secrets.token_hex(16)}
INTERNAL_TOKEN = {secrets.token_hex(32)}

[service]
DISABLE_REGISTRATION = true
REQUIRE_SIGNIN_VIEW = false

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[cron]
ENABLED = false

[actions]
ENABLED = false

[log]
MODE = file
LEVEL = Info
ROOT_PATH = {directory}/log
"""
        )
        # Gitea refuses to run as root unless told; told only when the tests run as root (CI here).
        self.env = {
            **os.environ,
            "GITEA_WORK_DIR": str(directory),
            "GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT": "true" if os.getuid() == 0 else "false",
            "HOME": str(directory),
        }
        self._run("migrate")
        self._run(
            "admin",
            "user",
            "create",
            "--username",
            USER,
            "--password",
            PASSWORD,
            "--email",
            f"{USER}@example.test",
            "--admin",
            "--must-change-password=false",
        )
        self.log = open(directory / "web.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(self.gitea), "--config", str(self.config), "--work-path", str(directory), "web"],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                self.api("GET", "/version")
                break
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"gitea did not start: {(directory / 'web.log').read_text()[-3000:]}"
                    ) from None
                time.sleep(0.3)

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [
                str(self.gitea),
                "--config",
                str(self.config),
                "--work-path",
                str(self.directory),
                *args,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"gitea {' '.join(args[:2])} failed: {done.stdout}{done.stderr}")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(
            f"{self.url}/api/v1{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
        return json.loads(data) if data else None

    def create_repository(self, name: str) -> str:
        """An empty repository of the admin user, manual merges detected; its clone URL."""
        self.api(
            "POST", "/user/repos", {"name": name, "auto_init": False, "default_branch": "main"}
        )
        self.api("PATCH", f"/repos/{USER}/{name}", {"autodetect_manual_merge": True})
        return f"{self.url}/{USER}/{name}.git"

    def wait_pushed(self, name: str, timeout: float = 60) -> None:
        """Wait until Gitea has processed a first push (its push queue is asynchronous: until
        then the repository counts as empty, and an AGit push to it is refused)."""
        deadline = time.monotonic() + timeout
        while self.api("GET", f"/repos/{USER}/{name}").get("empty", True):
            if time.monotonic() > deadline:
                raise RuntimeError(f"gitea: {USER}/{name} still empty after {timeout:g}s")
            time.sleep(0.2)

    def pulls(self, name: str, state: str = "all") -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api("GET", f"/repos/{USER}/{name}/pulls?state={state}")
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@contextlib.contextmanager
def gitea_server(directory: Path) -> Iterator[GiteaServer]:
    server = GiteaServer(directory)
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    print(build())
