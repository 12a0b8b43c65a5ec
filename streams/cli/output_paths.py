"""Where a command writes, checked before it starts: a replay of a quarter's history must not run for minutes and
then fail on its last step, nor leave the other files it writes behind, nor overwrite the file it reads."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def unwritable(flag: str, path: Path | None, *, reads: Iterable[Path] = ()) -> str | None:
    """Why `path` (given as `flag`) cannot take the command's output, naming the fix; None when it can (or when
    the flag was not given). `reads`: the command's input files, which an output must not replace."""
    if path is None:
        return None
    if path.is_dir():
        return f"{flag} {path}: is a directory; name a file in it"
    parent = path.parent
    if not parent.is_dir():
        return f"{flag} {path}: {parent} is not a directory; create it first or name another path"
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{flag} {path}: cannot write there (permission denied); name another path"
    if any(path.resolve() == source.resolve() for source in reads if source.exists()):
        return f"{flag} {path}: is the command's input file; name another path"
    return None


def first_unwritable(outputs: Iterable[tuple[str, Path | None]], *, reads: Iterable[Path] = ()) -> str | None:
    """The first of (flag, path) that cannot take its output (see `unwritable`)."""
    sources = tuple(reads)
    return next((why for flag, path in outputs if (why := unwritable(flag, path, reads=sources))), None)
