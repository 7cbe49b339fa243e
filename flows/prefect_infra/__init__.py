"""Prefect plumbing: the local server, deployments and workers, events, hook deployments,
and what Prefect lends a runtime (``lent``)."""
