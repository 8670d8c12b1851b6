"""Benchmark: airgap import of a large tarball beside skopeo and beside plain sha256.

One run, same tarball, same machine, page cache warm for everyone:
  * ``sha256``: hashlib over the file's bytes (the floor: import must hash every byte);
  * ``ours (store)``: ``gitops-kubepkg airgap import TAR --store DIR`` (verify + fsync'd writes);
  * ``ours (--to-registry)``: the same tarball pushed into CNCF Distribution on loopback;
  * ``skopeo``: ``skopeo copy oci-archive:TAR:REF docker://DISTRIBUTION/...``, the peer doing the
    same job as the line above.
Peak RSS of our import is measured for the full size and a quarter of it (it should be flat).

    .venv/bin/python bench/registry_import.py --size-mb 1024     # the real run
    .venv/bin/python bench/registry_import.py --smoke            # 64 MiB, a quick check
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry_tarball import REF, build_tarball  # noqa: E402

from tests.integration.registry_peers import SKOPEO, Distribution  # noqa: E402


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return elapsed, usage.ru_maxrss * 1024


def sha256_seconds(path: Path) -> float:
    start = time.perf_counter()
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return time.perf_counter() - start


def ours(tar: Path, *dest: str) -> list[str]:
    return [sys.executable, "-m", "gitops_kubepkg", "airgap", "import", str(tar), *dest]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--smoke", action="store_true", help="64 MiB instead of --size-mb")
    args = p.parse_args()
    size_mb = 64 if args.smoke else args.size_mb
    with tempfile.TemporaryDirectory(prefix="bench-import-", dir=os.environ.get("BENCH_TMP")) as t:
        tmp = Path(t)
        tar = build_tarball(tmp / "big.tar", size_mb)
        quarter = build_tarball(tmp / "quarter.tar", max(size_mb // 4, 16))
        mib = tar.stat().st_size / (1 << 20)
        sha256_seconds(tar)  # warm the page cache for everyone
        hash_s = sha256_seconds(tar)
        store_s, rss = run(ours(tar, "--store", str(tmp / "store")))
        _, rss_quarter = run(ours(quarter, "--store", str(tmp / "store-q")))
        dist = Distribution(tmp / "dist")
        try:
            push_s, _ = run(ours(tar, "--to-registry", f"{dist.url}/ours"))
            skopeo_s, _ = run(
                [
                    SKOPEO,
                    "--insecure-policy",
                    "copy",
                    "--dest-tls-verify=false",
                    f"oci-archive:{tar}:{REF}",
                    f"docker://{dist.host}/skopeo/image:1",
                ]
            )
        finally:
            dist.stop()
    print(f"tarball: {mib:.0f} MiB (and {quarter_mb(size_mb)} MiB for the RSS check)")
    print(f"{'':28}{'seconds':>9}{'MiB/s':>9}")
    for name, s in [
        ("sha256 of the bytes", hash_s),
        ("ours: import --store", store_s),
        ("ours: import --to-registry", push_s),
        ("skopeo copy -> Distribution", skopeo_s),
    ]:
        print(f"{name:28}{s:9.2f}{mib / s:9.0f}")
    print(f"ratio store import / sha256 throughput: {hash_s / store_s:.2f} (target >= 0.7)")
    print(f"ratio skopeo time / our --to-registry time: {skopeo_s / push_s:.2f} (target > 1)")
    print(f"ratio skopeo time / our --store time: {skopeo_s / store_s:.2f}")
    print(
        f"peak RSS of import: {rss / (1 << 20):.0f} MiB at {mib:.0f} MiB, "
        f"{rss_quarter / (1 << 20):.0f} MiB at a quarter (target < 100 MiB, flat)"
    )


def quarter_mb(size_mb: int) -> int:
    return max(size_mb // 4, 16)


if __name__ == "__main__":
    main()
