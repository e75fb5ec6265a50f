from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from shared.crm.amocrm import amocrm_events
from shared.crm.events import CustomField
from shared.crm.forms import FormError, parse_form
from tests.shared.crm_bodies import (
    AMO_ACCOUNT,
    FORM,
    UPDATED_AT,
    amo_body,
    amo_custom_fields,
    amo_lead,
    amo_status_body,
    amo_three_leads_body,
)
from tests.shared.test_crm_forms import CAPTURED_STATUS

WHEN = dt.datetime.fromtimestamp(UPDATED_AT, dt.UTC)


def events_of(body: bytes, content_type: str = FORM):
    return amocrm_events(parse_form(body, content_type))


def test_a_status_change_with_custom_fields_and_the_account_block():
    [event] = events_of(amo_status_body())
    assert (event.source, event.event, event.entity, event.entity_id) == (
        "amocrm",
        "status",
        "lead",
        "10701093",
    )
    assert (event.account, event.account_domain) == ("29085955", "example")
    assert (event.status_id, event.pipeline_id, event.price) == ("142", "9217056", Decimal("15000"))
    assert event.occurred_at == WHEN
    assert event.custom_fields == (
        CustomField("66339", "Источник", None, ("Сайт",), ("139517",)),
        CustomField("4001", "Yandex ClientID", "_YM_UID", ("175085690441127503",)),
        CustomField("72333", "Дата проведения", None, ("1542067200",)),  # a date field's bare value
    )
    assert event.custom_fields_by_id == {
        "66339": ("Сайт",),
        "4001": ("175085690441127503",),
        "72333": ("1542067200",),
    }
    assert event.custom_fields_by_code == {
        "Источник": ("Сайт",),
        "_YM_UID": ("175085690441127503",),
        "Дата проведения": ("1542067200",),
    }
    assert event.field_values("4001") == event.field_values("_ym_uid") == ("175085690441127503",)
    assert event.field_values("yandex clientid") == ("175085690441127503",)
    assert event.field_values("nope") is None
    assert event.natural_key == f"amocrm:29085955:lead:10701093:142:{UPDATED_AT}"


def test_several_leads_in_one_post_keep_their_order():
    events = events_of(amo_three_leads_body())
    assert [(e.entity_id, e.status_id, len(e.custom_fields)) for e in events] == [
        ("101", "142", 3),
        ("102", "143", 0),
        ("103", "142", 3),
    ]
    assert len({e.natural_key for e in events}) == 3


def test_lead_add_and_update_and_other_entities():
    body = amo_body(
        amo_lead("add", 0, "201", status_id="20067736", price=""),
        amo_lead("update", 0, "202"),
        [("contacts[add][0][id]", "7793457"), ("contacts[add][0][name]", "Иван")],
        [("leads[delete][0][id]", "203"), ("leads[delete][0][status_id]", "142")],
        AMO_ACCOUNT,
    )
    add, update = events_of(body)
    assert (add.event, add.entity_id, add.status_id, add.price) == ("add", "201", "20067736", None)
    assert (update.event, update.entity_id, update.status_id) == ("update", "202", "142")
    assert events_of(amo_body([("contacts[add][0][id]", "1")], AMO_ACCOUNT)) == []
    assert events_of(b"") == []


def test_the_older_format_without_account_id_or_updated_at():
    [event] = events_of(CAPTURED_STATUS)
    assert event.account == "10216991"  # the lead's account_id stands in for account[id]
    assert event.account_domain == "test000002"
    assert event.occurred_at == dt.datetime.fromtimestamp(1456820780, dt.UTC)  # last_modified
    assert event.custom_fields == (CustomField("1119321", "Some text field", None, ("some text",)),)


def test_the_event_time_falls_back_to_creation_and_may_be_absent():
    body = amo_body([("leads[add][0][id]", "1"), ("leads[add][0][created_at]", "1772200000")])
    assert events_of(body)[0].occurred_at == dt.datetime.fromtimestamp(1772200000, dt.UTC)
    [bare] = events_of(b"leads[status][0][id]=5")
    assert (bare.account, bare.status_id, bare.occurred_at, bare.price) == (None, None, None, None)
    assert bare.natural_key == "amocrm::lead:5::"


def test_a_cp1251_body():
    body = amo_body(
        amo_lead("status", 0, "301"), amo_custom_fields("status", 0), AMO_ACCOUNT, encoding="cp1251"
    )
    [event] = events_of(body, f"{FORM}; charset=windows-1251")
    assert event.custom_fields[0].values == ("Сайт",)
    assert event.custom_fields[2].name == "Дата проведения"


def test_tolerated_custom_field_shapes():
    body = (
        b"leads[status][0][id]=1&leads[status][0][custom_fields]=oops"
        b"&leads[status][1][id]=2&leads[status][1][custom_fields][0]=scalar"
        b"&leads[status][1][custom_fields][1][values][0][value]=no-id-or-name"
        b"&leads[status][1][custom_fields][2][id]=9&leads[status][1][custom_fields][2][values]=flat"
        b"&leads[status][1][custom_fields][3][code]=YCLID&leads[status][1][custom_fields][3][values][0][value]="
        b"&leads[status][1][custom_fields][3][values][1][value]=%20abc%20&leads[status][1][custom_fields][3][values][2][enum]=7"
    )
    first, second = events_of(body)
    assert first.custom_fields == ()
    assert second.custom_fields == (CustomField("9"), CustomField(None, None, "YCLID", ("abc",), ("7",)))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"leads[status][0][name]=no+id", r"leads\[status\]\[0\]\[id\] is required"),
        (b"leads[status][0][id]=1&leads[status][1][id]=", r"leads\[status\]\[1\]\[id\] is required"),
        (b"leads[status][0][id][x]=1", r"leads\[status\]\[0\]\[id\] must be a single value"),
        (b"leads[status][0]=1", r"leads\[status\]\[0\] must be leads\[status\]\[0\]\[<field>\]"),
        (b"leads[status]=1", r"leads\[status\] must be numbered"),
        (b"leads=1", r"leads must be leads\[<action>\]"),
        (b"leads[0][id]=1", r"leads must be leads\[<action>\]"),
        (b"account=1&leads[status][0][id]=1", r"account must be account\[<name>\]"),
        (b"leads[status][0][id]=1&leads[status][0][updated_at]=yesterday", "must be a Unix timestamp"),
        (b"leads[status][0][id]=1&leads[status][0][updated_at]=99999999999999", "must be a Unix timestamp"),
        (b"leads[status][0][id]=1&leads[status][0][price]=lots", r"\[price\] must be a number"),
        (b"leads[status][0][id]=1&leads[status][0][price]=NaN", r"\[price\] must be a number"),
        (b"leads[status][0][id]=1%0A2", r"\[id\] must not contain control characters"),
        (b"leads[status][0][id]=" + b"9" * 129, r"\[id\] is longer than 128 characters"),
        (b"leads[status][%0A][id]=", r"leads\[status\]\[\.\.\.\]\[id\] is required"),
    ],
)
def test_malformed_lead_events_are_a_form_error(body, message):
    with pytest.raises(FormError, match=message):
        events_of(body)


def test_natural_keys_are_stable_and_distinct():
    [one] = events_of(amo_status_body())
    [again] = events_of(amo_status_body())
    assert one.natural_key == again.natural_key
    # the same change delivered by both the status and the update hook is one event
    [as_update] = events_of(amo_body(amo_lead("update", 0, "10701093"), AMO_ACCOUNT))
    assert as_update.natural_key == one.natural_key
    variants = [
        amo_body(amo_lead("status", 0, "10701094"), AMO_ACCOUNT),  # another lead
        amo_body(amo_lead("status", 0, "10701093", status_id="143"), AMO_ACCOUNT),  # another status
        amo_body(amo_lead("status", 0, "10701093", updated_at=str(UPDATED_AT + 1)), AMO_ACCOUNT),  # later
        amo_body(amo_lead("status", 0, "10701093"), [("account[id]", "29085956")]),  # another account
        amo_body(amo_lead("status", 0, "10701093", status_id="142:1")),  # separators cannot collide
    ]
    keys = {one.natural_key} | {events_of(body)[0].natural_key for body in variants}
    assert len(keys) == 1 + len(variants)
