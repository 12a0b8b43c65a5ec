"""What one step of the per-event chain (core.pipeline) hands to the next: the lead so far and its outputs."""

from __future__ import annotations

from dataclasses import dataclass

from leadflow.schemas.outputs import Output
from leadflow.schemas.state import LeadState


@dataclass(frozen=True, slots=True)
class Step:
    state: LeadState | None
    outputs: tuple[Output, ...] = ()
    refused: bool = False
    erased: bool = False
    forwarded: bool = False  # passed on to the lead this one was merged into (core.merges), not applied here
