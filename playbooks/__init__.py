"""One Prefect flow per incident type, and ``catalog``: what each type needs and does."""
