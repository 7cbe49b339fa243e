"""Orchestration: everything that starts or runs a Prefect flow.

``steps`` (Prefect tasks around the step bodies of ``rearguard.models.recovery``),
``playbook_guard`` (what every playbook does around its steps), ``run_playbook`` (run, queue or
dispatch a playbook), ``approvals`` (the approval gate), ``timeline_text`` (the one describer of
a step result or an event), ``drills`` (running drills, the scheduler), ``exports``, ``intake``
(the HTTP app), ``prefect_infra`` (the local Prefect server, deployments, events) and ``cli``.
"""
