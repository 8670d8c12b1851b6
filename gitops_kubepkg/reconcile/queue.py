"""The work queue of KubePkg reconciles: ``runtime.queue`` (one implementation for every kind)."""

from gitops_kubepkg.runtime.queue import WorkQueue, backoff

__all__ = ["WorkQueue", "backoff"]
