"""Benchmark: blob download throughput, our registry beside CNCF Distribution, 8 clients at once.

The same image (one large layer) is imported into our store and pushed into Distribution; both
servers run as their own processes on loopback; 8 ``curl`` processes each download the layer
``--rounds`` times from one server, then from the other. Prints MiB/s for each and the ratio.

    .venv/bin/python bench/registry_serve.py --layer-mb 256      # the real run
    .venv/bin/python bench/registry_serve.py --smoke             # 32 MiB
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry_tarball import build_tarball  # noqa: E402

from tests.integration.registry_peers import Distribution, free_port  # noqa: E402

CLIENTS = 8


def layer_digest(tar: Path) -> tuple[str, int]:
    """The largest blob of the tarball (its one layer)."""
    from gitops_kubepkg.registry.airgaptar import scan_names

    with open(tar, "rb") as f:
        entries = [e for e in scan_names(f, str(tar)) if e.name.startswith("blobs/")]
    big = max(entries, key=lambda e: e.size)
    return "sha256:" + big.name.rsplit("/", 1)[1], big.size


def download(url: str, rounds: int) -> float:
    """Seconds for CLIENTS curl processes to each fetch ``url`` ``rounds`` times."""
    curl = shutil.which("curl") or "curl"
    args = [curl, "-sf", "-o", "/dev/null"]
    for _ in range(rounds - 1):
        args += [url, "-o", "/dev/null"]
    args.append(url)
    start = time.perf_counter()
    procs = [subprocess.Popen(args) for _ in range(CLIENTS)]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"curl failed: {codes}")
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--layer-mb", type=int, default=256)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    layer_mb = 32 if args.smoke else args.layer_mb
    with tempfile.TemporaryDirectory(prefix="bench-serve-", dir=os.environ.get("BENCH_TMP")) as t:
        tmp = Path(t)
        tar = build_tarball(tmp / "img.tar", layer_mb, layer_mb)
        digest, size = layer_digest(tar)
        cli = [sys.executable, "-m", "gitops_kubepkg"]
        store = tmp / "store"
        subprocess.run(
            [*cli, "airgap", "import", str(tar), "--store", str(store)],
            check=True,
            capture_output=True,
        )
        dist = Distribution(tmp / "dist")
        port = free_port()
        ours = subprocess.Popen(
            [*cli, "registry", "serve", "--root", str(store), "--listen", f"127.0.0.1:{port}"],
            stderr=subprocess.PIPE,
        )
        try:
            assert ours.stderr is not None
            ours.stderr.readline()  # "serving ... on ..."
            out = subprocess.run(
                [*cli, "airgap", "import", str(tar), "--to-registry", dist.url, "-o", "json"],
                check=True,
                capture_output=True,
                text=True,
            )
            assert json.loads(out.stdout)["tags"]
            repo = "registry.example.com/bench/image"
            ours_url = f"http://127.0.0.1:{port}/v2/{repo}/blobs/{digest}"
            dist_url = f"{dist.url}/v2/registry.example.com/bench/image/blobs/{digest}"
            download(ours_url, 1)  # warm both
            download(dist_url, 1)
            results = {}
            for name, url in (("ours", ours_url), ("distribution", dist_url)):
                best = min(download(url, args.rounds) for _ in range(3))
                results[name] = CLIENTS * args.rounds * size / best / (1 << 20)
        finally:
            ours.terminate()
            ours.wait(10)
            dist.stop()
    print(f"blob: {size / (1 << 20):.0f} MiB, {CLIENTS} clients x {args.rounds} downloads each")
    for name, rate in results.items():
        print(f"{name:14}{rate:10.0f} MiB/s")
    print(
        f"ratio ours / distribution: {results['ours'] / results['distribution']:.2f} (target >= 1)"
    )


if __name__ == "__main__":
    main()
