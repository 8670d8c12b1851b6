"""``python -m gitops_kubepkg``: the same as the ``gitops-kubepkg`` command."""

import sys

from gitops_kubepkg.cli import main

sys.exit(main())
