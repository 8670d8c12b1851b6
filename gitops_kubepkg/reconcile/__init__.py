"""Reconcile: render a KubePkg into objects, plan against live state, apply, prune, report status."""
