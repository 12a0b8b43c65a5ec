"""The pure parts of a worker's health (issue 13, item 1): the readiness decision, the log limiter, the applied
offsets, the health gauges. The running worker's side is in tests/test_health_e2e.py."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from leadflow.streams.runtime.health import (
    FETCH_STALE_S,
    PRODUCER_STUCK_S,
    LogLimiter,
    Snapshot,
    applied_offsets,
    install,
    readiness_body,
    reasons,
)
from leadflow.streams.runtime.metrics import AppliedOffsetCollector, HealthCollector
from leadflow.streams.runtime.settings import Settings

READY = Snapshot(
    assigned=True, recovered=True, partitions=4, fetch_age_s=0.5, broker_reachable=True, broker_silent_s=None
)


def test_a_recovered_fetching_worker_with_a_reachable_broker_is_ready() -> None:
    assert reasons(READY) == []
    assert readiness_body([], "lf") == {"status": "ready", "app": "lf"}
    # An idle member (more workers than partitions) is ready too, and so is one not probed yet.
    assert reasons(replace(READY, partitions=0, fetch_age_s=None)) == []
    assert reasons(replace(READY, broker_reachable=None)) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"assigned": False, "recovered": False}, "no partition assignment yet"),
        ({"recovered": False}, "recovering the tables"),
        ({"recovering": True}, "recovering the tables"),
        ({"rebalancing": True}, "recovering the tables"),
        ({"broker_reachable": False, "broker_silent_s": 12.0}, "the broker does not answer for 12 s"),
        ({"broker_reachable": False}, "the broker does not answer since the worker started"),
        ({"fetch_age_s": FETCH_STALE_S + 1}, "no fetch answer for 31 s"),
        ({"unsent_records": 7, "unsent_age_s": PRODUCER_STUCK_S + 1}, "the producer holds 7 records"),
        ({"stopping": True}, "shutting down"),
    ],
)
def test_each_reason_to_be_not_ready(change: dict[str, object], expected: str) -> None:
    found = reasons(replace(READY, **change))  # type: ignore[arg-type]
    assert len(found) == 1, found
    assert expected in found[0]
    assert readiness_body(found, "lf") == {"status": "not ready", "app": "lf", "reasons": found}


def test_a_busy_consumer_is_not_a_starved_one() -> None:
    """No fetch answer for long, but fetched records wait to be handed on: busy, still ready."""
    assert reasons(replace(READY, fetch_age_s=FETCH_STALE_S * 3, fetched_waiting=True)) == []
    # Records that wait only a moment in the producer are normal.
    assert reasons(replace(READY, unsent_records=500, unsent_age_s=0.2)) == []


def test_reasons_add_up() -> None:
    found = reasons(replace(READY, broker_reachable=False, broker_silent_s=40.0, recovering=True, stopping=True))
    assert len(found) == 3


# --- the log limiter --------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(message: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_the_first_of_a_kind_passes_then_a_summary_every_window() -> None:
    clock = Clock()
    limiter = LogLimiter(window_s=30, clock=clock)
    passed = 0
    for n in range(40 * 30):  # 40 a second for 30 s, the same template with other arguments
        clock.now = 1000.0 + n / 40
        passed += limiter.filter(record("Unable connect to node with id %s: %s", 1, f"refused {n}"))
    assert passed == 1
    assert limiter.summaries == []
    clock.now = 1030.5
    assert limiter.filter(record("Unable connect to node with id %s: %s", 1, "refused")) is True  # a new window
    (summary,) = limiter.summaries
    text = summary.getMessage()
    assert text.startswith("Unable connect to node with id 1: refused 0 ... repeated 1199 times in the last 30 s")
    assert summary.levelno == logging.ERROR
    assert summary.name == "aiokafka.conn"
    assert limiter.filter(summary) is True  # a summary is never limited itself


def test_kinds_are_counted_apart_and_info_is_not_limited() -> None:
    clock = Clock()
    limiter = LogLimiter(window_s=30, clock=clock)
    assert limiter.filter(record("a %s", 1)) is True
    assert limiter.filter(record("b %s", 1)) is True  # another template
    assert limiter.filter(record("a %s", 2, name="faust")) is True  # another logger
    assert limiter.filter(record("a %s", 2, level=logging.WARNING)) is True  # another level
    assert limiter.filter(record("a %s", 3)) is False
    assert all(limiter.filter(record("a %s", n, level=logging.INFO)) for n in range(100))


def test_flush_writes_the_summaries_of_kinds_that_went_quiet_and_forgets_them() -> None:
    clock = Clock()
    limiter = LogLimiter(window_s=30, clock=clock)
    for _ in range(5):
        limiter.filter(record("quiet %s", 1))
    limiter.filter(record("once %s", 1))
    clock.now += 10
    assert limiter.flush() == 0  # the window is not over
    clock.now += 25
    assert limiter.flush() == 1  # "once" had no repeats: no summary, but it is forgotten too
    assert "repeated 4 times in the last 30 s" in limiter.summaries[0].getMessage()
    assert limiter.kinds == {}
    assert limiter.filter(record("quiet %s", 1)) is True  # a first one again


def test_flush_everything_at_exit() -> None:
    clock = Clock()
    limiter = LogLimiter(window_s=30, clock=clock)
    for _ in range(3):
        limiter.filter(record("x"))
    clock.now += 4
    assert limiter.flush(everything=True) == 1
    assert "repeated 2 times in the last 4 s" in limiter.summaries[0].getMessage()


def test_the_limiter_tracks_a_bounded_number_of_kinds() -> None:
    clock = Clock()
    limiter = LogLimiter(window_s=30, clock=clock, max_kinds=3)
    assert all(limiter.filter(record(f"message {n}")) for n in range(10))  # beyond the bound: unlimited
    assert len(limiter.kinds) == 3


def test_installed_on_a_handler_it_writes_its_summaries_there(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test_health.install")
    logger.propagate = False
    handler = caplog.handler
    logger.addHandler(handler)
    clock = Clock()
    try:
        (limiter,) = install(logger, window_s=30, clock=clock)
        assert install(logger) == []  # once per handler
        for n in range(100):
            logger.error("broker %s down", n)
        clock.now += 31
        limiter.flush()
    finally:
        handler.removeFilter(limiter)
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in caplog.records if r.name == logger.name]
    summary = "broker 0 down ... repeated 99 times in the last 30 s (one line per kind every 30 s)"
    assert messages == ["broker 0 down", summary]


# --- applied offsets and the health gauges -----------------------------------------------------------------------


def test_applied_offsets_of_active_partitions() -> None:
    # 0: applied up to 41 -> 42; 1: none applied yet, committed 7; 2: applied 3 but a later owner committed 9.
    assert applied_offsets({0: 41, 2: 3, 5: 99}, {1: 7, 2: 9}, [0, 1, 2, 3]) == {0: 42, 1: 7, 2: 9, 3: 0}


def test_health_gauges() -> None:
    state: tuple[bool | None, float | None, bool] = (None, None, False)
    registry = CollectorRegistry()
    registry.register(HealthCollector(lambda: state))
    registry.register(AppliedOffsetCollector(lambda: {("leads.events", 1): 42}))
    assert registry.get_sample_value("leadflow_broker_reachable") is None  # not probed yet
    assert registry.get_sample_value("leadflow_ready") == 0
    state = (True, 1_700_000_000.0, True)
    assert registry.get_sample_value("leadflow_broker_reachable") == 1
    assert registry.get_sample_value("leadflow_broker_last_contact_timestamp_seconds") == 1_700_000_000.0
    assert registry.get_sample_value("leadflow_ready") == 1
    state = (False, 1_700_000_000.0, False)
    assert registry.get_sample_value("leadflow_broker_reachable") == 0
    labels = {"topic": "leads.events", "partition": "1"}
    assert registry.get_sample_value("leadflow_consumer_applied_offset", labels) == 42


def test_the_shutdown_bound_and_the_advertised_url_settings() -> None:
    assert Settings().shutdown_timeout_s == 15.0
    assert Settings().web_url is None
    assert Settings(web_url="http://worker-1:6066").as_env()["LEADFLOW_WEB_URL"] == "http://worker-1:6066"


# --- the compose stack ---------------------------------------------------------------------------------------------


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    value = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert value, duration
    return float(value.group(1)) * units[value.group(2)]


def test_compose_gives_each_worker_more_grace_than_its_shutdown_bound_and_its_own_advertised_url() -> None:
    compose = yaml.safe_load((Path(__file__).resolve().parent.parent / "docker-compose.yml").read_text())
    workers = {name: s for name, s in compose["services"].items() if name.startswith("worker-")}
    assert len(workers) == 2
    bound = Settings().shutdown_timeout_s
    for name, service in workers.items():
        env = service["environment"]
        assert _seconds(service["stop_grace_period"]) >= bound + 10, name  # a forced exit has time to log
        assert float(env.get("LEADFLOW_SHUTDOWN_TIMEOUT_S", bound)) == bound
        assert env["LEADFLOW_WEB_URL"].endswith(f":{env['LEADFLOW_WEB_PORT']}}}"), name  # ${VAR:-default}
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name


def test_a_worker_built_with_its_own_settings_stops_within_its_own_bound() -> None:
    """shutdown.stop_bound reads the bound of the settings the app was built from, not the environment's."""
    from leadflow.streams.runtime.shutdown import stop_bound
    from leadflow.streams.runtime.worker import create_app

    assert stop_bound(create_app(Settings(broker="kafka://127.0.0.1:1", shutdown_timeout_s=3.0))) == 3.0
    assert stop_bound(object()) == Settings().shutdown_timeout_s  # an app built elsewhere: the environment's
