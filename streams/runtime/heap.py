"""The garbage collector tuned for leadflow's processes: many long-lived objects (lead records), few cycles.

With CPython's default thresholds (700, 10, 10) the collector runs every 700 new container objects and walks the
young generations each time, and the core makes a dozen small models per event: measured on the pure core
(`make bench-core`), collections took 13% of the time. The records are freed by reference counting, not by the
collector, so collecting a hundred times less often changes what stays in memory by little.
"""

from __future__ import annotations

import gc

# New container objects between two collections of the youngest generation, then how many of those before the
# middle one, and how many of those before the oldest.
THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.set_threshold(*THRESHOLDS)
