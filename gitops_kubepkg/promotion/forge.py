"""Opening the merge request on a forge, once the promotion branch is pushed.

Last step of ``promote``. The branch itself is the request wherever the remote is plain git; a forge
also gets asked to open one:

- GitLab: push options on the branch's own push (``merge_request.create``, ``.target``, ``.title``,
  ``.description``); GitLab prints the request's URL on the push's sideband;
- Gitea/Forgejo: AGit, the same commit also pushed to ``refs/for/<target>`` with the ``topic``,
  ``title`` and ``description`` push options; the URL comes back on the sideband too;
- GitHub: after the push, ``POST /repos/{owner}/{repo}/pulls`` with a token; its ``html_url``.

``auto`` picks by host name (``gitlab``, ``gitea``/``forgejo``/``codeberg``, ``github.com``) and
falls back to plain git.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from gitops_kubepkg.conventions import redact_url
from gitops_kubepkg.errors import AuthError, InputError, SourceError

GITHUB_API = "https://api.github.com"


class Forge(Enum):
    NONE = "none"
    GITLAB = "gitlab"
    GITEA = "gitea"
    GITHUB = "github"


def detect(url: str) -> Forge:
    """The forge a remote URL's host names, or NONE when it names none we know."""
    if re.match(r"^[\w.-]+@[\w.-]+:", url):  # scp-like ssh: git@host:owner/repo
        host = url.split("@", 1)[1].split(":", 1)[0]
    else:
        host = urllib.parse.urlsplit(url).hostname or ""
    host = host.lower()
    if "gitlab" in host:
        return Forge.GITLAB
    if any(name in host for name in ("gitea", "forgejo", "codeberg")):
        return Forge.GITEA
    if host == "github.com" or host.startswith("github."):
        return Forge.GITHUB
    return Forge.NONE


@dataclass(frozen=True)
class Request:
    """What the merge request says: from ``branch`` into ``target``."""

    branch: str
    target: str
    title: str
    description: str


def _option_value(text: str) -> str:
    # A push option is one line on the wire: a newline would end it early.
    return " ".join(text.split())


def push_options(forge: Forge, request: Request) -> list[str]:
    """The ``git push -o`` options that open the request on ``forge`` (none for the others)."""
    if forge is Forge.GITLAB:
        return [
            "merge_request.create",
            f"merge_request.target={request.target}",
            f"merge_request.title={_option_value(request.title)}",
            f"merge_request.description={_option_value(request.description)}",
            "merge_request.remove_source_branch",
        ]
    if forge is Forge.GITEA:
        return [
            f"topic={request.branch}",
            f"title={_option_value(request.title)}",
            f"description={_option_value(request.description)}",
        ]
    return []


def agit_ref(forge: Forge, request: Request) -> str | None:
    """The AGit ref Gitea/Forgejo turn into a pull request, for that forge only."""
    return f"refs/for/{request.target}" if forge is Forge.GITEA else None


_URL = re.compile(r"https?://\S+")


def request_url(messages: Sequence[str]) -> str:
    """The merge request's URL among a push's sideband lines (GitLab's and Gitea's wording)."""
    for line in messages:
        lowered = line.lower()
        if "merge request" in lowered or "pull request" in lowered or "/pulls/" in lowered:
            found = _URL.search(line) or next(
                (_URL.search(m) for m in messages[messages.index(line) + 1 :] if _URL.search(m)),
                None,
            )
            if found:
                return found.group(0).rstrip(".,)")
    return ""


def github_repository(url: str) -> tuple[str, str]:
    """``owner``, ``repo`` of a GitHub remote URL (https or ssh)."""
    if re.match(r"^[\w.-]+@[\w.-]+:", url):
        path = url.split(":", 1)[1]
    else:
        path = urllib.parse.urlsplit(url).path
    parts = [p for p in path.strip("/").removesuffix(".git").split("/") if p]
    if len(parts) < 2:
        raise InputError(f"{redact_url(url)}: cannot tell the GitHub owner/repository from the URL")
    return parts[-2], parts[-1]


def open_github_pull(
    api: str, owner: str, repo: str, token: str, request: Request, *, timeout: float = 30
) -> str:
    """Create the pull request through GitHub's REST API; return its ``html_url``."""
    if not token:
        raise AuthError(
            "GitHub needs a token to open a pull request (set GITHUB_TOKEN or pass "
            "--github-token-env NAME); or use --forge none to push only the branch"
        )
    body = json.dumps(
        {
            "title": request.title,
            "head": request.branch,
            "base": request.target,
            "body": request.description,
            "maintainer_can_modify": True,
        }
    ).encode()
    endpoint = f"{api.rstrip('/')}/repos/{owner}/{repo}/pulls"
    req = urllib.request.Request(
        endpoint,
        data=body,
        method="POST",
        headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "gitops-kubepkg",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        detail = _github_error(e)
        if e.code in (401, 403):
            raise AuthError(f"{endpoint}: GitHub refused the token ({e.code}): {detail}") from e
        raise SourceError(f"{endpoint}: GitHub answered {e.code}: {detail}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SourceError(f"{endpoint}: cannot reach the GitHub API: {e}") from e
    url = answer.get("html_url") if isinstance(answer, dict) else None
    if not isinstance(url, str) or not url:
        raise SourceError(f"{endpoint}: GitHub's answer has no html_url")
    return url


def _github_error(e: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(e.read() or b"{}")
    except (ValueError, OSError):
        return e.reason or ""
    message = str(data.get("message", "")) if isinstance(data, dict) else ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list):
        message += "; " + "; ".join(
            str(x.get("message") or x.get("code") or x) if isinstance(x, dict) else str(x)
            for x in errors
        )
    return message or str(e.reason)
