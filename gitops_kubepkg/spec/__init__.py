"""The KubePkg model: read JSON/YAML, validate with errors that name file and field, normalise.

Pure: nothing here touches the network, git or the cluster.
"""

from gitops_kubepkg.spec.imageref import ImageRef, parse_image
from gitops_kubepkg.spec.model import (
    API_VERSION,
    FILE_NAMES,
    KIND,
    LIST_KIND,
    KubeObject,
    KubePkg,
    container_images,
    load_path,
    manifest_key,
    parse_kubepkgs,
)

__all__ = [
    "API_VERSION",
    "FILE_NAMES",
    "KIND",
    "LIST_KIND",
    "ImageRef",
    "KubeObject",
    "KubePkg",
    "container_images",
    "load_path",
    "manifest_key",
    "parse_image",
    "parse_kubepkgs",
]
