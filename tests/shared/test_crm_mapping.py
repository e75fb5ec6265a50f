from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from shared.conversions import Conversion, Rejected, Rules, check_row
from shared.crm.amocrm import amocrm_events
from shared.crm.bitrix24 import bitrix24_event
from shared.crm.forms import parse_form
from shared.crm.mapping import CrmMapping, Ignored, map_event
from tests.shared.crm_bodies import (
    AMO_ACCOUNT,
    FORM,
    UPDATED_AT,
    amo_body,
    amo_custom_fields,
    amo_lead,
    amo_status_body,
    amo_three_leads_body,
    bitrix_body,
)

RULES = Rules(ZoneInfo("Europe/Moscow"), dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
WHEN = dt.datetime.fromtimestamp(UPDATED_AT, dt.UTC)
AMO = CrmMapping(target_by_status={"142": "purchase"}, client_id_field="_YM_UID", currency="rub")
# what crm.deal.get returns for the deal of bitrix_body() (trimmed)
DEAL = {
    "ID": "759",
    "TITLE": "Deal #759",
    "STAGE_ID": "WON",
    "CATEGORY_ID": "0",
    "OPPORTUNITY": "15000.00",
    "CURRENCY_ID": "USD",
    "DATE_MODIFY": "2026-02-28T15:00:00+03:00",
    "UTM_SOURCE": "yandex",
    "UF_CRM_YCLID": "",
    "UF_CRM_CLIENTID": ["175085690441127503"],
    "UF_CRM_PHONE": [{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": "+79990000000"}],
}
BITRIX = CrmMapping(
    target_by_status={"WON": "purchase", "C1:WON": "purchase"},
    client_id_field="uf_crm_clientid",
    yclid_field="UF_CRM_YCLID",
)


def amo_event(body: bytes = b""):
    return amocrm_events(parse_form(body or amo_status_body(), FORM))[0]


def bitrix_event(name: str = "ONCRMDEALUPDATE"):
    return bitrix24_event(parse_form(bitrix_body(name), FORM))


def test_an_amocrm_status_change_becomes_a_valid_row():
    row = map_event(amo_event(), AMO)
    assert row == {
        "client_id": "175085690441127503",
        "target": "purchase",
        "purchase_id": "10701093",
        "date_time": "2026-02-28T12:00:00+00:00",
        "price": Decimal("15000"),
        "currency": "RUB",
    }
    assert check_row(row, 0, RULES) == Conversion(
        0, "CLIENT_ID", "175085690441127503", "purchase", WHEN, Decimal("15000"), "RUB", "10701093"
    )


def test_several_leads_map_one_by_one():
    events = amocrm_events(parse_form(amo_three_leads_body(), FORM))
    results = [map_event(event, AMO) for event in events]
    assert [r["purchase_id"] if isinstance(r, dict) else r for r in results] == [
        "101",
        Ignored("status '143' matches no rule in target_by_status"),
        "103",
    ]


def test_fields_by_id_name_and_the_price_from_a_custom_field():
    mapping = CrmMapping(
        target_by_status={"142": "won"},
        yclid_field="4001",
        user_id_field="Источник",
        price_field="72333",
        currency=None,
    )
    row = map_event(amo_event(), mapping)
    assert row == {
        "user_id": "Сайт",
        "yclid": "175085690441127503",
        "target": "won",
        "purchase_id": "10701093",
        "date_time": "2026-02-28T12:00:00+00:00",
        "price": Decimal("1542067200"),
    }
    no_price = map_event(amo_event(), mapping.model_copy(update={"price_field": None}))
    assert isinstance(no_price, dict) and "price" not in no_price


def test_an_unknown_status_is_ignored():
    event = amo_event(
        amo_body(amo_lead("status", 0, "1", status_id="20067736"), amo_custom_fields("status", 0))
    )
    assert map_event(event, AMO) == Ignored("status '20067736' matches no rule in target_by_status")
    bare = amo_event(b"leads[add][0][id]=1")
    assert map_event(bare, AMO) == Ignored("the lead has no status")


def test_a_missing_identifier_is_ignored():
    event = amo_event(amo_body(amo_lead("status", 0, "1"), AMO_ACCOUNT))  # no custom fields at all
    assert map_event(event, AMO) == Ignored("no identifier: the lead has no value in '_YM_UID'")
    empty = amo_event(
        amo_body(amo_lead("status", 0, "1"), [("leads[status][0][custom_fields][0][code]", "_YM_UID")])
    )
    both = CrmMapping(target_by_status={"142": "p"}, client_id_field="_YM_UID", yclid_field="99")
    assert map_event(empty, both) == Ignored("no identifier: the lead has no value in '_YM_UID', '99'")


def test_a_bitrix_deal_is_mapped_from_its_enriched_fields():
    row = map_event(bitrix_event(), BITRIX, DEAL)
    assert row == {
        "client_id": "175085690441127503",
        "target": "purchase",
        "purchase_id": "759",
        "date_time": "2026-02-28T12:00:00+00:00",  # the event's ts
        "price": Decimal("15000.00"),
        "currency": "USD",  # the deal's own currency
    }
    assert isinstance(check_row(row, 0, RULES), Conversion)
    phone = map_event(bitrix_event(), BITRIX.model_copy(update={"client_id_field": "UF_CRM_PHONE"}), DEAL)
    assert isinstance(phone, dict) and phone["client_id"] == "+79990000000"  # a multi-field's VALUE
    assert map_event(bitrix_event(), BITRIX, DEAL | {"STAGE_ID": "C1:WON"})["target"] == "purchase"
    assert map_event(bitrix_event(), BITRIX, DEAL | {"STAGE_ID": "LOSE"}) == Ignored(
        "status 'LOSE' matches no rule in target_by_status"
    )


def test_a_bitrix_lead_uses_status_id_and_date_modify_when_the_event_has_no_ts():
    form = parse_form(bitrix_body("ONCRMLEADADD", entity_id="42", ts=""), FORM)
    lead = {
        "ID": "42",
        "STATUS_ID": "CONVERTED",
        "OPPORTUNITY": 0,
        "DATE_MODIFY": "2026-02-27T10:00:00+03:00",
    }
    mapping = CrmMapping(target_by_status={"CONVERTED": "lead"}, user_id_field="ID", currency="EUR")
    row = map_event(bitrix24_event(form), mapping, lead)
    assert row == {
        "user_id": "42",
        "target": "lead",
        "purchase_id": "42",
        "date_time": "2026-02-27T07:00:00+00:00",
        "price": Decimal("0"),
        "currency": "EUR",
    }


def test_a_bitrix_event_that_was_not_enriched_is_ignored():
    assert map_event(bitrix_event(), BITRIX) == Ignored(
        "the deal has no status (a Bitrix24 event needs its deal or lead fetched first)"
    )


def test_bad_values_are_left_to_the_row_rules():
    body = amo_body(
        amo_lead("status", 0, "1", updated_at="1262304000"), amo_custom_fields("status", 0)
    )  # 2010
    rejected = check_row(map_event(amo_event(body), AMO), 0, RULES)
    assert isinstance(rejected, Rejected) and "date_time: is more than 90 days old" in rejected.reason
    deal = DEAL | {"OPPORTUNITY": "a lot", "CURRENCY_ID": "XYZ", "UF_CRM_CLIENTID": "x" * 200}
    row = map_event(bitrix_event(), BITRIX, deal)
    assert row["price"] == "a lot"
    rejected = check_row(row, 0, RULES)
    assert isinstance(rejected, Rejected)
    assert {e.field for e in rejected.errors} == {"client_id", "price", "currency"}
    no_time = map_event(
        bitrix24_event(parse_form(bitrix_body(ts=""), FORM)), BITRIX, DEAL | {"DATE_MODIFY": None}
    )
    assert "date_time" not in no_time
    assert "date_time: is required" in check_row(no_time, 0, RULES).reason


def test_the_mapping_model():
    mapping = CrmMapping.model_validate(
        {"target_by_status": {" 142 ": " purchase "}, "client_id_field": " 4001 ", "currency": "usd"}
    )
    assert mapping == CrmMapping(target_by_status={"142": "purchase"}, client_id_field="4001", currency="USD")
    assert mapping.price_field == "price"
    assert CrmMapping.model_validate_json(mapping.model_dump_json()) == mapping


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"target_by_status": {"142": "purchase"}}, "name at least one of client_id_field"),
        ({"target_by_status": {}, "yclid_field": "1"}, "at least 1 item"),
        ({"yclid_field": "1"}, "Field required"),
        ({"target_by_status": {"142": ""}, "yclid_field": "1"}, "is required"),
        ({"target_by_status": {"": "p"}, "yclid_field": "1"}, "status ids are"),
        ({"target_by_status": {"142": "p"}, "yclid_field": "1", "currency": "rubles"}, "ISO 4217"),
        ({"target_by_status": {"142": "p"}, "yclid_field": ""}, "at least 1 character"),
        (
            {"target_by_status": {"142": "p"}, "yclid_field": "1", "extra": 1},
            "Extra inputs are not permitted",
        ),
        ({"target_by_status": ["142"], "yclid_field": "1"}, "valid dictionary"),
    ],
)
def test_a_mapping_that_does_not_parse_is_a_validation_error(data, message):
    with pytest.raises(ValidationError, match=message):
        CrmMapping.model_validate(data)
