"""Shared fixtures: one broker for the whole test session, and topic names that never collide.

`broker` is Apache Kafka (the production engine, streams/dev/kafka.py), the reference for every test that crosses a
broker; `tansu` is the embedded zero-JVM broker of the quickstart, for the smoke set that keeps it working.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from leadflow.streams.dev.broker import BrokerProcess, EmbeddedBroker
from leadflow.streams.dev.kafka import ApacheKafka

if TYPE_CHECKING:
    from leadflow.streams.runtime.worker import Worker

# No time limit per example: a test asserts behaviour, not speed (benchmarks/ measures that), and a loaded CI
# machine made a slow first example fail one run of an identity property.
settings.register_profile("leadflow", deadline=None)
settings.load_profile("leadflow")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One Apache Kafka (KRaft, single node) per session; its log and data land in the session's tmp dir.

    Tests share it, so they must use their own topics (``unique_topic_prefix``) and group ids.
    """
    with ApacheKafka(tmp_path_factory.mktemp("kafka")) as running:
        yield running


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One embedded tansu broker per session (start ~0.1 s, memory storage), for the quickstart's smoke set."""
    with EmbeddedBroker(tmp_path_factory.mktemp("tansu")) as running:
        yield running


def make_topic_prefix(hint: str = "t") -> str:
    """A topic-name-safe prefix unique to this call, e.g. ``test_round_trip-3f9a1c2b.``."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", hint)[:60]
    return f"{safe}-{uuid.uuid4().hex[:8]}."


@pytest.fixture
def unique_topic_prefix(request: pytest.FixtureRequest) -> str:
    """A per-test prefix for topic and group names on the shared broker (named after the test)."""
    return make_topic_prefix(request.node.name)


@pytest.fixture
def worker() -> Worker:
    """A worker of the test's own (the environment's settings, the shipped policy), built, never started: its
    agents run in Faust's test_context."""
    from leadflow.streams.runtime.settings import Settings
    from leadflow.streams.runtime.worker import Worker

    return Worker(Settings())
