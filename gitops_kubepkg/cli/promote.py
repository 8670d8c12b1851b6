"""``gitops-kubepkg promote CATALOG_URL PACKAGE@VERSION --to DEPLOYMENT_URL``: open a promotion.

Writes the catalog revision into the deployment repository on ``promote/<package>/<version>`` and
pushes it (that branch is the merge request; forges are asked to open one too). Secrets never go on
the command line: passwords and tokens come from environment variables (names below).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from gitops_kubepkg.cli.output import add_output_flag, dump
from gitops_kubepkg.errors import InputError

PASSWORD_ENV = "GITOPS_KUBEPKG_GIT_PASSWORD"
CATALOG_PASSWORD_ENV = "GITOPS_KUBEPKG_CATALOG_PASSWORD"
GITHUB_TOKEN_ENV = "GITHUB_TOKEN"


def add_credential_flags(p: argparse.ArgumentParser, *, catalog: bool = True) -> None:
    """Who we are to the remotes; passwords and tokens only through the environment."""
    p.add_argument(
        "--username",
        default=os.environ.get("GITOPS_KUBEPKG_GIT_USERNAME", ""),
        help="username for the deployment repository (env GITOPS_KUBEPKG_GIT_USERNAME)",
    )
    p.add_argument(
        "--password-env",
        default=PASSWORD_ENV,
        metavar="NAME",
        help=f"environment variable holding its password or token (default {PASSWORD_ENV})",
    )
    p.add_argument(
        "--ssh-key",
        default=os.environ.get("GITOPS_KUBEPKG_SSH_KEY", ""),
        metavar="PATH",
        help="private key for ssh:// remotes (passphrase from GITOPS_KUBEPKG_SSH_PASSPHRASE)",
    )
    p.add_argument(
        "--known-hosts",
        default=os.environ.get("GITOPS_KUBEPKG_KNOWN_HOSTS", "~/.ssh/known_hosts"),
        metavar="PATH",
        help="host keys ssh:// remotes must match (default ~/.ssh/known_hosts)",
    )
    if catalog:
        p.add_argument(
            "--catalog-username",
            default=os.environ.get("GITOPS_KUBEPKG_CATALOG_USERNAME", ""),
            help="username for the catalog repository (env GITOPS_KUBEPKG_CATALOG_USERNAME)",
        )
        p.add_argument(
            "--catalog-password-env",
            default=CATALOG_PASSWORD_ENV,
            metavar="NAME",
            help=f"environment variable holding the catalog's password or token "
            f"(default {CATALOG_PASSWORD_ENV})",
        )


def credentials(args: argparse.Namespace, username: str, password_env: str) -> Any:
    """A ``git.Credentials`` from a username, the named variable and the SSH flags, or None."""
    from gitops_kubepkg import git

    password = os.environ.get(password_env, "") if password_env else ""
    key = known = ""
    if args.ssh_key:
        key = _read(args.ssh_key, "--ssh-key")
    if args.known_hosts:
        path = Path(args.known_hosts).expanduser()
        known = _read(str(path), "--known-hosts") if path.exists() else ""
    if not (username or password or key or known):
        return None
    return git.Credentials(
        username=username,
        password=password,
        ssh_private_key=key,
        ssh_passphrase=os.environ.get("GITOPS_KUBEPKG_SSH_PASSPHRASE", ""),
        known_hosts=known,
    )


def _read(path: str, flag: str) -> str:
    try:
        return Path(path).expanduser().read_text()
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot read: {e.strerror or e}") from e


def parse_author(text: str) -> tuple[str, str]:
    m = re.match(r"^\s*(.+?)\s*<([^<>\s]+)>\s*$", text)
    if not m:
        raise InputError(f"--author {text!r}: want 'Name <email>'")
    return m.group(1), m.group(2)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "promote",
        help="promote a catalog revision into a deployment repository as a merge-request branch",
        description="Write the KubePkg at the catalog tag <package>/v<version> into the deployment "
        "repository on branch promote/<package>/<version>, recording its catalog URL, tag and "
        "commit, and push that branch (the merge request). Prints the request's URL or the branch.",
    )
    p.add_argument("catalog", metavar="CATALOG_URL", help="the catalog repository")
    p.add_argument(
        "request", metavar="PACKAGE@VERSION", help="e.g. web@1.2.0 or web@latest (latest release)"
    )
    p.add_argument("--to", required=True, metavar="DEPLOYMENT_URL", dest="deployment")
    p.add_argument("--path", default="", metavar="DIR", help="directory in the deployment repo")
    p.add_argument(
        "--branch",
        default="",
        help="the branch the request targets (default: the deployment repository's HEAD branch, "
        "main when it has none)",
    )
    p.add_argument(
        "--upgrade",
        action="store_true",
        help="three-way merge into the deployed copy, keeping its local edits",
    )
    p.add_argument(
        "--strategy",
        choices=("theirs", "ours"),
        default="",
        help="settle --upgrade conflicts: theirs = the catalog wins, ours = the deployment wins",
    )
    p.add_argument(
        "--forge",
        choices=("auto", "gitlab", "gitea", "github", "none"),
        default="auto",
        help="open the merge request there too (auto: by host name)",
    )
    p.add_argument(
        "--github-token-env",
        default=GITHUB_TOKEN_ENV,
        metavar="NAME",
        help=f"environment variable holding the GitHub token (default {GITHUB_TOKEN_ENV})",
    )
    p.add_argument("--github-api", default="https://api.github.com", metavar="URL")
    p.add_argument("--author", default="", help="'Name <email>' (default: GIT_AUTHOR_NAME/EMAIL)")
    p.add_argument(
        "--draft",
        action="store_true",
        help="push draft/<package>/<version> and open no merge request (a Draft PackageRevision; "
        "`gitops-kubepkg propose` proposes it)",
    )
    add_signing_flag(p)
    add_credential_flags(p)
    add_output_flag(p, "text", "json", "yaml")
    p.set_defaults(run=run)


SIGNING_PASSPHRASE_ENV = "GITOPS_KUBEPKG_SIGNING_KEY_PASSPHRASE"


def add_signing_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sign-key",
        type=Path,
        metavar="KEY",
        help="sign the commit with this SSH private key (as git with gpg.format=ssh; passphrase "
        f"from ${SIGNING_PASSPHRASE_ENV}), for a Repository with spec.verify",
    )


def signer(args: argparse.Namespace) -> Any:
    """The commit signer ``--sign-key`` asks for, or None."""
    if args.sign_key is None:
        return None
    from gitops_kubepkg import signature

    key = signature.load_private_key(args.sign_key, os.environ.get(SIGNING_PASSPHRASE_ENV, ""))
    return signature.git_signer(key)


def run(args: argparse.Namespace) -> int:
    from gitops_kubepkg.promotion.forge import Forge
    from gitops_kubepkg.promotion.merge3 import Strategy
    from gitops_kubepkg.promotion.promote import Options, default_author, promote
    from gitops_kubepkg.promotion.revisions import parse_request

    if args.strategy and not args.upgrade:
        raise InputError("--strategy settles --upgrade conflicts; add --upgrade or drop it")
    options = Options(
        catalog_url=args.catalog,
        request=parse_request(args.request),
        deployment_url=args.deployment,
        target=args.branch,
        path=args.path,
        upgrade=args.upgrade,
        strategy=Strategy(args.strategy) if args.strategy else Strategy.NONE,
        forge=None if args.forge == "auto" else Forge(args.forge),
        catalog_credentials=credentials(args, args.catalog_username, args.catalog_password_env),
        deployment_credentials=credentials(args, args.username, args.password_env),
        github_token=os.environ.get(args.github_token_env, "") if args.github_token_env else "",
        github_api=args.github_api,
        author=parse_author(args.author) if args.author else default_author(),
        sign=signer(args),
        draft=args.draft,
    )
    done = promote(options)
    if args.output != "text":
        answer = done.to_dict()
        answer["catalog"] = {"url": done.origin.url, **answer["catalog"]}
        dump(answer, args.output)
        return 0
    what = f"{done.package} {done.version}"
    if done.previous is not None:
        what = f"{done.package} {done.previous.version} -> {done.version}"
    print(f"promoted {what} ({done.origin.tag} {done.origin.commit[:12]}) to {done.path}")
    for line in done.settled:
        print(f"  settled ({args.strategy}): {line}")
    for image in done.unpinned:
        print(f"warning: {image} has no digest pinned in the catalog", file=sys.stderr)
    print(done.request_url or f"branch {done.branch} -> {done.target}")
    return 0
