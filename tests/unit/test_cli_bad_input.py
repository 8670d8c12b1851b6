"""Bad input to any command: one clear line naming what is wrong, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED = str(REPO / "examples" / "kubepkg.seed.json")


def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "text.yaml": "just words\n",
        "kubeconfig-string": "hello\n",
        "kubeconfig-shape": "apiVersion: v1\nkind: Config\nclusters: 5\n",
    }
    paths = {}
    for name, text in out.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    return paths


CASES = [
    (
        "a trace target without a name",
        ["trace", "deployment"],
        1,
        "'deployment': want KIND/NAME (deployment/web) or kubepkg NAME",
    ),
    ("a history of something else", ["history", "pods", "web"], 1, "only kubepkg has a history"),
    (
        "a rollback of something else",
        ["rollback", "deployment", "web", "--to", "1"],
        1,
        "only a kubepkg can be rolled back",
    ),
    ("a missing file", ["apply", "{tmp}/nope.yaml"], 1, "{tmp}/nope.yaml: cannot read"),
    (
        "a file that is not a KubePkg",
        ["render", "{tmp}/text.yaml"],
        1,
        "{tmp}/text.yaml: document: must be object",
    ),
    (
        "a kubeconfig that is a string",
        ["diff", SEED, "--kubeconfig", "{tmp}/kubeconfig-string"],
        1,
        "kubeconfig {tmp}/kubeconfig-string: not a kubeconfig file",
    ),
    (
        "a kubeconfig of the wrong shape",
        ["get", "kubepkgs", "--kubeconfig", "{tmp}/kubeconfig-shape"],
        1,
        "kubeconfig {tmp}/kubeconfig-shape: not a kubeconfig file",
    ),
    (
        "a missing kubeconfig",
        ["controller", "--once", "--kubeconfig", "{tmp}/none", "--state-dir", "{tmp}/st"],
        1,
        "kubeconfig {tmp}/none",
    ),
    (
        "a listen address without a port",
        ["registry", "serve", "--root", "{tmp}", "--listen", "bad"],
        1,
        "--listen 'bad': want HOST:PORT",
    ),
    (
        "an import source that does not exist",
        ["airgap", "import", "{tmp}/nope", "--store", "{tmp}/store"],
        1,
        "{tmp}/nope",
    ),
    (
        "a repository interval that is not a duration",
        [
            "repo",
            "add",
            "x",
            "--url",
            "file:///x",
            "--type",
            "catalog",
            "--interval",
            "5x",
            "--dry-run",
        ],
        1,
        "interval '5x'",
    ),
    (
        "a catalog that does not exist",
        ["promote", "file://{tmp}/nope", "web@1.0.0", "--to", "file://{tmp}/nope2"],
        2,
        "file://{tmp}/nope",
    ),
]


@pytest.mark.parametrize(
    ("argv", "code", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, argv: list[str], code: int, message: str
) -> None:
    files(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert message.replace("{tmp}", str(tmp_path)) in result.stderr
