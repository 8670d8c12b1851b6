"""Benchmark (issue 14): our controller beside Flux, on Flux's own benchmark shape, in one run.

Each app is a Deployment scaled to 0, a ServiceAccount, a Service and a ConfigMap
(``runtime_cold.app``). N apps are spread over R repositories, served to both contenders by the
same smart HTTP server (``git http-backend``, tests/integration/git_servers.py): Flux's
GitRepository CRD accepts only http, https and ssh URLs, so ``git daemon`` cannot serve it, and
both sides fetch the same way.

- ours: one deployment repository per R (``apps/<app>/kubepkg.json``, one KubePkg per app), one
  ``Repository`` each (interval 10m), and one ``gitops-kubepkg controller`` with
  ``--kubepkg-workers`` and ``--max-fetches`` both set to the concurrency;
- Flux (source-controller v1.9.4, kustomize-controller v1.9.6, built by ``bench/flux-build``):
  one GitRepository per repository and one Kustomization per app (``path: ./apps/<app>``,
  interval 10m, prune, ``targetNamespace``), both controllers with ``--concurrent`` set to the
  concurrency; run twice, ``wait: false`` and ``wait: true`` (health-checked like ours).

Every contender gets a fresh local control plane of its own for each round (nothing left over
from the previous one: no garbage collection, no larger etcd), and the contenders take turns
inside each round. The repositories and sources are written before the controllers start; the
clock starts when they start. Measured per contender and round:

- seconds until every KubePkg / Kustomization is Ready (a list every second), until the last object
  was created (the largest creationTimestamp, 1 s resolution) and the floor: when
  kube-controller-manager made the last Deployment Available (its condition's
  lastTransitionTime, 1 s resolution), and the last Ready condition's lastTransitionTime (the
  same resolution, so it compares with the floor without the poll's second);
- API requests: ours from its /metrics (``gitops_kubepkg_api_requests_total``), Flux's the sum
  of both controllers' ``rest_client_requests_total``; kube-apiserver's CPU seconds
  (/proc/PID/stat) over the same cold pass;
- peak RSS (VmHWM; Flux's two controllers added);
- an idle interval (``--idle`` seconds, nothing changes, starting ``--quiet`` seconds after the
  last app turned Ready): requests and writes in it;
- a one-app commit: app-0000's ConfigMap changes in its repository, the source is asked to sync
  (``gitops.kubepkg.dev/requestedAt`` / ``reconcile.fluxcd.io/requestedAt``, what
  ``gitops-kubepkg reconcile`` and ``flux reconcile source git`` set), then the seconds until the
  ConfigMap holds the new value, and how many KubePkgs / Kustomizations changed (generation,
  resourceVersion) within ``--settle`` seconds.

    .venv/bin/python bench/flux_compare.py --apps 100 --repos 10 --rounds 3 --json out.json

Needs ``bench/flux-build`` run once (it builds the two controllers into
~/.cache/gitops-kubepkg/flux-v1.9.x). Every process it starts (control planes, git daemon,
controllers) is stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from runtime_cold import app, peak_rss, ready_count, scrape, side, value  # noqa: E402

from gitops_kubepkg import git  # noqa: E402
from gitops_kubepkg.controller.install import install_crds  # noqa: E402
from gitops_kubepkg.kube import Kube  # noqa: E402
from tests.integration.cluster import cluster_processes, start_cluster, stop_cluster  # noqa: E402
from tests.integration.git_servers import free_port, http_server, stop, wait_listening  # noqa: E402

FLUX = Path.home() / ".cache" / "gitops-kubepkg" / "flux-v1.9.x"
SOURCE_API = "source.toolkit.fluxcd.io/v1"
KUSTOMIZE_API = "kustomize.toolkit.fluxcd.io/v1"
GITOPS_API = "gitops.kubepkg.dev/v1alpha1"
KUBEPKG_API = "octohelm.tech/v1alpha1"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
CONTENDERS = ("ours", "flux-nowait", "flux-wait")
Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def app_name(i: int) -> str:
    return f"app-{i:04d}"


HEADLESS_ABOVE = 250
"""Above this many apps the Services are headless (``clusterIP: None``, no address to allocate),
on both sides alike: the recorded runs were made when the local control plane's Service range was
a /24 (it is a /16 now), and keeping the shape keeps new rounds comparable with them."""


def app_objects(name: str, marker: str, headless: bool) -> list[dict[str, Any]]:
    """The app's four objects (``runtime_cold.app``'s), the ConfigMap's value set to ``marker``."""
    objects: list[dict[str, Any]] = list(app(name, "")["spec"]["manifests"].values())
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            obj["data"] = {"k": marker}
        if obj["kind"] == "Service" and headless:
            obj["spec"]["clusterIP"] = "None"
    return objects


def kubepkg_file(name: str, marker: str, headless: bool) -> bytes:
    doc = app(name, "")
    del doc["metadata"]["namespace"]
    doc["spec"]["manifests"] = {
        f"{name}.{o['kind'].lower()}": o for o in app_objects(name, marker, headless)
    }
    return json.dumps(doc, indent=1).encode()


def kustomize_file(name: str, marker: str, headless: bool) -> bytes:
    objects = app_objects(name, marker, headless)
    return "".join(f"---\n{json.dumps(o)}\n" for o in objects).encode()


def write_repositories(root: Path, contender: str, apps: int, repos: int) -> dict[int, list[int]]:
    """One bare repository per index under ``root``, apps dealt round-robin; index -> apps."""
    dealt: dict[int, list[int]] = {r: [] for r in range(repos)}
    for i in range(apps):
        dealt[i % repos].append(i)
    for r, members in dealt.items():
        files = {
            f"apps/{app_name(i)}/{'kubepkg.json' if contender == 'ours' else 'app.yaml'}": (
                kubepkg_file if contender == "ours" else kustomize_file
            )(app_name(i), "v1", apps > HEADLESS_ABOVE)
            for i in members
        }
        git.init_bare(root / f"{contender}-{r:02d}.git").commit_files("main", files, "apps")
    return dealt


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def created_and_floor(kube: Kube, namespace: str, started: float) -> tuple[float, float]:
    """Seconds from ``started`` to the last app object's creation and to the last Deployment's
    Available condition (kube-controller-manager's floor)."""
    created = 0.0
    for api, kind in [
        ("apps/v1", "Deployment"),
        ("v1", "ServiceAccount"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
    ]:
        for obj in kube.list_metadata(api, kind, namespace):
            if obj["metadata"]["name"].startswith("app-"):
                created = max(created, timestamp(obj["metadata"]["creationTimestamp"]))
    available = 0.0
    for dep in kube.list("apps/v1", "Deployment", namespace):
        for c in (dep.get("status") or {}).get("conditions") or []:
            if c["type"] == "Available" and c["status"] == "True":
                available = max(available, timestamp(c["lastTransitionTime"]))
    return round(created - started, 1), round(available - started, 1)


def last_ready(kube: Kube, api: str, kind: str, namespace: str, started: float) -> float:
    """Seconds from ``started`` to the last KubePkg / Kustomization turning Ready, as its Ready
    condition's lastTransitionTime says (1 s resolution, like the floor: the two compare without
    the 1 s poll in between)."""
    last = 0.0
    for obj in kube.list(api, kind, namespace):
        for c in (obj.get("status") or {}).get("conditions") or []:
            if c["type"] == "Ready" and c["status"] == "True":
                last = max(last, timestamp(c["lastTransitionTime"]))
    return round(last - started, 1)


def versions(kube: Kube, api: str, kind: str, namespace: str) -> dict[str, tuple[int, str]]:
    return {
        o["metadata"]["name"]: (
            int(o["metadata"].get("generation", 0)),
            o["metadata"]["resourceVersion"],
        )
        for o in kube.list(api, kind, namespace)
    }


class Contender:
    """One side's setup, processes and counters; ``ours`` and Flux differ only here."""

    def __init__(self, name: str, kube: Kube, kubeconfig: str, work: Path, url: str, repos: int):
        self.name, self.kube, self.kubeconfig, self.work = name, kube, kubeconfig, work
        self.url, self.repos = url, repos
        self.namespace = f"bench-{name}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.api, self.kind = (
            (KUBEPKG_API, "KubePkg") if name == "ours" else (KUSTOMIZE_API, "Kustomization")
        )

    def setup(self, dealt: dict[int, list[int]]) -> None:
        kube, ns = self.kube, self.namespace
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for r, members in dealt.items():
            repo = f"{self.url}/{self.name}-{r:02d}.git"
            if self.name == "ours":
                kube.apply(
                    {
                        "apiVersion": GITOPS_API,
                        "kind": "Repository",
                        "metadata": {"name": f"repo-{r:02d}", "namespace": ns},
                        "spec": {"url": repo, "type": "deployment", "interval": "10m"},
                    }
                )
                continue
            kube.apply(
                {
                    "apiVersion": SOURCE_API,
                    "kind": "GitRepository",
                    "metadata": {"name": f"repo-{r:02d}", "namespace": ns},
                    "spec": {"url": repo, "interval": "10m", "ref": {"branch": "main"}},
                }
            )
            for i in members:
                kube.apply(
                    {
                        "apiVersion": KUSTOMIZE_API,
                        "kind": "Kustomization",
                        "metadata": {"name": app_name(i), "namespace": ns},
                        "spec": {
                            "interval": "10m",
                            "path": f"./apps/{app_name(i)}",
                            "prune": True,
                            "wait": self.name == "flux-wait",
                            "targetNamespace": ns,
                            "sourceRef": {"kind": "GitRepository", "name": f"repo-{r:02d}"},
                        },
                    }
                )

    def start(self, concurrency: int) -> None:
        if self.name == "ours":
            proc, port = side(
                self.kubeconfig,
                REPO,
                self.namespace,
                concurrency,
                self.work / "ours.log",
                repositories=True,
            )
            self.procs.append(proc)
            self.ports.append(port)
            return
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "RUNTIME_NAMESPACE": self.namespace}
        storage = free_port()
        (self.work / "artifacts").mkdir()
        for binary, extra in [
            (
                "source-controller",
                [
                    f"--storage-path={self.work / 'artifacts'}",
                    f"--storage-addr=127.0.0.1:{storage}",
                    f"--storage-adv-addr=127.0.0.1:{storage}",
                ],
            ),
            ("kustomize-controller", []),
        ]:
            port = free_port()
            command = [
                str(FLUX / "bin" / binary),
                f"--metrics-addr=127.0.0.1:{port}",
                f"--health-addr=127.0.0.1:{free_port()}",
                f"--concurrent={concurrency}",
                "--watch-all-namespaces=false",
                "--log-level=error",
                *extra,
            ]
            log = open(self.work / f"{self.name}-{binary}.log", "wb")  # noqa: SIM115 - lives with the process
            self.procs.append(
                subprocess.Popen(
                    command, env=env, cwd=self.work, stdout=log, stderr=subprocess.STDOUT
                )
            )
            self.ports.append(port)
        wait_listening(storage, self.procs[0], "source-controller's artifact server")

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)  # type: ignore[arg-type]

    def counters(self) -> tuple[float, float]:
        """API requests and writes the contender sent so far."""
        if self.name == "ours":
            m = scrape(self.ports[0])
            return (
                value(m, "gitops_kubepkg_api_requests_total", verb="all"),
                value(m, "gitops_kubepkg_api_requests_total", verb="write"),
            )
        total = writes = 0.0
        for port in self.ports:
            m = scrape(port)
            total += value(m, "rest_client_requests_total")
            writes += sum(value(m, "rest_client_requests_total", method=w) for w in WRITE_METHODS)
        return total, writes

    def rss(self) -> int:
        return sum(peak_rss(p.pid) for p in self.procs)

    def alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise SystemExit(
                    f"{self.name}: a controller exited {proc.returncode}; see {self.work}"
                )

    def request_sync(self, r: int) -> None:
        now = datetime.now().isoformat()
        if self.name == "ours":
            annotations, api, kind = (
                {"gitops.kubepkg.dev/requestedAt": now},
                GITOPS_API,
                "Repository",
            )
        else:
            annotations, api, kind = (
                {"reconcile.fluxcd.io/requestedAt": now},
                SOURCE_API,
                "GitRepository",
            )
        self.kube.patch(
            api, kind, f"repo-{r:02d}", self.namespace, {"metadata": {"annotations": annotations}}
        )


def wait_for(
    check: Callable[[], bool], limit: float, what: str, tick: float, alive: Callable[[], None]
) -> float:
    started = time.monotonic()
    while not check():
        alive()
        if time.monotonic() - started > limit:
            raise SystemExit(f"{what}: not after {limit:.0f} s")
        time.sleep(tick)
    return time.monotonic() - started


def one(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One contender, one round, on a control plane of its own."""
    work = workdir / f"{name}-{uuid.uuid4().hex[:6]}"
    (work / "git").mkdir(parents=True)
    load_before = os.getloadavg()
    cluster = work / "cluster"
    kubeconfig = start_cluster(cluster)
    kube = Kube(kubeconfig)
    contender: Contender | None = None
    try:
        if name == "ours":
            install_crds(kube)
        else:
            kubectl = subprocess.run(
                [sys.executable, str(REPO / "scripts" / "local-cluster"), "which", "kubectl"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
            subprocess.run(
                [
                    kubectl,
                    "--kubeconfig",
                    kubeconfig,
                    "apply",
                    "--server-side",
                    "-f",
                    str(FLUX / "crds"),
                ],
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [
                    kubectl,
                    "--kubeconfig",
                    kubeconfig,
                    "wait",
                    "--for=condition=Established",
                    "crd",
                    "--all",
                    "--timeout=60s",
                ],
                check=True,
                capture_output=True,
            )
            kube.forget_discovery()
        dealt = write_repositories(work / "git", name, args.apps, args.repos)
        with http_server(work / "git") as server:
            contender = Contender(name, kube, kubeconfig, work, server.url, args.repos)
            contender.setup(dealt)
            apiserver = cluster_processes(cluster)["kube-apiserver"]
            cpu0 = cpu_seconds(apiserver)
            started_wall, started = time.time(), time.monotonic()
            contender.start(args.concurrency)
            wait_for(
                lambda: (
                    ready_count(kube, contender.namespace, contender.api, contender.kind)
                    >= args.apps
                ),  # type: ignore[union-attr]
                args.timeout,
                f"{name}: every app Ready",
                1.0,
                contender.alive,
            )
            ready_s = time.monotonic() - started
            cpu = cpu_seconds(apiserver) - cpu0
            requests, writes = contender.counters()
            created_s, floor_s = created_and_floor(kube, contender.namespace, started_wall)
            ready_t = last_ready(
                kube, contender.api, contender.kind, contender.namespace, started_wall
            )
            time.sleep(args.quiet)  # the cold pass's trailing events and status writes
            requests_quiet, writes_quiet = contender.counters()
            time.sleep(args.idle)
            idle_requests, idle_writes = (
                a - b
                for a, b in zip(contender.counters(), (requests_quiet, writes_quiet), strict=True)
            )
            # One commit changing app-0000 in its repository.
            before = versions(kube, contender.api, contender.kind, contender.namespace)
            marker = f"v2-{uuid.uuid4().hex[:6]}"
            path = f"apps/{app_name(0)}/{'kubepkg.json' if name == 'ours' else 'app.yaml'}"
            body = (kubepkg_file if name == "ours" else kustomize_file)(
                app_name(0), marker, args.apps > HEADLESS_ABOVE
            )
            git.open_bare(work / "git" / f"{name}-00.git").commit_files(
                "main", {path: body}, "change app-0000"
            )
            contender.request_sync(0)

            def changed() -> bool:
                cm = kube.get("v1", "ConfigMap", app_name(0), contender.namespace)  # type: ignore[union-attr]
                return bool(cm and (cm.get("data") or {}).get("k") == marker)

            commit_s = wait_for(
                changed, 300, f"{name}: the one-app commit applied", 0.05, contender.alive
            )
            time.sleep(args.settle)
            after = versions(kube, contender.api, contender.kind, contender.namespace)
            rss = contender.rss()
    finally:
        if contender is not None:
            contender.stop()
        kube.close()
        stop_cluster(cluster)
    return {
        "contender": name,
        "apps": args.apps,
        "repos": args.repos,
        "concurrency": args.concurrency,
        "seconds_all_ready": round(ready_s, 1),
        "seconds_last_object_created": created_s,
        "seconds_floor_last_deployment_available": floor_s,
        "seconds_last_ready_transition": ready_t,
        "api_requests": int(requests),
        "api_requests_per_app": round(requests / args.apps, 1),
        "api_writes": int(writes),
        "apiserver_cpu_seconds": round(cpu, 1),
        "peak_rss_mib": round(rss / 2**20, 1),
        "idle_seconds": args.idle,
        "idle_requests": int(idle_requests),
        "idle_writes": int(idle_writes),
        "commit_seconds_to_applied": round(commit_s, 2),
        "commit_objects_generation_changed": sum(
            after[k][0] != before.get(k, (None,))[0] for k in after
        ),
        "commit_objects_resource_version_changed": sum(
            after[k][1] != before.get(k, (0, ""))[1] for k in after
        ),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def ratio_row(results: list[dict[str, Any]], key: str, flux: str, inverse: bool = False) -> str:
    """min/median/max over rounds of flux / ours (or ours / flux when ``inverse``)."""
    ours = {r["round"]: r[key] for r in results if r["contender"] == "ours" and key in r}
    theirs = {r["round"]: r[key] for r in results if r["contender"] == flux and key in r}
    ratios = [
        (ours[k] / theirs[k] if inverse else theirs[k] / ours[k])
        for k in ours
        if k in theirs and (theirs[k] if inverse else ours[k])
    ]
    if not ratios:
        return "n/a"
    return f"{min(ratios):.2f}x / {statistics.median(ratios):.2f}x / {max(ratios):.2f}x"


COLUMNS = [
    ("seconds_all_ready", "all Ready (s)"),
    ("seconds_last_object_created", "last object created (s)"),
    ("seconds_floor_last_deployment_available", "floor: last Deployment Available (s)"),
    ("seconds_last_ready_transition", "last Ready transition (s)"),
    ("api_requests", "API requests"),
    ("api_requests_per_app", "requests per app"),
    ("apiserver_cpu_seconds", "kube-apiserver CPU (s)"),
    ("peak_rss_mib", "peak RSS (MiB)"),
    ("idle_requests", "idle requests"),
    ("idle_writes", "idle writes"),
    ("commit_seconds_to_applied", "one-app commit applied (s)"),
    ("commit_objects_resource_version_changed", "objects touched by the commit"),
]


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| round | contender | load | " + " | ".join(t for _, t in COLUMNS) + " |",
        "| ---: | --- | ---: |" + " ---: |" * len(COLUMNS),
    ]
    for r in results:
        cells = [str(r.get(k, "-")) for k, _ in COLUMNS]  # "-": measured only since
        lines.append(
            f"| {r['round']} | {r['contender']} | {r['load_before'][0]:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "| Flux / ours (min / median / max) | wait: false | wait: true |",
        "| --- | ---: | ---: |",
    ]
    for key, title in COLUMNS[:8]:
        lines.append(
            f"| {title} | {ratio_row(results, key, 'flux-nowait')} | {ratio_row(results, key, 'flux-wait')} |"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def nothing_left(workdir: Path) -> Iterator[None]:
    try:
        yield
    finally:
        for state in workdir.glob("*/cluster"):
            if cluster_processes(state):
                stop_cluster(state)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--first-round", type=int, default=1, help="number of the first round (to add rounds)"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument(
        "--quiet", type=float, default=5.0, help="seconds after all Ready before the idle interval"
    )
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the commit")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--json", type=Path, help="append every round's result here (JSON lines)")
    parser.add_argument(
        "--report", type=Path, help="print the tables of a --json file's results and exit"
    )
    args = parser.parse_args()
    if args.report:
        done = [json.loads(line) for line in args.report.read_text().splitlines() if line.strip()]
        for apps in sorted({r["apps"] for r in done}):
            print(f"\n### N = {apps}\n\n" + table([r for r in done if r["apps"] == apps]))
        return 0
    for binary in ("source-controller", "kustomize-controller"):
        if any(c != "ours" for c in args.only) and not (FLUX / "bin" / binary).exists():
            print(f"{FLUX / 'bin' / binary}: not built; run bench/flux-build", file=sys.stderr)
            return 1
    # SIGTERM unwinds like Ctrl-C: every ``finally`` stops what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="bench-flux-"))
    results = []
    with nothing_left(workdir):
        for round_ in range(args.first_round, args.first_round + args.rounds):
            order = args.only if round_ % 2 else list(reversed(args.only))
            for name in order:
                result = {"round": round_, **one(name, args, workdir)}
                print(json.dumps(result), flush=True)
                results.append(result)
                if args.json:
                    with args.json.open("a") as f:
                        f.write(json.dumps(result) + "\n")
    print(table(results))
    print(f"logs in {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
