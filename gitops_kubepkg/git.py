"""The one module that talks to pygit2 (libgit2): open, fetch, list remote refs, read trees.

Everything else in the project speaks in commits (hex strings), refs and bytes; pygit2's errors are
translated here into ``SourceError``/``AuthError``.
"""

from __future__ import annotations

import pygit2

LIBGIT2_VERSION: str = pygit2.LIBGIT2_VERSION
