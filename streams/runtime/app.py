"""`faust -A leadflow.streams.runtime.app worker`: a worker built from the environment's settings (LEADFLOW_*).

Faust's own command line finds an app as a module attribute; it is built when first asked for, not at import.
`leadflow worker` builds its worker from its flags instead (streams.runtime.worker.Worker).
"""

from __future__ import annotations

import functools
from typing import Any

from leadflow.streams.runtime.settings import Settings
from leadflow.streams.runtime.worker import Worker


@functools.cache
def worker_from_environment() -> Worker:
    return Worker(Settings())


def __getattr__(name: str) -> Any:
    if name == "app":
        return worker_from_environment().app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
