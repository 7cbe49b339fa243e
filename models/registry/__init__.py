"""The production pointer and the stored bytes: the local content-addressed store, MLflow."""
