"""leadflow: the marketing–sales SLA engine. Its packages, importable here so they clash with no other distribution:

- `leadflow.schemas`: the pydantic models (events, outputs, state, policy), the repository's `schemas/`;
- `leadflow.core`: the functional core (lifecycle, SLA clocks, routing, reports), the repository's `core/`;
- `leadflow.streams`: the Faust worker, the CLI and the tools around them, the repository's `streams/`.

The three live at the top of the repository; `leadflow/` holds links to them.
"""
