"""Install this project's CRDs into a cluster and wait until they serve.

Used by the demo, the tests' cluster fixture, benchmarks and ``gitops-kubepkg install``: a CRD is
ready when it is Established and a list of its kind succeeds (the API answers 503 for a moment
while a new CRD's storage initialises; the kube adapter retries those).
"""

from __future__ import annotations

from gitops_kubepkg.kube import Kube
from gitops_kubepkg.spec.crds import all_crds

CRD_API = "apiextensions.k8s.io/v1"


def install_crds(kube: Kube, *, timeout: float = 60.0) -> list[str]:
    """Apply every CRD, wait until each serves; return their names."""
    names = []
    for crd in all_crds().values():
        kube.apply(crd)
        names.append(crd["metadata"]["name"])
    for crd in all_crds().values():
        kube.wait_for(
            CRD_API,
            "CustomResourceDefinition",
            crd["metadata"]["name"],
            condition="Established",
            timeout=timeout,
        )
    kube.forget_discovery()
    for crd in all_crds().values():
        spec = crd["spec"]
        kube.list(f"{spec['group']}/{spec['versions'][0]['name']}", spec["names"]["kind"])
    return names
