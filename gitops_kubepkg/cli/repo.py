"""``gitops-kubepkg repo add NAME --url URL --type catalog|deployment``: create a Repository."""

from __future__ import annotations

import argparse
from typing import Any

from gitops_kubepkg.cli.output import add_output_flag, dump
from gitops_kubepkg.errors import InputError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("repo", help="manage Repository objects")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    add = verbs.add_parser("add", help="create or update a Repository (server-side apply)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--url", required=True, help="file://, git://, http(s)://, ssh:// URL")
    add.add_argument("--type", required=True, choices=["catalog", "deployment"])
    add.add_argument("--branch", default="main")
    add.add_argument("--interval", default="1m", help="poll interval like 30s, 5m, 1h")
    add.add_argument("--directory", default="", help="sub-directory holding the packages")
    add.add_argument("--secret", default="", help="Secret with the git credentials")
    add.add_argument("--webhook-secret", default="", help="Secret whose `token` verifies webhooks")
    add.add_argument("--airgap", action="store_true", help="never fetch; read the imported mirror")
    add.add_argument(
        "--forge",
        choices=["auto", "gitlab", "gitea", "github", "none"],
        default="",
        help="deployment: where promotions opened through the API ask for a merge request "
        "(default auto: by host name)",
    )
    add.add_argument("-n", "--namespace", default="default")
    add.add_argument("--kubeconfig", default=None)
    add.add_argument("--dry-run", action="store_true", help="print the object, send nothing")
    add_output_flag(add)
    add.set_defaults(run=run_add)


def repository_object(args: argparse.Namespace) -> dict[str, Any]:
    from gitops_kubepkg.controller.repository import API_VERSION, KIND, parse_interval

    parse_interval(args.interval)
    if not args.url.strip():
        raise InputError("--url: required")
    spec: dict[str, Any] = {
        "url": args.url,
        "type": args.type,
        "branch": args.branch,
        "interval": args.interval,
    }
    if args.directory:
        spec["directory"] = args.directory.strip("/")
    if args.secret:
        spec["secretRef"] = {"name": args.secret}
    if args.webhook_secret:
        spec["webhookSecretRef"] = {"name": args.webhook_secret}
    if args.airgap:
        spec["airgap"] = True
    if args.forge:
        if args.type != "deployment":
            raise InputError("--forge: only a deployment repository receives promotions")
        spec["forge"] = args.forge
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": args.name, "namespace": args.namespace},
        "spec": spec,
    }


def run_add(args: argparse.Namespace) -> int:
    obj = repository_object(args)
    if not args.dry_run:
        from gitops_kubepkg.kube import Kube

        kube = Kube(args.kubeconfig)
        try:
            obj = kube.apply(obj)
        finally:
            kube.close()
    if args.output != "text":
        dump(obj, args.output)
    else:
        verb = "would apply" if args.dry_run else "applied"
        print(f"{verb} Repository {args.namespace}/{args.name} ({args.type}, {args.url})")
    return 0
