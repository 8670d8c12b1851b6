"""The dashboard's browser files, read as text: every asset is local and data never becomes
markup. The browser tests (tests/integration/test_dashboard_browser.py) show the pages work;
these lines keep the two rules from being broken by an edit that happens to render fine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "gitops_kubepkg" / "dashboard" / "static"
FILES = sorted(p for p in STATIC.iterdir() if p.is_file())


def test_the_pages_files_are_there() -> None:
    assert {p.name for p in FILES} >= {"index.html", "app.js", "style.css", "icon.svg"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_asset_comes_from_another_origin(path: Path) -> None:
    text = path.read_text()
    # The SVG namespace is an identifier, not a fetch.
    text = text.replace("http://www.w3.org/2000/svg", "")
    assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I) == [], path.name
    assert "@import" not in text and "@font-face" not in text, path.name


def test_the_script_never_turns_data_into_markup() -> None:
    # Whole-line comments may name what the file avoids.
    script = re.sub(r"^\s*//.*$", "", (STATIC / "app.js").read_text(), flags=re.M)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(\"on", "srcdoc", "javascript:"):  # fmt: skip
        assert sink not in script, f"app.js uses {sink}"


def test_the_page_has_no_inline_script_or_style_for_the_policy_to_refuse() -> None:
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
