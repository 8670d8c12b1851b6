"""``gitops-kubepkg propose DEPLOYMENT_URL draft/web/1.2.0``: propose a draft promotion.

The draft's commit (``promote --draft``) is pushed as ``promote/<package>/<version>`` (which must
not exist yet) with the forge's merge request, and the draft branch is deleted with a lease on
that commit. What setting a Draft PackageRevision to Proposed makes the controller do.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from gitops_kubepkg.cli.output import add_output_flag, dump
from gitops_kubepkg.cli.promote import GITHUB_TOKEN_ENV, add_credential_flags, credentials


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "propose",
        help="turn a draft promotion branch into a proposed one (opens the merge request)",
    )
    p.add_argument("deployment", metavar="DEPLOYMENT_URL")
    p.add_argument("draft", metavar="DRAFT_BRANCH", help="e.g. draft/web/1.2.0")
    p.add_argument(
        "--branch",
        default="",
        help="the branch the request targets (default: the repository's HEAD branch)",
    )
    p.add_argument(
        "--forge",
        choices=("auto", "gitlab", "gitea", "github", "none"),
        default="auto",
        help="open the merge request there too (auto: by host name)",
    )
    p.add_argument("--github-token-env", default=GITHUB_TOKEN_ENV, metavar="NAME")
    p.add_argument("--github-api", default="https://api.github.com", metavar="URL")
    add_credential_flags(p, catalog=False)
    add_output_flag(p, "text", "json", "yaml")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.promotion.forge import Forge
    from gitops_kubepkg.promotion.promote import Options, propose
    from gitops_kubepkg.promotion.revisions import Request

    options = Options(
        catalog_url="",
        request=Request("", ""),
        deployment_url=args.deployment,
        target=args.branch,
        forge=None if args.forge == "auto" else Forge(args.forge),
        deployment_credentials=credentials(args, args.username, args.password_env),
        github_token=os.environ.get(args.github_token_env, "") if args.github_token_env else "",
        github_api=args.github_api,
    )
    done = propose(options, args.draft)
    if args.output != "text":
        dump(
            {
                "draft": done.draft,
                "branch": done.branch,
                "target": done.target,
                "commit": done.commit,
                "forge": done.forge.value,
                "requestURL": done.request_url,
                "draftDeleted": done.draft_deleted,
            },
            args.output,
        )
        return 0
    print(f"proposed {done.draft} as {done.branch} -> {done.target} ({done.commit[:12]})")
    if not done.draft_deleted:
        print(f"note: {done.draft} got new commits meanwhile; kept it")
    print(done.request_url or f"branch {done.branch} -> {done.target}")
    return 0
