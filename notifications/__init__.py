"""Notifications: the durable outbox, its dispatcher, routing, templates, and ``channels`` (one
module per channel: console and file, Slack, email, webhook). Plain Python: no Prefect.
"""
