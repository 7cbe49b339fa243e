"""Assets and their versions: registration, approval, promotion (``versions``), lineage,
the digest denylist, validation checks (``checks``) and importing MLflow versions."""
