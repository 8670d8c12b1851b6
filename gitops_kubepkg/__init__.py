"""gitops-kubepkg: a GitOps reconciler for KubePkg packages.

The flow, one package per step (folders are the architecture):

    spec/       the KubePkg model: load JSON/YAML, validate, normalise (pure)
    sources/    git: mirror cache, polling, webhooks, revision discovery, bundles
    registry/   OCI: digests, blob store, image layout, airgap tar, pull-only server
    reconcile/  render a KubePkg to objects, plan, server-side apply, prune, status
    promotion/  catalog revision -> deployment repository merge request, upgrades
    airgap/     export and import of a git bundle plus a KubePkg airgap tarball
    runtime/    informers with a shared cache, the one work queue, supervised workers
    controller/ the controller process: Repositories and KubePkgs on the runtime, leader, shards
    kube.py     the one module that talks to the Kubernetes API
    git.py      the one module that talks to pygit2
    clock.py    injectable time for the runtime, queue, leader and shards (tests: FakeClock)
    conventions.py  one redaction and one label-value rule for every part
    cli/        the ``gitops-kubepkg`` command
"""

__version__ = "0.1.0"
