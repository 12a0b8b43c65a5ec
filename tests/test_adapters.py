"""Adapters: each tool's payload shape -> canonical drafts that validate once identity sets the lead_id."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from test_adapters_support import FORMS, RECEIVED, delivery, drafts, fixture, policy_with_forms, rejection, valid

from leadflow.core.adapters import Rejection, canonical, forms, hubspot, mautic, rdstation
from leadflow.core.adapters.country import country_code
from leadflow.core.adapters.form_mapping import profile_data, slug
from leadflow.core.adapters.registry import ADAPTERS

PORTAL = "4455667"


def types(found: tuple[Any, ...]) -> list[str]:
    return [draft.type for draft in found]


# --- HubSpot -----------------------------------------------------------------------------------------------------


def hubspot_event(**fields: Any) -> dict[str, Any]:
    event = {
        "eventId": 5001,
        "subscriptionId": 70001,
        "portalId": int(PORTAL),
        "appId": 31337,
        "occurredAt": 1764582000000,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": 880011,
        "changeSource": "CRM_UI",
        "sourceId": "userId:9001",
    }
    return {**event, **fields}


def test_hubspot_batch_maps_each_subscription_type() -> None:
    found = valid(hubspot.adapt(delivery(fixture("hubspot_contacts.json"))))
    assert types(found) == [
        "lead.created",
        "lead.updated",  # email
        "lead.updated",  # lifecyclestage kept
        "lead.qualified",
        "lead.updated",  # hs_lead_status kept
        "contact.attempted",
        "lead.assigned",
        "lead.updated",  # hubspotscore
        "lead.updated",  # custom property
        "lead.updated",  # the form's persona and buying stage
        "activity",
        "lead.updated",  # country
        "lead.updated",  # lifecyclestage kept
        "deal.won",
        "lead.merged",
        "lead.erased",
    ]
    assert all(d.source == "hubspot" for d in found)
    assert found[0].person.tool_ids == (f"hubspot:{PORTAL}:880011",)
    assert found[0].occurred_at == datetime.fromtimestamp(1764582000.101, UTC)


def test_hubspot_property_values() -> None:
    found = drafts(hubspot.adapt(delivery(fixture("hubspot_contacts.json"))))
    by_type = {(d.type, tuple(d.data)): d for d in found}
    email = by_type[("lead.updated", ("email",))]
    assert email.person.email == "ana.lima@example.org"
    assert by_type[("lead.assigned", ("owner_id",))].data == {"owner_id": "52001"}
    assert by_type[("lead.updated", ("hubspotscore",))].data == {"hubspotscore": 57}
    assert by_type[("lead.updated", ("preferred_plan_c",))].data == {"preferred_plan_c": "Enterprise"}
    assert by_type[("lead.updated", ("country",))].data == {"country": "BR"}
    assert by_type[("activity", ("action",))].data == {"action": "demo_request"}
    assert by_type[("deal.won", ())].data == {}  # a won deal without an amount: unknown, never 0
    assert by_type[("contact.attempted", ("channel", "outcome"))].data["outcome"] == "no_answer"


def test_hubspot_merge_names_the_primary_contact() -> None:
    found = drafts(hubspot.adapt(delivery(fixture("hubspot_contacts.json"))))
    merged = next(d for d in found if d.type == "lead.merged")
    assert merged.person.tool_ids == (f"hubspot:{PORTAL}:880022",)
    assert merged.merged_into is not None
    assert merged.merged_into.tool_ids == (f"hubspot:{PORTAL}:880011",)


def test_hubspot_merge_into_a_new_object_names_both() -> None:
    event = hubspot_event(subscriptionType="contact.merge", primaryObjectId=1, mergedObjectIds=[2, 3], newObjectId=4)
    found = valid(hubspot.adapt(delivery([event])))
    assert [d.person.tool_ids for d in found] == [(f"hubspot:{PORTAL}:2",), (f"hubspot:{PORTAL}:3",)]
    assert found[0].merged_into is not None
    assert found[0].merged_into.tool_ids == (f"hubspot:{PORTAL}:1", f"hubspot:{PORTAL}:4")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("lifecyclestage", "salesqualifiedlead", "lead.accepted"),
        ("lifecyclestage", "opportunity", None),
        ("hs_lead_status", "CONNECTED", "contact.attempted"),
        ("hs_lead_status", "UNQUALIFIED", "lead.disqualified"),
        ("hs_lead_status", "IN_PROGRESS", None),
    ],
)
def test_hubspot_stage_and_status_values(name: str, value: str, expected: str | None) -> None:
    found = valid(hubspot.adapt(delivery([hubspot_event(propertyName=name, propertyValue=value)])))
    assert found[0].type == "lead.updated"
    assert list(found[0].data.values()) == [value]
    assert [d.type for d in found[1:]] == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("name", "value", "data"),
    [
        ("jobtitle", "VP Sales", {"job_title": "VP Sales"}),
        ("numemployees", "250", {"company_size": 250}),
        ("numemployees", "25-50", {"company_size_raw": "25-50"}),
        ("industry", "COMPUTER_SOFTWARE", {"industry": "computer_software"}),
        ("country", "Atlantis", {"country_raw": "Atlantis"}),
        ("my_fit_score", "12.5", {"my_fit_score": 12.5}),
        ("Some Odd-Name", "x" * 600, {"some_odd_name": "x" * 500}),
        ("company", "", {"company": None}),
        ("hubspot_owner_id", "", {"hubspot_owner_id": None}),
    ],
)
def test_hubspot_profile_properties(name: str, value: str, data: dict[str, Any]) -> None:
    (draft,) = valid(hubspot.adapt(delivery([hubspot_event(propertyName=name, propertyValue=value)])))
    assert draft.type == "lead.updated"
    assert dict(draft.data) == data


@pytest.mark.parametrize("name", ["firstname", "lastname", "phone", "mobilephone"])
def test_hubspot_personal_properties_are_not_kept(name: str) -> None:
    assert hubspot.adapt(delivery([hubspot_event(propertyName=name, propertyValue="Ana")])) == ()


def test_hubspot_unknown_conversion_is_a_plain_form_submit() -> None:
    event = hubspot_event(propertyName="recent_conversion_event_name", propertyValue="Newsletter")
    (activity,) = valid(hubspot.adapt(delivery([event])))
    assert activity.data == {"action": "form_submit"}


def test_hubspot_redelivery_gives_the_same_ids() -> None:
    body = fixture("hubspot_contacts.json")
    retried = [{**event, "attemptNumber": 3} for event in body]
    first = drafts(hubspot.adapt(delivery(body)))
    second = drafts(hubspot.adapt(delivery(retried)))
    assert [d.event_id for d in first] == [d.event_id for d in second]
    assert len({d.event_id for d in first}) == len(first)


def test_hubspot_same_event_id_in_another_portal_is_another_event() -> None:
    one = drafts(hubspot.adapt(delivery([hubspot_event(subscriptionType="contact.creation")])))
    other = drafts(hubspot.adapt(delivery([hubspot_event(subscriptionType="contact.creation", portalId=1)])))
    assert one[0].event_id != other[0].event_id


def test_hubspot_occurred_at_falls_back_to_receipt() -> None:
    (draft,) = drafts(hubspot.adapt(delivery([hubspot_event(subscriptionType="contact.creation", occurredAt=None)])))
    assert draft.occurred_at == RECEIVED


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (fixture("hubspot_company.json"), "[1].subscriptionType"),
        ([hubspot_event(subscriptionType="deal.creation")], "[0].subscriptionType"),
        ([hubspot_event(propertyName=None)], "[0].propertyName"),
        ([hubspot_event(propertyValue={"a": 1}, propertyName="x")], "[0].propertyValue"),
        ([hubspot_event(subscriptionType="contact.creation", objectId=None)], "[0].objectId"),
        ([hubspot_event(subscriptionType="contact.merge", primaryObjectId=1)], "[0].mergedObjectIds"),
        ([hubspot_event(eventId=None)], "[0].eventId"),
        ([{"subscriptionType": "contact.creation"}, 5], "[0].portalId"),
        ({"eventId": 1}, "(body)"),
        ("not json", "(body)"),
    ],
)
def test_hubspot_rejections_name_the_field(body: Any, field: str) -> None:
    found = rejection(hubspot.adapt(delivery(body)))
    assert found.field == field
    assert "@" not in str(found)


def test_hubspot_ignores_restore_and_association_changes() -> None:
    body = [
        hubspot_event(subscriptionType="contact.restore"),
        hubspot_event(subscriptionType="contact.associationChange"),
    ]
    assert hubspot.adapt(delivery(body)) == ()


# --- RD Station --------------------------------------------------------------------------------------------------


def test_rdstation_conversion_maps_profile_and_form() -> None:
    updated, activity = valid(rdstation.adapt(delivery(fixture("rdstation_converted.json"))))
    assert (updated.type, activity.type) == ("lead.updated", "activity")
    assert updated.person.tool_ids == ("rdstation:0f6c1a52-3d1e-4b7a-9c55-2a1be0c4d9e1",)
    assert updated.person.email == "bruno.souza@example.com.br"
    data = dict(updated.data)
    assert data["job_title"] == "Gerente de Compras"
    assert data["company"] == "Mercado Exemplo Ltda"
    assert data["origin"] == "Busca Orgânica | Google"
    assert data["cf_segmento"] == "Varejo"
    assert data["industry"] == "varejo"  # the form spec maps cf_segmento -> industry
    assert data["persona"] == "buyer"
    assert data["buying_stage"] == "awareness"
    assert not {"name", "personal_phone", "mobile_phone", "bio"} & set(data)
    assert activity.data == {"action": "content_download"}
    assert updated.occurred_at == datetime.fromisoformat("2026-11-20T09:14:58.004-03:00")


def test_rdstation_marked_opportunity_qualifies() -> None:
    updated, qualified = valid(rdstation.adapt(delivery(fixture("rdstation_marked_opportunity.json"))))
    assert (updated.type, qualified.type) == ("lead.updated", "lead.qualified")
    assert updated.data["rd_lifecycle_stage"] == "Qualified Lead"


def test_rdstation_legacy_leads() -> None:
    updated, activity, qualified = valid(rdstation.adapt(delivery(fixture("rdstation_legacy.json"))))
    assert types((updated, activity, qualified)) == ["lead.updated", "activity", "lead.qualified"]
    assert updated.data["country"] == "BR"  # "pais": "Brasil" through the contato-vendas form spec
    assert updated.data["seniority"] == "diretora"
    assert updated.data["frota_veiculos"] == "120"
    assert "telefone" not in updated.data
    assert activity.data == {"action": "contact_sales"}
    assert updated.occurred_at == datetime.fromisoformat("2026-11-18T16:45:10-03:00")


def test_rdstation_legacy_not_an_opportunity_is_not_qualified() -> None:
    body = fixture("rdstation_legacy.json")
    body["leads"][0]["opportunity"] = "false"
    assert "lead.qualified" not in types(valid(rdstation.adapt(delivery(body))))


@pytest.mark.parametrize(
    "name", ["rdstation_converted.json", "rdstation_marked_opportunity.json", "rdstation_legacy.json"]
)
def test_rdstation_redelivery_gives_the_same_ids(name: str) -> None:
    body = fixture(name)
    first = drafts(rdstation.adapt(delivery(body)))
    if "timestamp" in body:
        body["timestamp"] = "2026-11-30T00:00:00Z"  # a retry is sent later; the event time stays
    second = drafts(rdstation.adapt(delivery(body)))
    assert [d.event_id for d in first] == [d.event_id for d in second]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_type": "WEBHOOK.SOMETHING"}, "event_type"),
        ({"entity_type": "COMPANY"}, "entity_type"),
        ({"contact": None}, "contact"),
        ({"contact": {"name": "Bruno", "email": "not an address"}}, "contact.uuid"),
        ({"event_name": "crm_deal_updated"}, "event_name"),
    ],
)
def test_rdstation_rejections(change: dict[str, Any], field: str) -> None:
    found = rejection(rdstation.adapt(delivery({**fixture("rdstation_converted.json"), **change})))
    assert found.field == field
    assert "@" not in str(found)


def test_rdstation_legacy_rejection_names_the_lead() -> None:
    found = rejection(rdstation.adapt(delivery({"leads": [fixture("rdstation_legacy.json")["leads"][0], 3]})))
    assert found.field == "leads[1]"


# --- Mautic ------------------------------------------------------------------------------------------------------


def test_mautic_new_contact() -> None:
    (created,) = valid(mautic.adapt(delivery(fixture("mautic_lead_post_save_new.json"))))
    assert created.type == "lead.created"
    assert created.person.tool_ids == ("mautic:301",)
    assert created.person.email == "diana.reis@example.pt"
    assert created.data["country"] == "PT"
    assert created.data["job_title"] == "Head of Marketing"
    assert not {"firstname", "lastname", "mobile", "title", "linkedin"} & set(created.data)


def test_mautic_update_and_points() -> None:
    body = fixture("mautic_lead_points_change.json")
    (points,) = valid(mautic.adapt(delivery(body)))
    assert (points.type, dict(points.data)) == ("lead.updated", {"mautic_points": 25})
    update = {"mautic.lead_post_save_update": [{"contact": body["mautic.lead_points_change"][0]["contact"]}]}
    (updated,) = valid(mautic.adapt(delivery(update)))
    assert updated.type == "lead.updated"
    assert updated.occurred_at == datetime(2026, 11, 12, 10, 30, tzinfo=UTC)  # dateModified


def test_mautic_form_submission() -> None:
    updated, activity = valid(mautic.adapt(delivery(fixture("mautic_form_on_submit.json"))))
    assert dict(updated.data) == {
        "email": "diana.reis@example.pt",
        "job_title": "Head of Marketing",
        "company_size": 80,
        "country": "PT",
        "persona": "marketing_lead",
    }
    assert activity.data == {"action": "demo_request", "url": "https://www.example.pt/precos"}
    assert activity.occurred_at == datetime(2026, 11, 13, 15, 5, tzinfo=UTC)


def test_mautic_form_found_by_alias() -> None:
    body = fixture("mautic_form_on_submit.json")
    submission = body["mautic.form_on_submit"][0]["submission"]
    submission["form"]["id"] = 99
    policy_forms = [{"source": "mautic", "name": "talktosales", "action": "contact_sales"}]
    FORMS.extend(policy_forms)
    try:
        policy = policy_with_forms()
    finally:
        del FORMS[-1]
    _, activity = valid(mautic.adapt(delivery(body, policy=policy)))
    assert activity.data["action"] == "contact_sales"


def test_mautic_delete() -> None:
    (erased,) = valid(mautic.adapt(delivery(fixture("mautic_lead_post_delete.json"))))
    assert erased.type == "lead.erased"
    assert erased.person.tool_ids == ("mautic:301",)


@pytest.mark.parametrize(
    "name",
    [
        "mautic_lead_post_save_new.json",
        "mautic_lead_points_change.json",
        "mautic_form_on_submit.json",
        "mautic_lead_post_delete.json",
    ],
)
def test_mautic_redelivery_gives_the_same_ids(name: str) -> None:
    first = drafts(mautic.adapt(delivery(fixture(name))))
    second = drafts(mautic.adapt(delivery(fixture(name))))
    assert [d.event_id for d in first] == [d.event_id for d in second]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mautic.email_on_open": [{}]}, "mautic.email_on_open"),
        ({"timestamp": "2026-11-10T08:00:00+00:00"}, "(body)"),
        ({"mautic.lead_post_save_new": {}}, "mautic.lead_post_save_new"),
        ({"mautic.lead_post_save_new": [{"contact": {"fields": {}}}]}, "mautic.lead_post_save_new[0].contact.id"),
        (
            {"mautic.lead_points_change": [{"contact": {"id": 1}, "points": {}}]},
            "mautic.lead_points_change[0].points.new_points",
        ),
        (
            {"mautic.form_on_submit": [{"submission": {"id": 1, "form": {"id": 2}}}]},
            "mautic.form_on_submit[0].submission.lead.id",
        ),
        ({"mautic.lead_post_delete": [{"contact": {}}]}, "mautic.lead_post_delete[0].id"),
    ],
)
def test_mautic_rejections(body: Any, field: str) -> None:
    found = rejection(mautic.adapt(delivery(body)))
    assert found.field == field
    assert "@" not in str(found)


# --- the site's own forms ----------------------------------------------------------------------------------------


def test_form_urlencoded_through_the_spec() -> None:
    body = (
        "form_id=trial-signup&work_email=eva%40example.io&role=CTO&employees=40&nation=Deutschland"
        "&first_name=Eva&interests=api&interests=sso&submission_id=sub-778&page_url=https%3A%2F%2Fexample.io%2Ftrial"
        "&utm_campaign=launch-week"
    )
    updated, activity = valid(forms.adapt(delivery(body, "application/x-www-form-urlencoded")))
    assert updated.person.email == "eva@example.io"
    assert dict(updated.data) == {
        "email": "eva@example.io",
        "job_title": "CTO",
        "company_size": 40,
        "country": "DE",
        "persona": "developer",
        "buying_stage": "consideration",
    }
    assert activity.data == {"action": "form_submit", "url": "https://example.io/trial", "campaign": "launch-week"}
    assert updated.occurred_at == RECEIVED


def test_form_json_by_name_without_spec_fields() -> None:
    body = {"form": "Free trial", "email": "eva@example.io", "job_title": "CTO", "submitted_at": "2026-11-30T10:00:00Z"}
    updated, _ = valid(forms.adapt(delivery(body)))
    assert updated.data["job_title"] == "CTO"
    assert updated.occurred_at == datetime(2026, 11, 30, 10, tzinfo=UTC)


def test_form_unknown_maps_builtin_names_only() -> None:
    body = {"email": "eva@example.io", "country": "fr", "message": "hello", "phone": "123"}
    updated, activity = valid(forms.adapt(delivery(body)))
    assert dict(updated.data) == {"email": "eva@example.io", "country": "FR"}
    assert activity.data == {"action": "form_submit"}


def test_form_submission_id_is_the_delivery_id() -> None:
    body = {"form_id": "trial-signup", "work_email": "eva@example.io", "submission_id": "sub-1"}
    first = drafts(forms.adapt(delivery(body)))
    again = drafts(forms.adapt(delivery({**body, "role": "CTO"})))
    other = drafts(forms.adapt(delivery({**body, "submission_id": "sub-2"})))
    assert [d.event_id for d in first] == [d.event_id for d in again]
    assert first[0].event_id != other[0].event_id


def test_form_without_submission_id_derives_a_stable_id() -> None:
    body = {"form_id": "trial-signup", "work_email": "eva@example.io", "role": "CTO"}
    first = drafts(forms.adapt(delivery(body)))
    assert [d.event_id for d in first] == [d.event_id for d in drafts(forms.adapt(delivery(body)))]
    changed = drafts(forms.adapt(delivery({**body, "role": "CEO"})))
    assert first[0].event_id != changed[0].event_id


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        ({"form_id": "trial-signup", "role": "CTO"}, "application/json", "work_email"),
        ({"email": "not-an-address"}, "application/json", "email"),
        ("email=eva%40example.io", "text/plain", "(content-type)"),
        ([1, 2], "application/json", "(body)"),
        ({"email": "eva@example.io", "submission_id": "has space"}, "application/json", "submission_id"),
        (b"email=\xff", "application/x-www-form-urlencoded", "(body)"),
    ],
)
def test_form_rejections(body: Any, content_type: str, field: str) -> None:
    found = rejection(forms.adapt(delivery(body, content_type)))
    assert found.field == field
    assert "@" not in str(found)


# --- canonical envelopes -----------------------------------------------------------------------------------------


def envelope_doc(**fields: Any) -> dict[str, Any]:
    doc = {
        "event_id": "e-1",
        "lead_id": "L-42",
        "type": "lead.rejected",
        "occurred_at": "2026-11-24T10:00:00Z",
        "source": "crm",
        "actor": {"team": "sales", "user_id": "rep-7"},
        "data": {"reason": "no_budget"},
    }
    return {**doc, **fields}


def test_canonical_object_array_and_lines() -> None:
    (one,) = valid(canonical.adapt(delivery(envelope_doc())))
    assert one.person.lead_id == "L-42"
    assert (one.event_id, one.type, one.source) == ("e-1", "lead.rejected", "crm")
    assert one.actor == {"team": "sales", "user_id": "rep-7"}
    assert one.data == {"reason": "no_budget"}
    many = valid(canonical.adapt(delivery([envelope_doc(), envelope_doc(event_id="e-2")])))
    assert [d.event_id for d in many] == ["e-1", "e-2"]
    lines = "\n".join(json.dumps(envelope_doc(event_id=f"e-{i}")) for i in range(3)) + "\n"
    assert len(valid(canonical.adapt(delivery(lines, "application/x-ndjson")))) == 3
    assert len(valid(canonical.adapt(delivery(lines)))) == 3  # JSON lines sent as application/json


def test_canonical_merge_names_the_survivor() -> None:
    (merged,) = valid(canonical.adapt(delivery(envelope_doc(type="lead.merged", data={"into_lead_id": "L-1"}))))
    assert merged.merged_into is not None
    assert merged.merged_into.lead_id == "L-1"
    assert merged.data == {"into_lead_id": "L-1"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (envelope_doc(type="timer.due", data={}), "type"),
        ([envelope_doc(), envelope_doc(type="route.unassigned", data={})], "[1].type"),
        ([envelope_doc(), envelope_doc(data={})], "[1].data.reason"),
        (envelope_doc(occurred_at="2026-11-24T10:00:00"), "occurred_at"),
        (envelope_doc(lead_id=None), "lead_id"),
        (envelope_doc(type="lead.updated", data={"email": "x" * 400 + "@example.org"}), "data.email"),
        (json.dumps(envelope_doc()) + "\nnot json\n", "line 2"),
        (7, "(body)"),
    ],
)
def test_canonical_rejections(body: Any, field: str) -> None:
    found = rejection(canonical.adapt(delivery(body)))
    assert found.field == field
    assert "@" not in str(found)


# --- shared pieces -----------------------------------------------------------------------------------------------


def test_registry_names_every_tool() -> None:
    assert set(ADAPTERS) == {"hubspot", "rdstation", "mautic", "forms", "canonical"}
    for adapt in ADAPTERS.values():
        assert isinstance(adapt(delivery(b"")), Rejection)


@pytest.mark.parametrize(
    ("value", "code"),
    [("Brasil", "BR"), ("brazil", "BR"), ("br", "BR"), ("Czech Republic", "CZ"), ("Alemanha", "DE"), ("España", "ES")],
)
def test_country_names_become_iso_codes(value: str, code: str) -> None:
    assert country_code(value) == code


@pytest.mark.parametrize("value", ["Atlantis", "EU", "ZZ", "", 12, None])
def test_country_unknown(value: object) -> None:
    assert country_code(value) is None


def test_profile_data_bounds_custom_attributes() -> None:
    data = profile_data([(f"field {i}", i) for i in range(80)])
    assert len(data) == 50
    assert "field_79" in data
    assert slug("Região / Estado") == "regiao_estado"
    assert slug("2nd choice") == "f_2nd_choice"
    assert profile_data([("initial_stage", "customer")]) == {"initial_stage_raw": "customer"}
