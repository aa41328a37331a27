"""Code shared by the cluster lifecycle handlers."""
