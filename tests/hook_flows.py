"""A flow the hook tests deploy: it writes down what the hook gave it, then ends or hangs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow


@flow(name="rotate-test-credentials")
def rotate_test_credentials() -> None:
    """Write ``<incident id> <hook> <drill flag>`` to ``$HOOK_OUT``; hang if ``$HOOK_HANG``."""
    Path(os.environ["HOOK_OUT"]).write_text(
        f"{os.environ['REARGUARD_INCIDENT_ID']} {os.environ['REARGUARD_HOOK']}"
    )
    if os.environ.get("HOOK_HANG"):
        time.sleep(120)
