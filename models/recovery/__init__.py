"""The bodies of the playbook steps, as plain Python: containment and rollback, known-good
selection, taint across assets, the tamper diff, degradation checks, hooks, forensic evidence."""
