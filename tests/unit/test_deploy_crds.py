"""deploy/crds is exactly what ``gitops-kubepkg crds --write deploy/crds`` generates."""

from __future__ import annotations

from pathlib import Path

from gitops_kubepkg.cli.crds import render

CRDS = Path(__file__).resolve().parents[2] / "deploy" / "crds"


def test_deploy_crds_are_the_generated_output() -> None:
    generated = render()
    committed = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    assert sorted(committed) == sorted(generated), "a CRD file is missing or left over"
    for name, text in generated.items():
        assert committed[name] == text, (
            f"deploy/crds/{name} is stale: run `gitops-kubepkg crds --write deploy/crds`"
        )
