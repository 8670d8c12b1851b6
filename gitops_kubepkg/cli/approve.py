"""``gitops-kubepkg approve DEPLOYMENT_URL BRANCH``: merge a promotion into its target branch.

A merge commit pushed only if the target did not move (else rebuilt and retried), then the branch
deleted. Exit 0 when the branch ends merged, also when a racing approval merged it first.
"""

from __future__ import annotations

import argparse
from typing import Any

from gitops_kubepkg.cli.output import add_output_flag, dump
from gitops_kubepkg.cli.promote import (
    add_credential_flags,
    add_signing_flag,
    credentials,
    parse_author,
    signer,
)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "approve",
        help="merge a promotion branch into the target branch (compare-and-swap, then delete it)",
    )
    p.add_argument("deployment", metavar="DEPLOYMENT_URL")
    p.add_argument("branch", metavar="BRANCH", help="e.g. promote/web/1.2.0")
    p.add_argument(
        "--into",
        default="",
        metavar="BRANCH",
        help="the target branch (default: the repository's HEAD branch, main when it has none)",
    )
    p.add_argument("--attempts", type=int, default=8, help="how often to rebuild when it moves")
    p.add_argument("--author", default="", help="'Name <email>' (default: GIT_AUTHOR_NAME/EMAIL)")
    add_signing_flag(p)
    add_credential_flags(p, catalog=False)
    add_output_flag(p, "text", "json", "yaml")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.errors import InputError
    from gitops_kubepkg.promotion.approve import approve

    if args.attempts < 1:
        raise InputError("--attempts must be at least 1")
    done = approve(
        args.deployment,
        args.branch.removeprefix("refs/heads/"),
        args.into,
        credentials(args, args.username, args.password_env),
        author=parse_author(args.author) if args.author else None,
        attempts=args.attempts,
        sign=signer(args),
    )
    if args.output != "text":
        dump(
            {
                "branch": done.branch,
                "target": done.target,
                "branchCommit": done.branch_commit,
                "targetCommit": done.target_commit,
                "attempts": done.attempts,
                "alreadyMerged": done.already_merged,
                "branchDeleted": done.branch_deleted,
                "notes": done.notes,
            },
            args.output,
        )
        return 0
    if done.already_merged:
        print(f"{done.branch} was already merged into {done.target} ({done.target_commit[:12]})")
    else:
        print(f"merged {done.branch} into {done.target}: {done.target_commit[:12]}")
    for note in done.notes:
        print(f"note: {note}")
    return 0
