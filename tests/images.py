"""What the controller image declares, read from the Dockerfile and from scripts/build-image
(`make image`), so tests can keep the two (and a built archive) saying the same.

Place in the flow: test helpers only; pure standard library.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def build_image_module() -> ModuleType:
    path = REPO / "scripts" / "build-image"
    loader = importlib.machinery.SourceFileLoader("build_image", str(path))
    spec = importlib.util.spec_from_loader("build_image", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def dockerfile_final_stage(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage, continuation lines joined, comments gone."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            instructions = []
        instructions.append((word.upper(), rest.strip()))
    return instructions


def dockerfile_declarations() -> dict[str, Any]:
    """User, entrypoint, command, exposed ports, environment and the state directory."""
    declared: dict[str, Any] = {"env": {}, "ports": set()}
    for word, rest in dockerfile_final_stage():
        if word == "USER":
            declared["user"] = rest
        elif word == "ENTRYPOINT":
            declared["entrypoint"] = json.loads(rest)
        elif word == "CMD":
            declared["cmd"] = json.loads(rest)
        elif word == "EXPOSE":
            declared["ports"] |= {p if "/" in p else f"{p}/tcp" for p in rest.split()}
        elif word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                declared["env"][key] = value
        elif word == "RUN" and "chown" in rest:
            words = shlex.split(rest.replace("&&", " ; "))
            index = words.index("chown")
            declared["state_owner"], declared["state_dir"] = words[index + 1], words[index + 2]
    return declared
