"""Hostile KubePkg files: alias bombs, deep nesting, huge integers, oversize files on disk and in
git. Each is refused with one line naming the file, before it can cost memory or CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.errors import InputError
from gitops_kubepkg.sources.deployment import RepositoryRef, desired
from gitops_kubepkg.spec import document
from gitops_kubepkg.spec.document import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    parse_documents,
    read_documents,
    too_big,
)


def alias_bomb(levels: int = 9) -> bytes:
    """The 'billion laughs': each level a list of nine aliases to the one before (~800 bytes)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "bomb.yaml",
            alias_bomb(),
            "bomb.yaml:7:5: invalid YAML: more than 1000000 nodes, counting every expansion",
        ),
        ("self.yaml", b"a: &a [1, *a]\n", "self.yaml:1:4: invalid YAML: an alias refers to itself"),
        ("deep.json", b"[" * 100_000 + b"]" * 100_000, "deep.json: invalid JSON: nested more than"),
        (
            "deep.json",
            b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
            "deep.json: invalid JSON: nested more than",
        ),
        (
            "deep.yaml",
            b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
            "deep.yaml:1:",
        ),
        ("deep.yaml", b"[" * 100_000, "deep.yaml:1:"),
        ("int.json", b'{"a": ' + b"9" * 5000 + b"}", "int.json: invalid JSON: an integer with"),
        ("int.yaml", b"a: " + b"9" * 5000 + b"\n", "int.yaml: invalid YAML: an integer with"),
        (
            "big.yaml",
            b"a: " + b"x" * MAX_FILE_BYTES,
            f"big.yaml: {MAX_FILE_BYTES + 3} bytes, over the 4 MiB limit",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else "",
)
def test_hostile_documents_are_one_line_errors(name: str, data: bytes, message: str) -> None:
    with pytest.raises(InputError) as e:
        parse_documents(data, name)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_too_many_nodes_without_any_alias_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(document, "MAX_NODES", 1000)
    with pytest.raises(InputError, match=r"^many.yaml:1:1: invalid YAML: more than 1000 nodes"):
        parse_documents(b"- a\n" * 1000, "many.yaml")
    assert len(parse_documents(b"- a\n" * 998, "fine.yaml")[0]) == 998


def test_aliases_and_merge_keys_within_bounds_still_work() -> None:
    docs = parse_documents(b"base: &b {x: 1}\nother:\n  <<: *b\n  y: [*b, *b]\n", "ok.yaml")
    assert docs == [{"base": {"x": 1}, "other": {"x": 1, "y": [{"x": 1}, {"x": 1}]}}]
    assert parse_documents(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, "ok.json") is not None


def test_an_oversize_file_on_disk_is_refused_by_its_size_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "kubepkg.yaml"
    with path.open("wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: 64 MiB of nothing that would cost a read
    with pytest.raises(InputError, match=rf"^{path}: 67108864 bytes, over the 4 MiB limit"):
        read_documents(path)


def test_an_oversize_blob_in_git_is_refused_by_its_header_before_it_is_read(
    tmp_path: Path,
) -> None:
    repo = git.init_bare(tmp_path / "r.git")
    commit = repo.commit_files(
        "main",
        {"web/kubepkg.yaml": b"a: " + b"x" * MAX_FILE_BYTES, "ok/kubepkg.yaml": b"a: 1\n"},
        "c",
    )
    entries = {e.path: e.oid for e in repo.walk(commit)}
    assert repo.blob_size(entries["web/kubepkg.yaml"]) == MAX_FILE_BYTES + 3
    with pytest.raises(InputError, match=r"^web/kubepkg.yaml: \d+ bytes, over the 4 MiB limit"):
        repo.read(commit, "web/kubepkg.yaml", refuse=lambda size: too_big(size, "web/kubepkg.yaml"))
    assert repo.read(commit, "ok/kubepkg.yaml", refuse=lambda s: too_big(s, "x")) == b"a: 1\n"


def test_a_refused_file_fails_alone_and_is_kept_as_unreadable() -> None:
    want = desired(
        RepositoryRef("team", "deploy"),
        "0" * 40,
        {},
        refused={"web/kubepkg.yaml": "web/kubepkg.yaml: 5000000 bytes, over the 4 MiB limit"},
    )
    assert want.unreadable == {"web/kubepkg.yaml"}
    assert [p.message for p in want.problems] == [
        "web/kubepkg.yaml: 5000000 bytes, over the 4 MiB limit"
    ]


def test_validate_on_an_alias_bomb_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "kubepkg.yaml"
    path.write_bytes(alias_bomb())
    result = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{path}:7:5: invalid YAML: more than 1000000 nodes, counting every expansion of an alias"
    ]
