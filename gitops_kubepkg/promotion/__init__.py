"""Promotion: a catalog revision reaches a deployment repository through a merge-request branch."""
