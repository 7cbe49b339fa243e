"""The ``rearguard`` command: one module per command group. Nothing outside ``flows.cli``
imports it."""
