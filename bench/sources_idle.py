"""Idle poll cost: 100 unchanged repositories, one poll round, our mirror beside ``git fetch``.

Both sides start from up-to-date mirrors of the same 100 repositories served by one ``git daemon``
on loopback (``--transport file`` reads them straight from disk instead). Ours: ``Mirror.poll()``
for each (one ref listing, a fetch only when refs differ). Peer: ``git fetch`` in each of 100
``git clone --mirror`` copies, the usual cron-job GitOps poll. Reports CPU seconds (ours: this
process; peer: its child processes), wall seconds, and fetches, then the ratios.

    .venv/bin/python bench/sources_idle.py [--repos 100] [--transport git|file]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gitops_kubepkg import git
from gitops_kubepkg.sources.mirror import Mirror
from tests.integration.git_servers import git_daemon


def make_repos(root: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        repo = git.init_bare(root / f"r{i:03d}.git")
        for v in range(3):
            commit = repo.commit_files(
                "main", {f"pkg{i}/kubepkg.json": f'{{"v": {v}}}'.encode()}, f"v{v}"
            )
            repo.tag(f"pkg{i}/v1.{v}.0", commit, message="release")
        paths.append(root / f"r{i:03d}.git")
    return paths


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(count: int, transport: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        work = Path(tmp)
        served = work / "srv"
        served.mkdir()
        paths = make_repos(served, count)
        if transport == "git":
            ctx = git_daemon(served)
            server = ctx.__enter__()
            urls = [server.repo_url(p.name) for p in paths]
        else:
            ctx = None
            urls = [f"file://{p}" for p in paths]
        try:
            mirrors = [Mirror(work / "state", url) for url in urls]
            for m in mirrors:
                m.poll()
            peers = []
            for i, url in enumerate(urls):
                dest = work / "peer" / f"r{i:03d}.git"
                subprocess.run(["git", "clone", "-q", "--mirror", url, str(dest)], check=True)
                peers.append(dest)

            fetches_before = sum(m.fetches for m in mirrors)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for m in mirrors:
                m.poll()
            ours_cpu, ours_wall = time.process_time() - cpu0, time.perf_counter() - wall0
            ours_fetches = sum(m.fetches for m in mirrors) - fetches_before

            cpu0, wall0 = children_cpu(), time.perf_counter()
            for dest in peers:
                subprocess.run(["git", "-C", str(dest), "fetch", "-q", "--prune"], check=True)
            peer_cpu, peer_wall = children_cpu() - cpu0, time.perf_counter() - wall0
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
    return {
        "ours_cpu": ours_cpu,
        "ours_wall": ours_wall,
        "ours_fetches": ours_fetches,
        "peer_cpu": peer_cpu,
        "peer_wall": peer_wall,
        "peer_fetches": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--transport", choices=["git", "file"], default="git")
    args = parser.parse_args()
    r = run(args.repos, args.transport)
    print(f"idle poll round, {args.repos} unchanged repositories over {args.transport}://")
    print(f"{'':22}{'CPU s':>10}{'wall s':>10}{'fetches':>10}")
    print(
        f"{'gitops-kubepkg mirror':22}{r['ours_cpu']:10.3f}{r['ours_wall']:10.3f}{r['ours_fetches']:10.0f}"
    )
    print(
        f"{'git fetch (peer)':22}{r['peer_cpu']:10.3f}{r['peer_wall']:10.3f}{r['peer_fetches']:10.0f}"
    )
    print(
        f"ratio peer/ours: CPU {r['peer_cpu'] / max(r['ours_cpu'], 1e-9):.1f}x, "
        f"wall {r['peer_wall'] / max(r['ours_wall'], 1e-9):.1f}x"
    )


if __name__ == "__main__":
    main()
