"""Is a version still what was registered? Hashing, re-verification against the manifest,
the artifact scanner (``scan``) and the integrity sweep."""
