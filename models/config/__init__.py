"""Settings: one pydantic-settings model per concern, one module each, and one mechanism
(``base``) that reads ``rearguard.toml``; ``settings`` resolves them all for a run."""
