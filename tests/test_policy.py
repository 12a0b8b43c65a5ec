"""The policy document: the default loads; every broken document is refused with `path: message` lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from factories import default_document

from leadflow.schemas.policy import CORE_STAGES, FitRule, Policy, PolicyError, load_policy, parse_policy

Change = Callable[[dict[str, Any]], None]


def problems_of(change: Change) -> list[str]:
    document = default_document()
    change(document)
    with pytest.raises(PolicyError) as caught:
        parse_policy(document, "broken.yaml")
    assert str(caught.value).startswith("broken.yaml: ")
    assert caught.value.source == "broken.yaml"
    return caught.value.problems


def test_the_default_policy_loads_and_follows_the_guide() -> None:
    policy = load_policy()
    assert isinstance(policy, Policy)
    assert policy.lifecycle.stages == (
        "subscriber",
        "lead",
        "mql",
        "sal",
        "sql",
        "opportunity",
        "customer",
        "evangelist",
    )
    assert set(CORE_STAGES) <= set(policy.all_stages)
    assert (policy.mql.min_fit, policy.mql.min_engagement) == (40, 30)
    assert policy.mql.hand_raiser_actions == ("demo_request", "contact_sales")
    assert policy.lifecycle.allows("mql", "nurturing")
    assert not policy.lifecycle.allows("lead", "customer")
    assert policy.stage_rank("sql") > policy.stage_rank("sal") > policy.stage_rank("mql")
    assert policy.stage_rank("nurturing") == -1
    assert "not_icp" in policy.rejection_codes
    assert policy.pipeline_stages["proposal_sent"].requires == ("budget", "authority", "need")
    assert policy.engagement_rules["unsubscribe"].points < 0


def test_a_policy_file_loads_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    document = default_document()
    document["mql"]["min_fit"] = 55
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert load_policy(path).mql.min_fit == 55
    assert load_policy(str(path)).mql.min_fit == 55


def test_fit_rule_in_is_spelled_in_in_yaml() -> None:
    rule = FitRule.model_validate({"attribute": "industry", "in": ["saas"], "points": 3})
    assert rule.in_ == ("saas",)


def test_rules_may_read_custom_attributes() -> None:
    """Any other attribute name is a custom attribute (a HubSpot custom property, RD Station's origin...)."""
    document = default_document()
    document["scoring"]["fit"].append({"attribute": "annual_revenue", "min": 1.5e6, "points": 10})
    document["routing"]["pools"][0]["when"].append({"attribute": "origin", "in": ["partner"]})
    policy = parse_policy(document)
    assert (policy.scoring.fit[-1].attribute, policy.scoring.fit[-1].min) == ("annual_revenue", 1.5e6)
    assert policy.routing is not None
    assert policy.routing.pools[0].when[-1].attribute == "origin"


def _set(path: str, value: Any) -> Change:
    """A change that sets a dotted path (list items by index) in the document."""

    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


def _append(path: str, value: Any) -> Change:
    def change(document: dict[str, Any]) -> None:
        node: Any = document
        for part in path.split("."):
            node = node[part]
        node.append(value)

    return change


def _drop(section: str) -> Change:
    return lambda document: document.pop(section)


BROKEN: list[tuple[str, Change, list[str]]] = [
    (
        "points not a number",
        _set("scoring.engagement.2.points", "lots"),
        ["scoring.engagement[2].points: must be an integer"],
    ),
    (
        "points a fraction",
        _set("scoring.engagement.2.points", 2.5),
        ["scoring.engagement[2].points: must be an integer"],
    ),
    (
        "cap negative",
        _set("scoring.engagement.0.cap", -1),
        ["scoring.engagement[0].cap: must be greater than or equal to 0"],
    ),
    ("min_fit a word", _set("mql.min_fit", "forty"), ["mql.min_fit: must be an integer"]),
    ("stages not a list", _set("lifecycle.stages", 7), ["lifecycle.stages: must be a list"]),
    (
        "half-life zero",
        _set("scoring.decay_half_life_days", 0),
        ["scoring.decay_half_life_days: must be greater than 0"],
    ),
    ("section not a mapping", _set("processing", [1]), ["processing: must be an object"]),
    ("unknown top-level field", _set("colour", "blue"), ["colour: is not a known field (check the spelling)"]),
    (
        "unknown nested field",
        _set("scoring.fit.1.weight", 3),
        ["scoring.fit[1].weight: is not a known field (check the spelling)"],
    ),
    ("missing section", _drop("deals"), ["deals: is required"]),
    (
        "unknown target stage",
        _set("lifecycle.transitions.lead", ["mql", "limbo"]),
        ["lifecycle.transitions.lead: unknown stage 'limbo'; declare it in stages"],
    ),
    (
        "unknown source stage",
        _set("lifecycle.transitions.limbo", ["lead"]),
        ["lifecycle.transitions.limbo: unknown stage 'limbo'; declare it in stages"],
    ),
    (
        "missing core stage",
        _set("lifecycle.stages", ["subscriber", "lead", "sal", "sql", "opportunity", "customer", "evangelist"]),
        ["lifecycle: stages must include mql (the engine gives them a meaning)"],
    ),
    (
        "duplicate engagement action",
        _append("scoring.engagement", {"action": "page_view", "points": 2, "cap": 4}),
        ["scoring: engagement actions must be unique; repeated: page_view"],
    ),
    (
        "fit rule with two matchers",
        _set("scoring.fit.1", {"attribute": "seniority", "equals": "vp", "in": ["vp"], "points": 5}),
        ["scoring.fit[1]: give exactly one matcher: equals, in, contains, or min/max"],
    ),
    (
        "fit rule with no matcher",
        _set("scoring.fit.0", {"attribute": "seniority", "points": 5}),
        ["scoring.fit[0]: give exactly one matcher: equals, in, contains, or min/max"],
    ),
    (
        "fit rule on a built-in attribute rules do not read",
        _set("scoring.fit.0.attribute", "email"),
        [
            "scoring.fit[0].attribute: email is not an attribute rules may read; use one of job_title, seniority, "
            "company_size, industry, country, persona, segment, territory or the name of a custom attribute"
        ],
    ),
    (
        "fit rule on an attribute that cannot be a custom attribute's name",
        _set("scoring.fit.0.attribute", "Shoe Size"),
        [
            "scoring.fit[0].attribute: must be a lower-case code of letters, digits and _ starting with a letter, "
            "e.g. page_view"
        ],
    ),
    (
        "routing condition on a built-in attribute rules do not read",
        _set("routing.pools.0.when.0.attribute", "company"),
        [
            "routing.pools[0].when[0].attribute: company is not an attribute rules may read; use one of job_title, "
            "seniority, company_size, industry, country, persona, segment, territory or the name of a custom "
            "attribute"
        ],
    ),
    (
        "pipeline to an unknown stage",
        _set("deals.pipeline.0.lifecycle_stage", "limbo"),
        ["deals.pipeline[0].lifecycle_stage: unknown stage 'limbo'"],
    ),
    ("lost to an unknown stage", _set("deals.lost_to_stage", "limbo"), ["deals.lost_to_stage: unknown stage 'limbo'"]),
    (
        "no rejection reasons",
        _set("rejection_reasons", []),
        ["rejection_reasons: give at least one reason code sales may use"],
    ),
    (
        "BANT field misspelt",
        _set("deals.pipeline.0.requires", ["need", "money"]),
        ["deals.pipeline[0].requires[1]: must be 'budget', 'authority', 'need' or 'timeline'"],
    ),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in BROKEN], ids=[name for name, _, _ in BROKEN])
def test_broken_document(change: Change, expected: list[str]) -> None:
    assert problems_of(change) == expected


def test_every_problem_is_reported_at_once() -> None:
    def change(document: dict[str, Any]) -> None:
        _set("scoring.engagement.2.points", "lots")(document)
        _set("mql.min_engagement", -1)(document)
        _set("colour", "blue")(document)

    assert problems_of(change) == [
        "scoring.engagement[2].points: must be an integer",
        "mql.min_engagement: must be greater than or equal to 0",
        "colour: is not a known field (check the spelling)",
    ]


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just words\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.problems == ["(top level): must be a mapping of policy sections"]
    assert caught.value.source == str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nname: [x\n", "line 3, column 1: not valid YAML: expected ',' or ']', but got '<stream end>'"),
        ("a: b\n  c: d\n", "line 2, column 4: not valid YAML: mapping values are not allowed here"),
        (
            "calendars:\n  x:\n    holidays: [2026-02-30]\n",
            "line 3, column 16: not valid YAML: '2026-02-30' is not a date or time (day is out of range for month); "
            "write a real one",
        ),
    ],
)
def test_bad_yaml_names_the_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.problems == [expected]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path / "nope.yaml")
    assert caught.value.problems == ["(file): cannot read: No such file or directory"]


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    assert caught.value.problems == ["(file): cannot read: Is a directory"]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: Política comercial\n".encode("latin-1"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    (problem,) = caught.value.problems
    assert problem.startswith("(file): cannot read: not UTF-8 text")


def test_policy_error_is_a_value_error() -> None:
    error = PolicyError("p.yaml", ["a: b", "c: d"])
    assert isinstance(error, ValueError)
    assert str(error) == "p.yaml: a: b; c: d"


def test_a_copy_with_other_fields_computes_its_own_lookups() -> None:
    policy = load_policy()
    assert policy.sla_specs  # computed, kept in the policy's __dict__
    assert policy.routing is not None
    assert policy.routing.by_name
    without_slas = policy.model_copy(update={"slas": ()})
    assert without_slas.sla_specs == {}
    assert without_slas.sla_start_events == frozenset()
    one_pool = policy.routing.model_copy(update={"pools": policy.routing.pools[:1]})
    assert set(one_pool.by_name) == {policy.routing.pools[0].name}
    assert policy.model_copy().sla_specs == policy.sla_specs
    assert policy.model_copy() == policy


def test_true_or_false_where_a_number_belongs_is_named() -> None:
    """YAML's true is 1 to pydantic: `capacity: true` would be a capacity of one, `average_deal_value: true` a deal
    of 1. Booleans that stay booleans (a flag, a rule matching a yes/no attribute) are fine."""
    document = default_document()
    document["routing"]["pools"][0]["owners"][0]["capacity"] = True
    document["slas"][0]["allowance"] = {"minutes": True}
    document["mql"]["recycle_resets_engagement"] = False
    with pytest.raises(PolicyError) as caught:
        parse_policy(document)
    assert caught.value.problems == [
        "slas[0].allowance.minutes: true or false is not a number here; write the number",
        "routing.pools[0].owners[0].capacity: true or false is not a number here; write the number",
    ]
