"""Exports of an incident, built from the database alone.

``facts`` reads an incident and streams its timeline; one module per format writes it:
``review_md`` and ``review_html`` (the post-incident review, from ``templates/``, with the
``chart``), ``timeline_jsonl`` (verifiable offline, and its verifier), ``timeline_csv``,
``stix`` (a STIX 2.1 bundle) and ``report`` (OECD-style JSON). ``export`` picks the writer;
``output`` writes files atomically. Every text passes through ``rearguard.models.audit.redaction``.
"""
