"""OCI registry: digests, content-addressed blob store, image layout, airgap tar, pull-only server."""
