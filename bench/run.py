"""Run every benchmark in bench/, each beside its peer, and print what each reports.

    .venv/bin/python bench/run.py            # the full runs recorded in BENCHMARKS.md
    .venv/bin/python bench/run.py --smoke    # small sizes: does every benchmark still run?

Each benchmark is its own script with its own flags; this only runs them one after another (never
at once: they would measure each other) and stops at the first that fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# script, full-run flags, smoke flags
BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    (
        "reconcile_apply.py",
        ["--objects", "1000", "--rounds", "5", "--markdown"],
        ["--objects", "100", "--rounds", "1"],
    ),
    ("sources_idle.py", ["--repos", "100"], ["--repos", "10"]),
    ("sources_webhook.py", ["--rounds", "20"], ["--rounds", "3", "--poll-interval", "0.5"]),
    ("registry_import.py", ["--size-mb", "1024"], ["--smoke"]),
    ("registry_serve.py", ["--layer-mb", "256"], ["--smoke"]),
    # Needs Flux's two controllers: run bench/flux-build once (minutes; not part of CI).
    (
        "flux_compare.py",
        ["--apps", "100", "--repos", "10", "--rounds", "3"],
        ["--apps", "4", "--repos", "2", "--rounds", "1", "--idle", "5", "--settle", "3"],
    ),
    # Needs root: it starts a cluster with a real node.
    ("realnode_airgap.py", ["--size-mb", "200"], ["--smoke"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="small sizes, to check they run")
    parser.add_argument("only", nargs="*", help="run only these scripts (e.g. reconcile_apply.py)")
    args = parser.parse_args()
    for script, full, smoke in BENCHMARKS:
        if args.only and script not in args.only:
            continue
        command = [sys.executable, str(BENCH / script), *(smoke if args.smoke else full)]
        print(f"== {' '.join(command[1:])}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            print(f"bench/{script} failed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
