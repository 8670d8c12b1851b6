"""gitops-kubepkg: a GitOps reconciler for KubePkg packages.

The flow, one package per step (folders are the architecture):

    spec/       the KubePkg model: load JSON/YAML, validate, normalise (pure)
    sources/    git: mirror cache, polling, webhooks, revision discovery, bundles
    registry/   OCI: digests, blob store, image layout, airgap tar, pull-only server
    reconcile/  render a KubePkg to objects, plan, server-side apply, prune, status
    promotion/  catalog revision -> deployment repository merge request, upgrades
    airgap/     export and import of a git bundle plus a KubePkg airgap tarball
    kube.py     the one module that talks to the Kubernetes API
    git.py      the one module that talks to pygit2
    cli/        the ``gitops-kubepkg`` command
"""

__version__ = "0.1.0"
