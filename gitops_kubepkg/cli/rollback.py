"""``gitops-kubepkg rollback kubepkg NAME --to REV``: commit a recorded revision to Git.

Finds the history entry (``--to`` takes its id, a version or a commit), the deployment Repository
the KubePkg came from (``status.source``), and has ``promotion.rollback`` commit the file as it
was then on top of the branch and push it; the controller applies it on its next sync. Refused,
with what to do, for an airgapped repository or a KubePkg applied by hand.
"""

from __future__ import annotations

import argparse
from typing import Any

from gitops_kubepkg.cli._cluster import add_cluster_flags, connect
from gitops_kubepkg.cli.output import add_output_flag, dump
from gitops_kubepkg.cli.promote import add_credential_flags, credentials, parse_author
from gitops_kubepkg.cli.trace import KUBEPKG_NAMES, get_kubepkg
from gitops_kubepkg.errors import InputError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "rollback",
        help="commit a KubePkg's recorded revision to its deployment repository (GitOps rollback)",
    )
    p.add_argument("resource", metavar="kubepkg")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--to", required=True, metavar="REV", help="history id, version or commit")
    p.add_argument(
        "--url",
        default="",
        metavar="URL",
        help="push here instead of the Repository's spec.url (e.g. a writable remote)",
    )
    p.add_argument("--author", default="", help="'Name <email>' (default: GIT_AUTHOR_NAME/EMAIL)")
    add_credential_flags(p, catalog=False)
    add_output_flag(p, "text", "json", "yaml")
    add_cluster_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.controller.repository import API_VERSION, KIND
    from gitops_kubepkg.promotion.rollback import Target, refuse_airgapped, rollback
    from gitops_kubepkg.spec.record import find_revision, history_of

    if args.resource.lower() not in KUBEPKG_NAMES:
        raise InputError(f"rollback: {args.resource!r}: only a kubepkg can be rolled back")
    key = f"{args.namespace}/{args.name}"
    kube = connect(args)
    try:
        obj = get_kubepkg(kube, args.name, args.namespace)
        status = obj.get("status") or {}
        history = history_of(status)
        to = find_revision(history, args.to)
        if to is None:
            known = ", ".join(f"{r.id} ({r.version})" for r in history) or "none"
            raise InputError(
                f"KubePkg {key}: no history revision {args.to!r} (recorded: {known}); see "
                f"gitops-kubepkg history kubepkg {args.name} -n {args.namespace}"
            )
        source = status.get("source") or {}
        repository = str(source.get("repository", ""))
        if "/" not in repository:
            raise InputError(
                f"KubePkg {key} records no deployment repository (applied with gitops-kubepkg "
                f"apply?): roll back by applying the file of version {to.version} again"
            )
        ns, name = repository.split("/", 1)
        repo = kube.get(API_VERSION, KIND, name, ns)
    finally:
        kube.close()
    if repo is None:
        raise InputError(f"KubePkg {key}: its Repository {repository} is gone")
    spec = repo.get("spec") or {}
    target = Target(
        kubepkg=key,
        url=args.url or str(spec.get("url", "")),
        branch=str(source.get("branch") or spec.get("branch") or "main"),
        path=str(source.get("path", "")),
        version=str((obj.get("spec") or {}).get("version", "")),
        commit=str(source.get("commit", "")),
    )
    if spec.get("airgap"):
        raise refuse_airgapped(repository, target, to)
    done = rollback(
        target,
        to,
        credentials(args, args.username, args.password_env),
        author=parse_author(args.author) if args.author else None,
    )
    if args.output != "text":
        dump(
            {
                "kubepkg": key,
                "to": to.to_dict(),
                "commit": done.commit,
                "branch": done.branch,
                "path": done.path,
                "message": done.message,
            },
            args.output,
        )
        return 0
    print(
        f"rolled back KubePkg {key} to revision {to.id} (version {to.version}): commit "
        f"{done.commit[:12]} on {done.branch} ({done.path}); the controller applies it on its "
        f"next sync (gitops-kubepkg reconcile repository {name} -n {ns} for now)"
    )
    return 0
