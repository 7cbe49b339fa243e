"""The approval gate: a playbook pauses for a named person (``gate``); deciding it (``decide``)."""
