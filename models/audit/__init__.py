"""The tamper-evident audit chain (``chain``) and the redaction of secrets (``redaction``)."""
