"""Airgap: export a git bundle plus a KubePkg airgap tarball, and import them on the other side."""
