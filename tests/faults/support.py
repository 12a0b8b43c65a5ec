"""Scenario steps the fault tests share (the side-by-side run itself is tests/test_e2e_time.py's `side_by_side`)."""

from __future__ import annotations

import random

Timed = list[tuple[float, bytes, bytes]]


def delivered_twice_and_shuffled(records: Timed, bound_s: float, seed: int) -> Timed:
    """Every record twice, each copy delivered at its own time up to `bound_s` after the original (so in an order
    shuffled within that bound): sorted by the new delivery time, the value (with its occurred_at) unchanged."""
    rng = random.Random(seed)
    copies = [(at + rng.uniform(0.0, bound_s), key, value) for at, key, value in records for _ in range(2)]
    return sorted(copies, key=lambda copy: copy[0])
