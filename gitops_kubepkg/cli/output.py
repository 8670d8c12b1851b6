"""Machine output for scripts (``-o json|yaml``) and plain tables for people."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml


def add_output_flag(parser: argparse.ArgumentParser, *choices: str) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=choices or ("text", "json", "yaml"),
        default=(choices or ("text",))[0],
        help="output format (json and yaml are for scripts)",
    )


def dump(data: Any, fmt: str, out: TextIO | None = None) -> None:
    """Write ``data`` as JSON or YAML; YAML keeps key order and multi-line strings readable."""
    out = out or sys.stdout
    if fmt == "json":
        json.dump(data, out, indent=2, sort_keys=False)
        out.write("\n")
    else:
        yaml.safe_dump(data, out, sort_keys=False, default_flow_style=False)


def dump_all(docs: Sequence[Any], fmt: str, out: TextIO | None = None) -> None:
    """Several objects: a JSON list, or YAML documents separated by ``---``."""
    out = out or sys.stdout
    if fmt == "json":
        dump(list(docs), fmt, out)
    else:
        yaml.safe_dump_all(docs, out, sort_keys=False, default_flow_style=False)


def table(rows: Sequence[Sequence[str]], header: Sequence[str], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for row in [header, *rows]:
        out.write("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
