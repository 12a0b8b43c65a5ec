"""The fault-injection suite (issue 13, item 7): worker kills, a worker lost from a group of two, a broker outage,
duplicated and shuffled input, hostile records. CI sizes by default; `LEADFLOW_FAULTS=long` (benchmarks/faults.py)
runs the long variants."""
