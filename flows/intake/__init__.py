"""The HTTP intake of ``rearguard serve``: routes, the alert writer, the playbook process."""
