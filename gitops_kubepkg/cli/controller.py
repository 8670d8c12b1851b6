"""``gitops-kubepkg controller``: the controller process, or one pass of it (``--once``).

Without ``--once`` it runs every part in one process (see ``controller/process.py``): repository
sync and PackageRevisions, the KubePkg loop, the webhook receiver and, with ``--serve-registry``,
the pull-only registry; ``/healthz``, ``/readyz`` and ``/metrics`` on ``--monitoring-listen``.
With leader election (the default) only the replica holding the Lease syncs and reconciles.

``--once`` is one full pass: every Repository (mirrors polled, catalogs and deployments applied),
then every KubePkg (rendered, applied, pruned); no Lease is taken. It exits 1 when a Repository
is not Ready or a KubePkg stalled or failed (progressing is fine: rollouts take their time).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from gitops_kubepkg.cli._cluster import duration
from gitops_kubepkg.cli.output import add_output_flag, dump, table
from gitops_kubepkg.errors import InputError

DEFAULT_LEASE_NAMESPACE = "gitops-kubepkg-system"
_FAILED_KUBEPKG = ("stalled", "error")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "controller",
        help="run the controller (repository sync, KubePkg reconcile, webhooks, registry)",
        description=(
            "Run repository sync, PackageRevisions, the KubePkg loop, the webhook receiver and "
            "(with --serve-registry) the pull-only registry in one process; /healthz, /readyz "
            "and /metrics on --monitoring-listen. With leader election (the default) only the "
            "replica holding the Lease syncs and reconciles. --once: one pass over every "
            "Repository, then every KubePkg."
        ),
    )
    p.add_argument("--once", action="store_true", help="one full pass, then exit (1 if any failed)")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/var/lib/gitops-kubepkg"),
        help="where the git mirrors live (a volume in the cluster)",
    )
    p.add_argument("-n", "--namespace", default="", help="only this namespace (default: all)")

    parts = p.add_argument_group("parts (each can be switched off)")
    parts.add_argument(
        "--repositories",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sync Repository objects: PackageRevisions and KubePkg objects (default on)",
    )
    parts.add_argument(
        "--kubepkgs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reconcile KubePkg objects into their Kubernetes objects (default on)",
    )
    parts.add_argument(
        "--webhook-listen",
        default="",
        metavar="HOST:PORT",
        help="serve POST /hooks/<namespace>/<repository> here (default off)",
    )
    parts.add_argument(
        "--upload-listen",
        default="",
        metavar="HOST:PORT",
        help="accept airgap exports (`airgap import DIR --to-controller URL`) here, imported into "
        "--serve-registry's store and the mirrors; callers need RBAC verb create on "
        "airgapimports.gitops.kubepkg.dev in $POD_NAMESPACE (default off)",
    )
    parts.add_argument(
        "--require-signed-imports",
        type=Path,
        default=None,
        metavar="ALLOWED_SIGNERS",
        help="refuse every upload whose airgap.json is not signed (airgap export --sign) by a key "
        "of this OpenSSH allowed_signers file, before anything is written",
    )
    parts.add_argument(
        "--serve-registry",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve this store (filled by `airgap import --store DIR`) as a pull-only registry",
    )
    parts.add_argument(
        "--registry-listen",
        default="0.0.0.0:5000",
        metavar="HOST:PORT",
        help="where --serve-registry listens (default 0.0.0.0:5000)",
    )
    parts.add_argument(
        "--registry",
        default="",
        metavar="HOST[:PORT]",
        help="rewrite images to this registry (airgap), as `apply --registry`",
    )
    parts.add_argument(
        "--monitoring-listen",
        default="0.0.0.0:8080",
        metavar="HOST:PORT",
        help="serve /healthz, /readyz and /metrics here (default 0.0.0.0:8080; '' for off)",
    )

    dash = p.add_argument_group("dashboard (docs/dashboard.md)")
    dash.add_argument(
        "--dashboard-listen",
        default="",
        metavar="HOST:PORT",
        help="serve the web dashboard here, on every replica (default off); viewers log in with "
        "a Kubernetes token and see what RBAC lets them get",
    )
    dash.add_argument(
        "--dashboard-actions",
        action="store_true",
        help="let the dashboard reconcile, promote and approve (each needs the viewer's RBAC)",
    )
    dash.add_argument(
        "--dashboard-tls-cert",
        type=Path,
        default=None,
        metavar="PEM",
        help="serve the dashboard over HTTPS with this certificate chain (the session cookie is "
        "then Secure)",
    )
    dash.add_argument("--dashboard-tls-key", type=Path, default=None, metavar="PEM", help="its key")
    dash.add_argument(
        "--dashboard-no-auth",
        action="store_true",
        help="no login: anyone who reaches the dashboard sees everything the controller sees "
        "(only with a loopback --dashboard-listen)",
    )

    tenants = p.add_argument_group("tenancy (docs/security.md)")
    tenants.add_argument(
        "--multi-tenant",
        action="store_true",
        help="apply, diff and prune every KubePkg as a ServiceAccount of its own namespace "
        "(impersonation), cluster-scoped kinds and other namespaces only where --tenancy-policy "
        "grants them (deploy/ turns it on; without it: single-tenant, as the controller)",
    )
    tenants.add_argument(
        "--default-service-account",
        default="",
        metavar="NAME",
        help="the ServiceAccount a KubePkg is applied as when it names none "
        "(annotation gitops.kubepkg.dev/service-account)",
    )
    tenants.add_argument(
        "--tenancy-policy",
        type=Path,
        default=None,
        metavar="FILE",
        help="the operator's grants: cluster-scoped kinds and other namespaces, per namespace",
    )
    tenants.add_argument(
        "--local-sources",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow file:// and local-path Repository URLs (default: allowed single-tenant, "
        "refused with --multi-tenant)",
    )

    le = p.add_argument_group("leader election (a coordination.k8s.io/v1 Lease)")
    le.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="only the replica holding the Lease works (default on)",
    )
    le.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE") or DEFAULT_LEASE_NAMESPACE,
        metavar="NS",
        help=f"the Lease's namespace (default $POD_NAMESPACE or {DEFAULT_LEASE_NAMESPACE})",
    )
    le.add_argument("--leader-election-id", default="gitops-kubepkg-controller", metavar="NAME")
    le.add_argument(
        "--identity", default="", help="this replica's holderIdentity (default $POD_NAME_<random>)"
    )
    le.add_argument("--lease-duration", type=duration, default=15.0, metavar="DURATION")
    le.add_argument("--renew-deadline", type=duration, default=10.0, metavar="DURATION")
    le.add_argument("--retry-period", type=duration, default=2.0, metavar="DURATION")
    le.add_argument(
        "--shards",
        type=int,
        default=1,
        metavar="N",
        help="split Repositories and KubePkgs into N shards, one Lease each, so every replica "
        "works on its share (default 1: one leader does everything)",
    )

    tune = p.add_argument_group("tuning")
    tune.add_argument("--max-fetches", type=int, default=4, help="git fetches at once")
    tune.add_argument("--kubepkg-workers", type=int, default=2, help="KubePkgs reconciled at once")
    tune.add_argument(
        "--resync",
        type=duration,
        default=300.0,
        metavar="DURATION",
        help="re-apply every KubePkg this often, reverting hand edits (default 5m)",
    )
    tune.add_argument(
        "--health-timeout",
        type=lambda text: 0.0 if text.strip() in ("0", "0s") else duration(text),
        default=600.0,
        metavar="DURATION",
        help="a KubePkg whose objects are not healthy after this long is Stalled "
        "(HealthCheckTimeout; default 10m, 0 for never)",
    )
    tune.add_argument(
        "--history-limit",
        type=int,
        default=10,
        metavar="N",
        help="applied revisions each KubePkg's status keeps for history and rollback (default "
        "10, and never more than 16 KiB)",
    )
    tune.add_argument("--log-format", choices=("text", "json"), default="text")
    tune.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    add_output_flag(p)
    p.set_defaults(run=run)


def options(args: argparse.Namespace) -> Any:
    from gitops_kubepkg.controller.leader import LeaseConfig
    from gitops_kubepkg.controller.process import Options, default_identity
    from gitops_kubepkg.tenancy import Tenancy, load_policy

    lease = None
    if args.leader_elect and not args.once:
        lease = LeaseConfig(
            namespace=args.leader_election_namespace,
            name=args.leader_election_id,
            identity=args.identity or default_identity(),
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
        lease.check()
    tenancy = Tenancy(
        multi_tenant=args.multi_tenant,
        default_service_account=args.default_service_account,
        grants=load_policy(args.tenancy_policy) if args.tenancy_policy else (),
        local_sources=(not args.multi_tenant) if args.local_sources is None else args.local_sources,
    )
    return Options(
        state_dir=args.state_dir,
        namespace=args.namespace,
        repositories=args.repositories,
        kubepkgs=args.kubepkgs,
        webhook_listen=args.webhook_listen,
        upload_listen=args.upload_listen,
        require_signed_imports=args.require_signed_imports,
        upload_namespace=os.environ.get("POD_NAMESPACE", ""),
        monitoring_listen=args.monitoring_listen,
        registry_root=args.serve_registry,
        registry_listen=args.registry_listen,
        image_registry=args.registry,
        lease=lease,
        shards=max(1, args.shards),
        max_fetches=args.max_fetches,
        kubepkg_workers=args.kubepkg_workers,
        resync=args.resync,
        history_limit=max(1, args.history_limit),
        health_timeout=args.health_timeout,
        tenancy=tenancy,
    )


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.controller import logs
    from gitops_kubepkg.controller.process import ControllerProcess
    from gitops_kubepkg.kube import Kube

    logs.configure(args.log_format, args.log_level)
    opts = options(args)
    dashboard_flags = (args.dashboard_actions, args.dashboard_no_auth, args.dashboard_tls_cert)
    if any(dashboard_flags) and not args.dashboard_listen:
        raise InputError(
            "--dashboard-actions, --dashboard-no-auth and --dashboard-tls-* need --dashboard-listen"
        )
    if (args.dashboard_tls_cert is None) != (args.dashboard_tls_key is None):
        raise InputError("--dashboard-tls-cert and --dashboard-tls-key go together")
    if args.dashboard_listen and args.once:
        raise InputError("--dashboard-listen serves while the controller runs; not with --once")
    if args.dashboard_listen:
        from gitops_kubepkg.dashboard.server import check_listen

        check_listen(args.dashboard_listen, no_auth=args.dashboard_no_auth)
    kube = Kube(args.kubeconfig)
    try:
        process = ControllerProcess(kube, opts)
        if args.dashboard_listen:
            from gitops_kubepkg.dashboard.server import for_process

            process.parts.append(
                for_process(
                    process,
                    args.dashboard_listen,
                    actions=args.dashboard_actions,
                    no_auth=args.dashboard_no_auth,
                    tls=(args.dashboard_tls_cert, args.dashboard_tls_key)
                    if args.dashboard_tls_cert is not None
                    else None,
                )
            )
        if not args.once:
            stop = threading.Event()

            def _stop(signum: int, frame: FrameType | None) -> None:
                stop.set()

            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
            return process.run(stop)
        outcomes, kubepkgs = process.run_once()
    finally:
        kube.close()
    if args.output != "text":
        dump(
            [
                {
                    "kind": "Repository",
                    "repository": o.key,
                    "ready": o.ready,
                    "reason": o.reason,
                    "message": o.message,
                    "commit": o.commit,
                    "packages": o.package_count,
                    "changes": o.changes,
                }
                for o in outcomes
            ]
            + [
                {
                    "kind": "KubePkg",
                    "kubepkg": f"{ns}/{name}",
                    "result": outcome.kind,
                    "reason": outcome.reason,
                    "message": outcome.message,
                }
                for (ns, name), outcome in kubepkgs
            ],
            args.output,
        )
    else:
        if opts.repositories:
            rows = [
                [o.key, "True" if o.ready else "False", o.reason, o.commit[:12], o.message]
                for o in outcomes
            ]
            table(rows, ["REPOSITORY", "READY", "REASON", "COMMIT", "MESSAGE"])
            if not outcomes:
                print("no Repository objects", file=sys.stderr)
        if opts.kubepkgs and kubepkgs:
            print()
            table(
                [
                    [f"{ns}/{name}", outcome.kind, outcome.reason, outcome.message]
                    for (ns, name), outcome in kubepkgs
                ],
                ["KUBEPKG", "RESULT", "REASON", "MESSAGE"],
            )
    failed = any(not o.ready for o in outcomes) or any(
        outcome.kind in _FAILED_KUBEPKG for _, outcome in kubepkgs
    )
    return 1 if failed else 0
