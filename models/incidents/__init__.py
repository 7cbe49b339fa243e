"""Incidents: opening and state (``service``), dedup keys, alerts, approval requests, and
resolution."""
