"""How big each fault test is: the CI variant by default (the suite must fit the CI time limit), the long one with
LEADFLOW_FAULTS=long (benchmarks/faults.py). Every test prints what it used (conftest.py, the figures)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    variant: str
    kills: int  # SIGKILLs of the worker during one real-time stream
    kill_leads: int  # leads of that stream, and the seconds over which they become MQL
    kill_spread_s: float
    group_leads: int  # the two-worker test's stream
    group_spread_s: float
    outage_s: float  # how long the broker stays stopped
    replay_leads: int  # simulated journeys of the offline duplicate-and-shuffle check (per seed)
    replay_seeds: int
    hostile: int  # hostile records generated with hypothesis and sent through the broker


CI = Sizes("ci", kills=5, kill_leads=200, kill_spread_s=54, group_leads=160, group_spread_s=40, outage_s=15,
           replay_leads=600, replay_seeds=2, hostile=10_000)  # fmt: skip
LONG = Sizes("long", kills=20, kill_leads=1000, kill_spread_s=300, group_leads=400, group_spread_s=100, outage_s=60,
             replay_leads=3_000, replay_seeds=5, hostile=50_000)  # fmt: skip


def sizes() -> Sizes:
    wanted = os.environ.get("LEADFLOW_FAULTS", "ci")
    if wanted not in ("ci", "long"):
        raise ValueError(f"LEADFLOW_FAULTS={wanted!r}: use ci (the default) or long")
    return LONG if wanted == "long" else CI


SIZES = sizes()
