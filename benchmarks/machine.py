"""What a benchmark records about the machine it ran on (benchmarks/RESULTS.md)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_info() -> dict[str, str]:
    """Architecture, CPU model, CPU count and Python version."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "cpu model", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"arch": platform.machine(), "cpu": cpu, "cpus": str(os.cpu_count()), "python": platform.python_version()}
