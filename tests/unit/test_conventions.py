"""One redaction and one label-value rule for every part (``gitops_kubepkg.conventions``)."""

from __future__ import annotations

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.conventions import label_value, redact_text, redact_url
from gitops_kubepkg.registry import client
from gitops_kubepkg.sources import mirror


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://alice:s3cret@git.example.com/org/app.git", "https://git.example.com/org/app.git"),
        ("https://x-access-token:t0k@github.com/o/r", "https://github.com/o/r"),
        ("ssh://git@git.example.com/org/app.git", "ssh://git@git.example.com/org/app.git"),
        ("git@github.com:org/app.git", "git@github.com:org/app.git"),
        ("file:///srv/git/app.git", "file:///srv/git/app.git"),
        ("https://s3.example.com/b?X-Amz-Signature=abc&part=1", "https://s3.example.com/b?X-Amz-Signature=***&part=1"),
    ],
)  # fmt: skip
def test_a_url_keeps_what_names_it_and_loses_its_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_every_url_in_a_message_is_redacted() -> None:
    text = "fetch https://u:s3cret@h.example/r.git failed; retry http://h2/x?token=t0k later"
    out = redact_text(text)
    assert "s3cret" not in out and "t0k" not in out
    assert out == "fetch https://h.example/r.git failed; retry http://h2/x?token=*** later"


def test_git_registry_and_mirrors_use_the_one_implementation() -> None:
    assert git.redact is redact_text
    assert client.redact is redact_url
    assert mirror.redact_url is redact_url


def test_label_values_are_kept_when_valid_and_made_valid_and_distinct_otherwise() -> None:
    assert label_value("web") == "web"
    assert label_value("1.2.3+build.7") != label_value("1.2.3-build.7")
    long = "a" * 70
    assert len(label_value(long)) <= 63 and label_value(long) != label_value("a" * 71)
    assert label_value("+++").isalnum()
