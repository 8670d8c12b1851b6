"""``gitops-kubepkg registry serve``: the pull-only OCI registry over an imported store."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from gitops_kubepkg.serving import parse_listen


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "registry", help="serve imported images as a pull-only OCI registry"
    )
    rsub = p.add_subparsers(dest="registry_command", metavar="COMMAND", required=True)
    serve = rsub.add_parser(
        "serve",
        help="serve --root over the OCI distribution API (pull only)",
        description=(
            "Serve the store that `airgap import --store DIR` fills. Repository names keep the "
            "source host (docker.io/library/nginx); containerd and k3s can use it as a mirror "
            "(see docs/airgap.md). Write methods answer 405 UNSUPPORTED."
        ),
    )
    serve.add_argument("--root", type=Path, required=True, metavar="DIR", help="the store")
    serve.add_argument(
        "--listen",
        default="127.0.0.1:5000",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:5000; port 0 picks a free one)",
    )
    serve.add_argument("--access-log", action="store_true", help="log each request to stderr")
    serve.add_argument(
        "--htpasswd",
        type=Path,
        metavar="FILE",
        help="require HTTP basic auth against this htpasswd file (bcrypt: `htpasswd -B`)",
    )
    serve.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this chain")
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="the key of --tls-cert")
    serve.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from gitops_kubepkg.errors import InputError
    from gitops_kubepkg.registry.server import Htpasswd, RegistryServer, tls_context

    host, port = parse_listen(args.listen, "--listen")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    users = Htpasswd(args.htpasswd) if args.htpasswd is not None else None
    tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert is not None else None
    server = RegistryServer(args.root, host, port, access_log=args.access_log, users=users, tls=tls)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"serving {args.root} on {server.url} (pull only)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()
    return 0
