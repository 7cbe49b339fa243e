"""How long to wait before retrying something that failed: exponential back-off, capped.

The notification dispatcher and the checkpoint publisher both retry a destination that is
down; one formula, so that both slow down the same way.
"""

from __future__ import annotations


def backoff_s(attempts: int, *, base_s: float, max_s: float) -> float:
    """The wait after the ``attempts``-th failed attempt: ``base_s``, doubling, at most ``max_s``.

    Args:
        attempts: attempts made so far (1 after the first failure).
        base_s: the wait after the first failure.
        max_s: the longest wait.
    """
    return min(max_s, base_s * 2.0 ** max(0, attempts - 1))
