"""leadflow.core.completeness: the fields sales needs per stage, the hand-off's missing_fields, and the funnel report's
profile_completeness (the same from the summaries of one process, of several workers and of a replay)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from factories import POLICY, T0, at, make_event, make_policy
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.core.completeness import has_field, is_blank, known_fields, missing_fields, missing_from, required_for
from leadflow.core.engine import Engine
from leadflow.core.report import SUMMARY_ADAPTER, LeadSummary, funnel_report, summaries_of, summarize
from leadflow.schemas.events import PROFILE_ATTRIBUTES, LeadEvent, Profile
from leadflow.schemas.outputs import HANDOFF_ADAPTER, HandOff
from leadflow.schemas.policy import Policy
from leadflow.schemas.state import LeadState, StageEntry
from leadflow.streams.cli.replay import ReplayOptions, replay

H = 3600.0


def requiring(required: dict[str, list[str]]) -> Policy:
    def change(document: dict[str, Any]) -> None:
        document["required_fields"] = required

    return make_policy(change)


# mql needs a built-in and a custom attribute (listed twice: counted once); sal needs more; nurturing nothing.
SALES = requiring(
    {"mql": ["company_size", "budget_owner", "company_size", "country"], "sal": ["company_size", "job_title"]}
)


# ---- missing_fields ------------------------------------------------------------------------------------------


def test_the_default_policy_requires_fields_in_mql_and_sal() -> None:
    assert required_for("mql", POLICY) == ("company_size", "job_title", "country")
    assert required_for("sal", POLICY) == ("company_size", "job_title", "country", "industry")
    assert required_for("lead", POLICY) == ()


def test_missing_fields_in_the_policys_order_each_once() -> None:
    profile = Profile(country="BR", custom={"budget_owner": "cfo"})
    assert missing_fields(profile, "mql", SALES) == ("company_size",)
    assert missing_fields(Profile(), "mql", SALES) == ("company_size", "budget_owner", "country")
    assert missing_fields(Profile(), "sal", SALES) == ("company_size", "job_title")
    assert missing_fields(Profile(), "nurturing", SALES) == ()  # nothing required there
    assert missing_fields(Profile(), "mql", requiring({})) == ()


def test_none_and_empty_text_are_missing_zero_and_false_are_values() -> None:
    assert is_blank(None)
    assert is_blank("")
    assert is_blank("   ")
    assert not is_blank(0)
    assert not is_blank(False)
    assert not is_blank("x")
    profile = Profile(job_title="  ", company_size=0, custom={"budget_owner": "", "has_budget": False, "x": None})
    assert not has_field(profile, "job_title")
    assert has_field(profile, "company_size")
    assert not has_field(profile, "budget_owner")
    assert has_field(profile, "has_budget")
    assert not has_field(profile, "x")
    assert not has_field(profile, "unheard_of")
    assert known_fields(profile) == ("company_size", "has_budget")


def test_a_custom_attribute_named_like_a_profile_section_is_a_custom_attribute() -> None:
    # `custom` is the name of the profile's section of custom attributes, not an attribute of its own
    assert not has_field(Profile(custom={"a": 1}), "custom")
    assert has_field(Profile(custom={"custom": "yes"}), "custom")


CUSTOM_NAMES = ("budget_owner", "origin", "has_budget", "custom", "country")  # country: a profile built by hand
VALUES: dict[str, Any] = {
    "email": st.sampled_from([None, "", "a@example.org"]),
    "job_title": st.sampled_from([None, "", " ", "CTO"]),
    "seniority": st.sampled_from([None, "vp"]),
    "company": st.sampled_from([None, "", "Acme"]),
    "company_size": st.sampled_from([None, 0, 80]),
    "industry": st.sampled_from([None, "saas"]),
    "country": st.sampled_from([None, "BR"]),
    "persona": st.sampled_from([None, "cmo"]),
    "territory": st.sampled_from([None, "latam"]),
    "segment": st.sampled_from([None, "smb"]),
}
profiles = st.builds(
    Profile,
    **VALUES,
    custom=st.dictionaries(st.sampled_from(CUSTOM_NAMES), st.sampled_from([None, "", "x", 0, False, 2.5])),
)
required_lists = st.lists(st.sampled_from(list(dict.fromkeys([*PROFILE_ATTRIBUTES, *CUSTOM_NAMES]))), max_size=8)


@settings(max_examples=200, deadline=None)
@given(profiles, required_lists)
def test_the_hand_off_and_the_report_agree_on_what_is_missing(profile: Profile, required: list[str]) -> None:
    policy = requiring({"mql": required}) if required else requiring({})
    missing = missing_fields(profile, "mql", policy)
    # what a summary keeps (known_fields) gives the same answer as the profile itself
    assert missing_from(known_fields(profile), required_for("mql", policy)) == missing
    assert list(missing) == [name for name in dict.fromkeys(required) if not has_field(profile, name)]
    for name in missing:
        value = getattr(profile, name) if name in PROFILE_ATTRIBUTES else profile.custom.get(name)
        assert value is None or (isinstance(value, str) and not value.strip())
    assert set(known_fields(profile)).isdisjoint(missing)
    assert list(known_fields(profile)) == sorted(known_fields(profile))


# ---- the hand-off --------------------------------------------------------------------------------------------


class Recorder(Engine):
    """The whole worker in one process, keeping every output."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
        self.outputs: list[Any] = []

    def send(self, kind: str, t: float, lead: str = "L1", **data: Any) -> None:
        self.outputs += self.feed(make_event(kind, t, lead_id=lead, **data))

    def handoffs(self, lead: str = "L1") -> list[HandOff]:
        return [o for o in self.outputs if isinstance(o, HandOff) and o.lead_id == lead]


def test_a_routed_hand_off_lists_the_required_fields_the_lead_lacks() -> None:
    world = Recorder(POLICY)
    world.send("lead.created", 0, country="BR", company_size=80, job_title="")  # a blank title is no title
    world.send("activity", 60, action="demo_request")  # a hand-raiser: MQL at once, routed to latam
    (handoff,) = world.handoffs()
    assert (handoff.stage, handoff.reason, handoff.pool) == ("mql", "routed", "latam")
    assert handoff.missing_fields == ("job_title",)


def test_a_complete_lead_is_handed_off_with_nothing_missing_and_custom_fields_count() -> None:
    world = Recorder(SALES)
    world.send("lead.created", 0, country="BR", company_size=80, budget_owner="cfo")
    world.send("activity", 60, action="demo_request")
    (handoff,) = world.handoffs()
    assert handoff.missing_fields == ()
    world.send("lead.created", 0, "L2", country="BR")
    world.send("activity", 60, "L2", action="demo_request")
    assert world.handoffs("L2")[0].missing_fields == ("company_size", "budget_owner")


def test_an_assigned_lead_past_mql_is_handed_off_with_its_stages_fields() -> None:
    world = Recorder(SALES)
    world.send("lead.created", 0, country="BR", company_size=80, budget_owner="cfo")
    world.send("activity", 60, action="demo_request")
    world.send("lead.accepted", 120)
    world.send("lead.assigned", 180, owner_id="rep-99", team="field_sales")  # an external owner in sal
    last = world.handoffs()[-1]
    assert (last.stage, last.reason, last.owner_id) == ("sal", "assigned", "rep-99")
    assert last.missing_fields == ("job_title",)


def test_a_hand_off_without_missing_fields_still_decodes() -> None:
    world = Recorder(POLICY)
    world.send("lead.created", 0, country="BR")
    world.send("activity", 60, action="demo_request")
    (handoff,) = world.handoffs()
    older = orjson.loads(HANDOFF_ADAPTER.dump_json(handoff))
    del older["missing_fields"]  # a record written before the field existed
    assert HANDOFF_ADAPTER.validate_python(older).missing_fields == ()
    assert HANDOFF_ADAPTER.validate_json(HANDOFF_ADAPTER.dump_json(handoff)) == handoff


# ---- the funnel report ---------------------------------------------------------------------------------------


def lead(lead_id: str, stage: str, *, merged_into: str | None = None, **profile: Any) -> LeadState:
    history = (StageEntry(stage=stage, entered_at=T0, event_id=f"e-{lead_id}", reason="created"),)
    return LeadState(
        lead_id=lead_id,
        stage=stage,
        created_at=T0,
        updated_at=at(H),
        stage_entered_at=T0,
        engagement_as_of=T0,
        profile=Profile.model_validate(profile),
        history=history,
        merged_into=merged_into,
    )


LEADS = [
    lead("A", "mql", company_size=80, country="BR", custom={"budget_owner": "cfo"}),  # complete
    lead("B", "mql", country="BR"),  # lacks company_size and budget_owner
    lead("C", "mql", company_size=5000, custom={"budget_owner": " "}),  # lacks budget_owner and country
    lead("D", "sal", company_size=10, job_title="CTO"),  # complete in sal (country is not required there)
    lead("E", "lead"),  # no requirement in lead
    lead("F", "mql", merged_into="A"),  # merged: not a current lead
]
NOW = at(2 * H)


def completeness(summaries: list[LeadSummary], policy: Policy = SALES) -> Any:
    return funnel_report(summaries, policy, NOW)["profile_completeness"]


def test_the_report_counts_completeness_of_the_current_leads_by_stage() -> None:
    assert completeness(list(summaries_of(LEADS))) == {
        "mql": {
            "required": ["company_size", "budget_owner", "country"],
            "leads": 3,  # A, B, C (F is merged)
            "complete": 1,  # A
            "share": 0.3333,
            "missing": {"company_size": 1, "budget_owner": 2, "country": 1},
        },
        "sal": {
            "required": ["company_size", "job_title"],
            "leads": 1,
            "complete": 1,
            "share": 1.0,
            "missing": {"company_size": 0, "job_title": 0},
        },
    }


def test_a_stage_without_leads_has_no_share_and_no_requirements_no_section() -> None:
    report = funnel_report(list(summaries_of(LEADS[4:])), SALES, NOW)
    assert report["profile_completeness"]["mql"] == {
        "required": ["company_size", "budget_owner", "country"],
        "leads": 0,
        "complete": 0,
        "share": None,
        "missing": {"company_size": 0, "budget_owner": 0, "country": 0},
    }
    assert funnel_report(list(summaries_of(LEADS)), requiring({}), NOW)["profile_completeness"] == {}


def test_the_summary_keeps_the_attributes_held_and_the_policy_judges_them() -> None:
    summary = summarize(LEADS[2])
    assert summary is not None
    assert summary.known_fields == ("company_size",)
    assert SUMMARY_ADAPTER.validate_json(SUMMARY_ADAPTER.dump_json(summary)) == summary
    # the same summaries under a policy that requires something else
    other = requiring({"mql": ["job_title"]})
    assert completeness(list(summaries_of(LEADS)), other)["mql"]["missing"] == {"job_title": 3}


def test_a_summary_from_an_older_worker_is_not_counted() -> None:
    summaries = list(summaries_of(LEADS))
    older = orjson.loads(SUMMARY_ADAPTER.dump_json(summaries[1]))  # B
    del older["known_fields"]
    decoded = SUMMARY_ADAPTER.validate_python(older)
    assert decoded.known_fields is None
    mql = completeness([summaries[0], decoded, summaries[2]])["mql"]
    assert (mql["leads"], mql["complete"], mql["missing"]["company_size"]) == (2, 1, 0)
    assert funnel_report([summaries[0], decoded, summaries[2]], SALES, NOW)["stage_counts"]["mql"] == 3


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(len(LEADS))), st.integers(0, len(LEADS)), st.lists(st.integers(0, len(LEADS) - 1)))
def test_workers_merge_into_the_completeness_of_the_union(order: list[int], cut: int, repeats: list[int]) -> None:
    summaries = list(summaries_of(LEADS))
    expected = orjson.dumps(funnel_report(summaries, SALES, NOW))
    shuffled = [summaries[i] for i in order]
    # two workers' summaries (JSON lines, as /funnel/leads serves them), a lead seen twice during a rebalance
    lines = [SUMMARY_ADAPTER.dump_json(s) for s in [*shuffled[cut:], *(summaries[i] for i in repeats), *shuffled[:cut]]]
    merged = [SUMMARY_ADAPTER.validate_json(line) for line in lines]
    assert orjson.dumps(funnel_report(merged, SALES, NOW)) == expected


# ---- offline: the engine and `leadflow replay --report-json` -------------------------------------------------


def journey() -> list[LeadEvent]:
    return [
        make_event("lead.created", 0, lead_id="L1", event_id="a1", country="BR", company_size=80, job_title="CTO"),
        make_event("activity", 60, lead_id="L1", event_id="a2", action="demo_request"),
        make_event("lead.created", 0, lead_id="L2", event_id="b1", country="BR"),
        make_event("activity", 90, lead_id="L2", event_id="b2", action="demo_request"),
        make_event("lead.created", 0, lead_id="L3", event_id="c1", country="US", company_size=5000),
        make_event("activity", 120, lead_id="L3", event_id="c2", action="demo_request"),
        make_event("lead.accepted", 600, lead_id="L3", event_id="c3"),
        make_event("lead.created", 30, lead_id="L4", event_id="d1", email="d@example.org"),
    ]


def test_the_engine_report_counts_what_the_hand_offs_said() -> None:
    world = Recorder(POLICY)
    for event in journey():
        world.outputs += world.feed(event)
    said = {h.lead_id: h.missing_fields for h in world.outputs if isinstance(h, HandOff)}
    assert said == {"L1": (), "L2": ("company_size", "job_title"), "L3": ("job_title",)}
    report = funnel_report(list(summaries_of(world.leads())), POLICY, at(H))["profile_completeness"]
    assert report["mql"] == {
        "required": ["company_size", "job_title", "country"],
        "leads": 2,
        "complete": 1,
        "share": 0.5,
        "missing": {"company_size": 1, "job_title": 1, "country": 0},
    }
    assert report["sal"]["missing"] == {"company_size": 0, "job_title": 1, "country": 0, "industry": 1}
    assert (report["sal"]["leads"], report["sal"]["complete"]) == (1, 0)


def test_replay_report_json_has_the_same_completeness(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e.model_dump(mode="json", exclude_none=True)) + b"\n" for e in journey()))
    out = tmp_path / "report.json"
    result = replay(ReplayOptions(events=events, report_json=out))
    written = orjson.loads(out.read_bytes())
    world = Engine(POLICY)
    for event in journey():
        world.feed(event)
    world.finish(result.clock)
    expected = funnel_report(list(summaries_of(world.leads())), POLICY, result.clock)
    assert written["profile_completeness"] == expected["profile_completeness"]
    assert written["profile_completeness"]["mql"]["leads"] == 2


@pytest.mark.parametrize("stage", ["mql", "sal"])
def test_every_required_field_of_the_default_policy_is_a_profile_attribute(stage: str) -> None:
    # the shipped example names built-in attributes only, so a simulator's or a form's leads can fill them
    assert set(required_for(stage, POLICY)) <= set(PROFILE_ATTRIBUTES)
