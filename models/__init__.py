"""State and the domain, as plain Python: no Prefect, no flows, no playbooks.

``errors`` (the root error and its exit codes), ``enums`` (the vocabularies), ``runtime`` (the
settings, database and registry one run works with); then one subpackage per concern: ``db``,
``config``, ``audit``, ``assets``, ``registry``, ``integrity``, ``incidents``, ``recovery``,
``drills``.
"""
