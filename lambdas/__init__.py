"""Cluster lifecycle Lambdas: preflight, create, status, terminate and sweep EMR clusters."""
