"""Real git servers on loopback for the source tests: ``git daemon``, smart HTTP, and SSH.

Test infrastructure only. Each server serves the bare repositories under one root directory and is
a separate process the fixture starts and stops:

- ``git daemon`` (git://), export-all, read-only;
- smart HTTP: ``git http-backend`` run as CGI behind the small ``http.server`` in this file (run as
  ``python git_servers.py http ROOT PORT [--user U --password P] [--token T]``), which answers 401
  unless the request carries the basic credentials or the bearer token it was started with;
- SSH: Debian's ``/usr/sbin/sshd`` on a loopback port with a generated host key and one
  authorized key; ``known_hosts`` holds the host's line for clients.

A "push" in the tests is a commit written straight into the served bare repository.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(
    port: int, process: subprocess.Popen[bytes], what: str, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Server:
    """A running server: its base URL (repository paths are appended) and its process."""

    url: str
    process: subprocess.Popen[bytes]
    root: Path

    def repo_url(self, name: str) -> str:
        return f"{self.url}/{name}"


@contextlib.contextmanager
def git_daemon(root: Path, *, writable: bool = False, host: str = "127.0.0.1") -> Iterator[Server]:
    """``git daemon`` serving every repository below ``root``; ``writable`` allows pushes;
    ``host`` another local address to listen on (the realnode tier's host side of the node)."""
    port = free_port()
    process = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            *(["--enable=receive-pack"] if writable else []),
            "--informative-errors",
            f"--base-path={root}",
            f"--listen={host}",
            f"--port={port}",
            str(root),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process, "git daemon", host)
        yield Server(f"git://{host}:{port}", process, root)
    finally:
        stop(process)


@contextlib.contextmanager
def http_server(
    root: Path, *, user: str = "", password: str = "", token: str = ""
) -> Iterator[Server]:
    port = free_port()
    args = [sys.executable, __file__, "http", str(root), str(port)]
    if user:
        args += ["--user", user, "--password", password]
    if token:
        args += ["--token", token]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    try:
        wait_listening(port, process, "git http server")
        yield Server(f"http://127.0.0.1:{port}", process, root)
    finally:
        stop(process)


@dataclass
class SshServer(Server):
    private_key: str
    public_key: str
    known_hosts: str
    other_known_hosts: str
    """A syntactically valid known_hosts line for this host and port with a different key."""


@contextlib.contextmanager
def ssh_server(root: Path, state: Path) -> Iterator[SshServer]:
    """sshd on loopback that lets the generated client key in (as the current user)."""
    state.mkdir(parents=True, exist_ok=True)
    for name in ("host", "client", "stranger"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(state / name)],
            check=True,
        )
    port = free_port()
    (state / "authorized_keys").write_text((state / "client.pub").read_text())
    config = state / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {state / 'host'}",
                f"PidFile {state / 'sshd.pid'}",
                f"AuthorizedKeysFile {state / 'authorized_keys'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    # sshd insists on its privilege separation directory even when run by hand.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(state / "sshd.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    host_key = (state / "host.pub").read_text().split()[:2]
    stranger = (state / "stranger.pub").read_text().split()[:2]
    user = (
        os.environ.get("USER")
        or subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    )
    try:
        wait_listening(port, process, "sshd")
        yield SshServer(
            url=f"ssh://{user}@127.0.0.1:{port}{root}",
            process=process,
            root=root,
            private_key=(state / "client").read_text(),
            public_key=(state / "client.pub").read_text(),
            known_hosts=f"[127.0.0.1]:{port} {' '.join(host_key)}\n",
            other_known_hosts=f"[127.0.0.1]:{port} {' '.join(stranger)}\n",
        )
    finally:
        stop(process)


# -- the smart HTTP server (runs as its own process) ----------------------------------------------


class _GitHandler(BaseHTTPRequestHandler):
    root: Path
    user = ""
    password = ""
    token = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _authorized(self) -> bool:
        if not (self.user or self.token):
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(value.encode(), self.token.encode())
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            if self.user and user == self.user and hmac.compare_digest(password, self.password):
                return True
            if self.token and hmac.compare_digest(password.encode(), self.token.encode()):
                return True
        return False

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        if not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": self.user or "token",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        body = self._body() if self.command == "POST" else b""
        env["CONTENT_LENGTH"] = str(len(body))
        result = subprocess.run(
            [HTTP_BACKEND], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["http"])
    parser.add_argument("root", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--user", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    handler = type(
        "Handler",
        (_GitHandler,),
        {"root": args.root, "user": args.user, "password": args.password, "token": args.token},
    )
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.serve_forever()


if __name__ == "__main__":
    main()


__all__ = ["Server", "SshServer", "git_daemon", "http_server", "shutil", "ssh_server"]
