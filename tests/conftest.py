"""Shared fixtures: one embedded broker for the whole test session, and topic names that never collide."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from streams.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One tansu broker per session (start ~0.1 s, memory storage); its log lands in the session's tmp dir.

    Tests share it, so they must use their own topics (``unique_topic_prefix``) and group ids.
    """
    with EmbeddedBroker(tmp_path_factory.mktemp("broker")) as running:
        yield running


def make_topic_prefix(hint: str = "t") -> str:
    """A topic-name-safe prefix unique to this call, e.g. ``test_round_trip-3f9a1c2b.``."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", hint)[:60]
    return f"{safe}-{uuid.uuid4().hex[:8]}."


@pytest.fixture
def unique_topic_prefix(request: pytest.FixtureRequest) -> str:
    """A per-test prefix for topic and group names on the shared broker (named after the test)."""
    return make_topic_prefix(request.node.name)
