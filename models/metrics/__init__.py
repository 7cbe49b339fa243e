"""Metrics: counters kept where things happen, and what a Prometheus scrape reads."""
