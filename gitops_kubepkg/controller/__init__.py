"""The controller process: repository sync, PackageRevision rendering, KubePkg reconciling, webhooks."""
