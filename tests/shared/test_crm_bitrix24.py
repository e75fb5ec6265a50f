from __future__ import annotations

import datetime as dt

import pytest

from shared.crm.bitrix24 import UnsupportedEvent, application_token, application_token_matches, bitrix24_event
from shared.crm.forms import FormError, parse_form
from tests.shared.crm_bodies import FORM, bitrix_body

TOKEN = "51856fefc120afa4b628cc82d3935cce"
MEMBER = "a223c6b3710f85df22e9377d6c4f7553"


def event_of(body: bytes):
    return bitrix24_event(parse_form(body, FORM))


def test_a_deal_update():
    event = event_of(bitrix_body())
    assert (event.source, event.event, event.entity, event.entity_id) == (
        "bitrix24",
        "ONCRMDEALUPDATE",
        "deal",
        "759",
    )
    assert (event.account, event.account_domain) == (MEMBER, "example.bitrix24.ru")
    assert event.occurred_at == dt.datetime(2026, 2, 28, 12, 0, tzinfo=dt.UTC)
    # Bitrix24 sends only the id: the rest comes from crm.deal.get
    assert (event.status_id, event.price, event.pipeline_id, event.custom_fields) == (None, None, None, ())
    assert event.natural_key == f"bitrix24:{MEMBER}:ONCRMDEALUPDATE:759:1772280000"


def test_a_lead_add_in_any_case():
    event = event_of(bitrix_body("onCrmLeadAdd", entity_id="42"))
    assert (event.event, event.entity, event.entity_id) == ("ONCRMLEADADD", "lead", "42")
    assert event.natural_key == event_of(bitrix_body("ONCRMLEADADD", entity_id="42")).natural_key


def test_the_application_token_is_read_apart_and_never_shown():
    form = parse_form(bitrix_body(), FORM)
    event = bitrix24_event(form)
    assert TOKEN not in repr(event) and TOKEN not in str(event.__dict__)
    assert application_token(form) == TOKEN
    assert application_token_matches(form, TOKEN)
    assert not application_token_matches(form, TOKEN[:-1] + "0")
    assert not application_token_matches(form, "")
    for body in (
        b"event=ONCRMDEALADD",
        b"auth=x",
        b"auth[application_token][a]=1",
        b"auth[application_token]=",
    ):
        assert application_token(parse_form(body, FORM)) is None
        assert not application_token_matches(parse_form(body, FORM), TOKEN)


def test_natural_keys_are_stable_and_distinct():
    keys = {
        event_of(bitrix_body()).natural_key,
        event_of(bitrix_body()).natural_key,
        event_of(bitrix_body(entity_id="760")).natural_key,
        event_of(bitrix_body(ts="1772280001")).natural_key,
        event_of(bitrix_body("ONCRMDEALADD")).natural_key,
        event_of(bitrix_body().replace(MEMBER.encode(), b"b" * 32)).natural_key,
    }
    assert len(keys) == 5


@pytest.mark.parametrize("name", ["ONCRMDEALDELETE", "ONCRMCONTACTADD", "ONAPPINSTALL"])
def test_unknown_events_are_refused_by_name(name):
    with pytest.raises(
        UnsupportedEvent, match=f"the Bitrix24 event '{name}' is not handled; expected one of"
    ):
        event_of(bitrix_body(name))


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"data[FIELDS][ID]=1", FormError, "event is required"),
        (b"event=%00&data[FIELDS][ID]=1", FormError, "event must not contain control characters"),
        (b"event=ON+CRM+DEAL+ADD!&data[FIELDS][ID]=1", UnsupportedEvent, "the Bitrix24 event given is not"),
        (b"event=ONCRMDEALADD", FormError, r"data\[FIELDS\]\[ID\] is required"),
        (b"event=ONCRMDEALADD&data=1", FormError, r"data must be data\[<name>\]"),
        (
            b"event=ONCRMDEALADD&data[FIELDS][ID][]=1",
            FormError,
            r"data\[FIELDS\]\[ID\] must be a single value",
        ),
        (b"event=ONCRMDEALADD&data[FIELDS][ID]=1&ts=soon", FormError, "ts must be a Unix timestamp"),
        (b"event=ONCRMDEALADD&data[FIELDS][ID]=1&auth=x", FormError, r"auth must be auth\[<name>\]"),
    ],
)
def test_malformed_bodies_are_a_form_error(body, error, message):
    with pytest.raises(error, match=message):
        event_of(body)
