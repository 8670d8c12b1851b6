"""One redaction, label-value, condition and event rule for every part (``gitops_kubepkg.conventions``)."""

from __future__ import annotations

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.conventions import (
    condition,
    event,
    find_condition,
    label_value,
    redact_text,
    redact_url,
)
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


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = condition("Ready", True, "Synced", "ok", now="2026-01-01T00:00:00Z", generation=2)
    assert first == {
        "type": "Ready",
        "status": "True",
        "reason": "Synced",
        "message": "ok",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 2,
    }
    later = "2026-01-02T00:00:00Z"
    same = condition("Ready", True, "Other", "still ok", now=later, previous=[first])
    assert same["lastTransitionTime"] == "2026-01-01T00:00:00Z", "a new reason is no transition"
    flipped = condition("Ready", False, "Failed", "x" * 40000, now=later, previous=[first])
    assert flipped["lastTransitionTime"] == later and len(flipped["message"]) == 32768
    assert "observedGeneration" not in flipped
    assert find_condition([first, "junk"], "Ready") == first
    assert find_condition(None, "Ready") == {}


def test_every_event_has_one_shape_and_a_name_only_when_once_only() -> None:
    involved = {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "namespace": "ns", "uid": ""}
    generated = event(involved, "Warning", "Drifted", "m" * 2000, now="2026-01-01T00:00:00Z")
    assert generated["metadata"] == {"namespace": "ns", "generateName": "c."}
    assert "uid" not in generated["involvedObject"], "unknown fields are left out"
    assert len(generated["message"]) == 1024 and generated["count"] == 1
    assert generated["source"] == {"component": "gitops-kubepkg"}
    named = event(involved, "Normal", "X", "y", now="t", name="c.abc", instance="pod-1")
    assert named["metadata"] == {"namespace": "ns", "name": "c.abc"}
    assert named["reportingInstance"] == "pod-1"
