"""Which kubeconfigs the kube adapter reads itself, and what it reads from them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from gitops_kubepkg.kube import _plain_kubeconfig


def write(tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://127.0.0.1:6443", **cluster}}
                ],
                "users": [{"name": "u", "user": user}],
                "contexts": [
                    {"name": "main", "context": {"cluster": "c", "user": "u"}},
                    {"name": "other", "context": {"cluster": "c", "user": "nobody"}},
                ],
                "current-context": "main",
            }
        )
    )
    return str(path)


def test_embedded_certificates_stay_in_memory(tmp_path: Path) -> None:
    data = {k: base64.b64encode(k.encode()).decode() for k in ("ca", "cert", "key")}
    path = write(
        tmp_path,
        {"certificate-authority-data": data["ca"]},
        {"client-certificate-data": data["cert"], "client-key-data": data["key"]},
    )
    conn = _plain_kubeconfig(path, None)
    assert conn is not None
    assert conn.host == "https://127.0.0.1:6443" and conn.verify
    assert (conn.ca.data, conn.cert.data, conn.key.data) == (b"ca", b"cert", b"key")
    assert conn.ca.file is None and conn.cert.file is None and conn.key.file is None
    assert conn.token() == ""


def test_relative_paths_are_relative_to_the_kubeconfig_and_tokens_are_bearer(
    tmp_path: Path,
) -> None:
    (tmp_path / "token").write_text("abc\n")
    path = write(
        tmp_path,
        {"certificate-authority": "ca.crt", "insecure-skip-tls-verify": True},
        {"tokenFile": "token"},
    )
    conn = _plain_kubeconfig(path, None)
    assert conn is not None
    assert conn.ca.file == str(tmp_path / "ca.crt") and not conn.verify
    assert conn.token() == "Bearer abc"
    (tmp_path / "token").write_text("rotated")
    assert conn.token() == "Bearer rotated", "a token file is read again on every request"


def test_plugins_and_unusual_users_are_left_to_the_kubernetes_package(tmp_path: Path) -> None:
    exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}}
    assert _plain_kubeconfig(write(tmp_path, {}, exec_user), None) is None
    assert _plain_kubeconfig(write(tmp_path, {}, {"username": "a", "password": "b"}), None) is None
    assert (
        _plain_kubeconfig(write(tmp_path, {"proxy-url": "http://p"}, {"token": "t"}), None) is None
    )
    assert _plain_kubeconfig(write(tmp_path, {}, {"token": "t"}), "other") is None, "no such user"
    assert _plain_kubeconfig(write(tmp_path, {}, {"token": "t"}), "missing") is None
