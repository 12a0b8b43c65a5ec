"""What one step of the per-event chain (core.pipeline) hands to the next: the lead so far and its outputs."""

from __future__ import annotations

from typing import NamedTuple

from leadflow.schemas.outputs import Output
from leadflow.schemas.state import LeadState


# A named tuple, not a frozen dataclass: as immutable, and built in a third of the time (the chain builds several
# per event: a frozen dataclass sets each field through object.__setattr__).
class Step(NamedTuple):
    state: LeadState | None
    outputs: tuple[Output, ...] = ()
    refused: bool = False
    erased: bool = False
    forwarded: bool = False  # passed on to the lead this one was merged into (core.merges), not applied here
