"""The bodies of the playbook steps, as plain Python: containment and rollback, known-good
selection, taint across assets, the tamper diff, degradation checks, hooks, forensic evidence;
and ``results``, the typed result each body returns (recorded in its outcome event, read back
from there, each describing itself in one line)."""
