"""Rewriting a deployed KubePkg file keeps what people wrote: comments, order, quoting, layout."""

from __future__ import annotations

import copy
import difflib
from typing import Any

import yaml

from gitops_kubepkg.promotion import kubepkgfile

DEPLOYED = b"""\
# web: owned by the platform team; ask in #platform before editing.
apiVersion: octohelm.tech/v1alpha1
kind: KubePkg
metadata:
  name: web
  annotations:
    note: "keep me quoted"
spec:
  version: 1.0.0  # bumped by promotion
  images:
    docker.io/library/nginx:1.25: ""
  manifests:
    web.default.deployment:
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: web
        namespace: default
      spec:
        replicas: 3  # scaled up for the holidays
        selector:
          matchLabels:
            app: web
        template:
          metadata:
            labels:
              app: web
          spec:
            containers:
            - name: web
              image: docker.io/library/nginx:1.25
              args:
              - --port=8080  # the load balancer expects 8080
"""


def upgraded() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DEPLOYED)
    new = copy.deepcopy(doc)
    new["spec"]["version"] = "1.1.0"
    new["spec"]["images"] = {"docker.io/library/nginx:1.27": ""}
    container = new["spec"]["manifests"]["web.default.deployment"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    container["image"] = "docker.io/library/nginx:1.27"
    container["env"] = [{"name": "MODE", "value": "fast"}]
    return new


def changed_lines(before: bytes, after: bytes) -> list[str]:
    diff = difflib.unified_diff(before.decode().splitlines(), after.decode().splitlines(), n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_an_upgrade_changes_only_the_lines_whose_values_changed() -> None:
    want = upgraded()
    out = kubepkgfile.write(want, "web/kubepkg.yaml", keep=DEPLOYED)
    assert yaml.safe_load(out) == want
    text = out.decode()
    for kept in (
        "# web: owned by the platform team; ask in #platform before editing.",
        "version: 1.1.0  # bumped by promotion",
        "replicas: 3  # scaled up for the holidays",
        "- --port=8080  # the load balancer expects 8080",
        'note: "keep me quoted"',
        "            - name: web",
    ):
        assert kept in text, kept
    assert changed_lines(DEPLOYED, out) == [
        "-  version: 1.0.0  # bumped by promotion",
        "+  version: 1.1.0  # bumped by promotion",
        '-    docker.io/library/nginx:1.25: ""',
        "+    docker.io/library/nginx:1.27: ''",
        "-              image: docker.io/library/nginx:1.25",
        "+              image: docker.io/library/nginx:1.27",
        "+              env:",
        "+              - name: MODE",
        "+                value: fast",
    ]


def test_a_file_it_cannot_edit_faithfully_is_written_anew() -> None:
    want = upgraded()
    two_documents = DEPLOYED + b"---\n" + DEPLOYED
    for keep in (two_documents, b"- a list\n", b"\xff not utf-8"):
        out = kubepkgfile.write(want, "web/kubepkg.yaml", keep=keep)
        assert out == kubepkgfile.render(want, "web/kubepkg.yaml")


def test_json_files_are_rendered_as_json() -> None:
    want = upgraded()
    out = kubepkgfile.write(want, "web/kubepkg.json", keep=b"{}")
    assert out == kubepkgfile.render(want, "web/kubepkg.json")
    assert out.startswith(b"{\n")
