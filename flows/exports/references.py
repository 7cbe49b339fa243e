"""What the exports say about the frameworks an incident is reported against.

MITRE ATLAS technique names, the UK AI Cyber Security Code of Practice provisions the playbooks
give evidence for (titles are short summaries, not quotations: read the Code for the text).
Plain data. What STIX and the OECD report say per incident type is part of the type's entry
(:class:`rearguard.models.incidents.types.ExportProfile`).
"""

from __future__ import annotations

ATLAS_URL = "https://atlas.mitre.org/techniques/{id}"

ATLAS_TECHNIQUES: dict[str, str] = {
    "AML.T0010": "AI Supply Chain Compromise",
    "AML.T0015": "Evade AI Model",
    "AML.T0018": "Manipulate AI Model",
    "AML.T0020": "Poison Training Data",
    "AML.T0024": "Exfiltration via AI Inference API",
    "AML.T0025": "Exfiltration via Cyber Means",
    "AML.T0029": "Denial of AI Service",
    "AML.T0031": "Erode AI Model Integrity",
    "AML.T0034": "Cost Harvesting",
    "AML.T0051": "LLM Prompt Injection",
}

CODE_OF_PRACTICE = "UK AI Cyber Security Code of Practice (ETSI TS 104 223)"

# provision -> (summary of what it asks, where this incident's record shows it)
PROVISIONS: dict[str, tuple[str, str]] = {
    "4": (
        "Human oversight of AI systems",
        "known-good versions are approved by named people; the playbook only takes trust away",
    ),
    "5.1": (
        "Keep an inventory of AI assets",
        "the affected asset and every version involved are listed with their status",
    ),
    "5.2": (
        "Version, track and protect AI assets",
        "each version's manifest digest, who registered and who approved it",
    ),
    "5.3": (
        "Have a disaster-recovery plan that restores a known-good state",
        "the rollback to a re-verified known-good version, recorded step by step",
    ),
    "5.3.1": (
        "Restore to a known-good state after a compromise",
        "the version selected, why others were rejected, and the validation after the rollback",
    ),
    "6.5": (
        "Create, test and maintain an incident-management and recovery plan",
        "the playbook run itself, its timing metrics and this review",
    ),
    "8.1.2": (
        "Record cryptographic hashes of model components",
        "per-file SHA-256 re-verification of every version during the incident",
    ),
    "8.3": (
        "Log changes to prompts and configuration",
        "status changes and alias moves of the asset in the timeline",
    ),
    "12.1": (
        "Log system and user actions for audit and investigation",
        "the hash-chained timeline of every intent, outcome and decision",
    ),
}


def atlas_name(technique: str) -> str:
    """The name of an ATLAS technique, or its id when this table does not know it."""
    return ATLAS_TECHNIQUES.get(technique, technique)


def provision(number: str) -> tuple[str, str]:
    """(summary, where the record shows it) for a Code of Practice provision."""
    if number in PROVISIONS:
        return PROVISIONS[number]
    principle = number.split(".", 1)[0]
    if principle in PROVISIONS:
        return PROVISIONS[principle]
    return (f"provision {number}", "see the timeline")
