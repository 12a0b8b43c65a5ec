"""FunnelTally: the funnel report built from the output stream (GUIDE.md section 3, funnel report JSON)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from factories import POLICY, Router, at, make_event

from leadflow.core.funnel import FunnelTally, percentile
from leadflow.core.ids import output_id
from leadflow.schemas.outputs import (
    DeadLetter,
    EventRefused,
    LeadErasedNotice,
    LeadMergedNotice,
    StageChanged,
    Transition,
)


def moved(lead: str, source: str | None, target: str, t: float, reason: str = "") -> StageChanged:
    cause = f"{lead}-{target}-{t:g}"
    return StageChanged(
        id=output_id(lead, cause, "stage", str(source), target),
        lead_id=lead,
        from_stage=source,
        to_stage=target,
        occurred_at=at(t),
        cause_event_id=cause,
        cause_type="test",
        reason=reason or ("created" if source is None else "score"),
        fit=0,
        engagement=0,
    )


def erased(lead: str, t: float) -> LeadErasedNotice:
    return LeadErasedNotice(id=output_id(lead, "erase", "erased"), lead_id=lead, occurred_at=at(t), cause_event_id="x")


# A: lead -> mql -> sal -> sql;  B: lead -> mql -> nurturing (rejected);  C: subscriber -> lead;  D: created, erased.
STREAM: list[Transition] = [
    moved("A", None, "lead", 0),
    moved("B", None, "lead", 0),
    moved("C", None, "subscriber", 0),
    moved("D", None, "lead", 0),
    moved("C", "subscriber", "lead", 50, "converted"),
    moved("A", "lead", "mql", 100),
    moved("B", "lead", "mql", 200),
    moved("A", "mql", "sal", 300, "accepted"),
    moved("B", "mql", "nurturing", 500, "rejected:not_icp"),
    moved("A", "sal", "sql", 1000, "deal:qualified_call"),
    erased("D", 10),
]


@pytest.fixture
def tally() -> FunnelTally:
    result = FunnelTally(stages=POLICY.all_stages)
    for output in STREAM:
        result.add(output)
    return result


def test_stage_counts(tally: FunnelTally) -> None:
    counts = tally.stage_counts()
    assert list(counts) == list(POLICY.all_stages)
    assert {stage: n for stage, n in counts.items() if n} == {"lead": 1, "sql": 1, "nurturing": 1}


def test_reached(tally: FunnelTally) -> None:
    reached = tally.reached()
    assert {stage: n for stage, n in reached.items() if n} == {
        "subscriber": 1,
        "lead": 3,
        "mql": 2,
        "sal": 1,
        "sql": 1,
        "nurturing": 1,
    }


def test_conversion(tally: FunnelTally) -> None:
    conversion = tally.conversion()
    assert conversion["subscriber->lead"] == 1.0
    assert conversion["lead->mql"] == round(2 / 3, 4)
    assert conversion["mql->sal"] == 0.5
    assert conversion["sal->sql"] == 1.0
    assert conversion["sql->opportunity"] == 0.0
    assert "opportunity->customer" not in conversion  # nobody reached opportunity: no ratio, not a zero


def test_durations(tally: FunnelTally) -> None:
    durations = tally.durations_s()
    assert durations["lead->mql"] == {"count": 2, "p50": 100.0, "p90": 200.0, "mean": 150.0}
    assert durations["subscriber->lead"] == {"count": 1, "p50": 50.0, "p90": 50.0, "mean": 50.0}
    assert durations["mql->sal"] == {"count": 1, "p50": 200.0, "p90": 200.0, "mean": 200.0}
    assert durations["sal->sql"] == {"count": 1, "p50": 700.0, "p90": 700.0, "mean": 700.0}
    assert "sql->opportunity" not in durations


def test_report_shape(tally: FunnelTally) -> None:
    report = tally.report()
    for key in ("stage_counts", "reached", "conversion", "durations_s", "sla", "rejections"):
        assert key in report
    assert report["rejections"] == {"not_icp": 1}
    assert report["transitions"] == 10


def test_redelivered_outputs_are_counted_once(tally: FunnelTally) -> None:
    before = tally.report()
    for output in STREAM:  # the whole stream again: same ids
        tally.add(output)
    assert tally.report() == before


def test_a_redelivered_rejection_is_counted_once() -> None:
    tally = FunnelTally(stages=POLICY.all_stages)
    rejection = moved("B", "mql", "nurturing", 500, "rejected:no_budget")
    tally.add(rejection)
    tally.add(rejection)
    assert tally.rejections == {"no_budget": 1}
    assert tally.transitions == 1


def test_erase_removes_the_lead_everywhere() -> None:
    tally = FunnelTally(stages=POLICY.all_stages)
    tally.add(moved("E", None, "lead", 0))
    tally.add(moved("E", "lead", "mql", 60))
    assert tally.stage_counts()["mql"] == 1
    tally.add(erased("E", 120))
    assert sum(tally.stage_counts().values()) == 0
    assert sum(tally.reached().values()) == 0
    assert tally.conversion() == {}
    assert tally.durations_s() == {}


def test_merged_lead_leaves_the_current_counts_but_keeps_its_history() -> None:
    tally = FunnelTally(stages=POLICY.all_stages)
    tally.add(moved("M", None, "lead", 0))
    tally.add(
        LeadMergedNotice(id="m1", lead_id="M", into_lead_id="N", occurred_at=at(10), cause_event_id="x"),
    )
    assert tally.stage_counts()["lead"] == 0
    assert tally.reached()["lead"] == 1


def test_refusals_and_dead_letters_are_counted_by_reason() -> None:
    tally = FunnelTally(stages=POLICY.all_stages)
    refused = EventRefused(
        id="r1", lead_id="L", event_id="e", event_type="lead.accepted", occurred_at=at(0),
        reason="illegal_transition", detail="no",
    )  # fmt: skip
    letter = DeadLetter(
        id="d1", reason="invalid_json", errors=("x",), topic="t", partition=0, offset=1, key_b64=None,
        original_b64="", original_size=0, received_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    for output in (refused, refused, letter):
        tally.add(output)
    report = tally.report()
    assert (report["refusals"], report["dead_letters"]) == ({"illegal_transition": 1}, {"invalid_json": 1})
    assert report["transitions"] == 0


def test_per_minute_counts_recent_transitions() -> None:
    tally = FunnelTally(stages=POLICY.all_stages)
    for i, seen_at in enumerate([0.0, 30.0, 90.0]):
        tally.add(moved("P", None if i == 0 else "lead", "lead" if i == 0 else "mql", i), seen_at=seen_at)
    assert tally.per_minute(80.0) == 2  # 30 and 90 are within a minute of 80
    assert tally.per_minute(100.0) == 1
    assert tally.per_minute(200.0) == 0


def test_percentile() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([1.0], 0.9) == 1.0
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 0.9) == 9.0
    assert percentile(values, 1.0) == 10.0
    assert percentile(values, 0.0) == 1.0


def test_the_tally_of_core_outputs_agrees_with_the_leads() -> None:
    """End to end through the core: the counts the tally derives are those of the final states."""
    tally = FunnelTally(stages=POLICY.all_stages)
    histories = {
        "A": [("lead.created", {}), ("activity", {"action": "demo_request"}), ("lead.accepted", {})],
        "B": [("lead.created", {"initial_stage": "subscriber"}), ("activity", {"action": "form_submit"})],
        "C": [("lead.created", {}), ("lead.qualified", {}), ("lead.rejected", {"reason": "student"})],
    }
    finals = {}
    router = Router(POLICY)  # answers the route requests of the MQLs (A and C), so no lead waits for an owner
    for lead, events in histories.items():
        record = None
        for i, (kind, data) in enumerate(events):
            decision = router.decide(record, make_event(kind, 60 * i, lead_id=lead, **data), at(86_400))
            for output in (*decision.outputs, *decision.outputs):  # every output delivered twice
                tally.add(output)
            record = decision.record
        assert record is not None
        assert record.state is not None
        finals[lead] = record.state.stage
    assert finals == {"A": "sal", "B": "lead", "C": "nurturing"}
    assert {s: n for s, n in tally.stage_counts().items() if n} == {"sal": 1, "lead": 1, "nurturing": 1}
    assert tally.rejections == {"student": 1}
    assert tally.conversion()["lead->mql"] == round(2 / 3, 4)


def test_conversion_and_durations_follow_the_main_funnel_only() -> None:
    tally = FunnelTally(stages=POLICY.all_stages, funnel=POLICY.lifecycle.stages)
    for output in STREAM:
        tally.add(output)
    pairs = set(tally.conversion()) | set(tally.durations_s())
    assert pairs <= {f"{a}->{b}" for a, b in zip(POLICY.lifecycle.stages, POLICY.lifecycle.stages[1:], strict=False)}
    assert ("evangelist", "nurturing") not in tally.steps()
    assert ("nurturing", "disqualified") not in tally.steps()
