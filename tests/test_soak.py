"""The soak benchmark runs end to end with tiny sizes (its figures are measured by hand: benchmarks/RESULTS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_soak_benchmark_runs_with_tiny_sizes(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.soak", "--leads", "20", "--seconds", "120", "--rate", "2"]
    command += ["--cache-dir", str(tmp_path)]
    done = subprocess.run(
        [*command, "--cases", "ab"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| a |", "| b |"))]
    assert len(rows) == 2, done.stdout
    assert "slope 2nd half" in done.stdout
