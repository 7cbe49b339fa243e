"""Prefect plumbing: the local server, deployments and workers, events, hook deployments."""
