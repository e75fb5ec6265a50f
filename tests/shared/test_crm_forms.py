from __future__ import annotations

import random

import pytest

from shared.crm.amocrm import amocrm_events
from shared.crm.bitrix24 import bitrix24_event
from shared.crm.forms import MAX_BODY_BYTES, MAX_DEPTH, MAX_FIELDS, FormError, parse_form
from shared.crm.mapping import CrmMapping, map_event
from tests.shared.crm_bodies import FORM, amo_status_body, amo_three_leads_body, bitrix_body

# a body exactly as amoCRM's client sent it (Bolid1/zapier_build app/tests/status_lead_catch_hook.js)
CAPTURED_STATUS = (
    b"leads%5Bstatus%5D%5B0%5D%5Bid%5D=31926520&leads%5Bstatus%5D%5B0%5D%5Bname%5D=Some+test+lead"
    b"&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=10216994&leads%5Bstatus%5D%5B0%5D%5Bprice%5D=1000"
    b"&leads%5Bstatus%5D%5B0%5D%5Blast_modified%5D=1456820780&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=2116"
    b"&leads%5Bstatus%5D%5B0%5D%5Baccount_id%5D=10216991"
    b"&leads%5Bstatus%5D%5B0%5D%5Bcustom_fields%5D%5B0%5D%5Bid%5D=1119321"
    b"&leads%5Bstatus%5D%5B0%5D%5Bcustom_fields%5D%5B0%5D%5Bname%5D=Some+text+field"
    b"&leads%5Bstatus%5D%5B0%5D%5Bcustom_fields%5D%5B0%5D%5Bvalues%5D%5B0%5D%5Bvalue%5D=some+text"
    b"&leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D=10216995&account%5Bsubdomain%5D=test000002"
)


def parse(body: bytes | str, content_type: str = FORM):
    return parse_form(body.encode() if isinstance(body, str) else body, content_type)


def test_a_captured_amocrm_body_nests_as_php_reads_it():
    assert parse(CAPTURED_STATUS) == {
        "leads": {
            "status": [
                {
                    "id": "31926520",
                    "name": "Some test lead",
                    "status_id": "10216994",
                    "price": "1000",
                    "last_modified": "1456820780",
                    "pipeline_id": "2116",
                    "account_id": "10216991",
                    "custom_fields": [
                        {"id": "1119321", "name": "Some text field", "values": [{"value": "some text"}]}
                    ],
                    "old_status_id": "10216995",
                }
            ]
        },
        "account": {"subdomain": "test000002"},
    }


def test_unencoded_brackets_utf8_and_equals_signs_in_values():
    # as a public C# test holds a real body: brackets, Cyrillic and a URL with '=' left unencoded
    body = (
        "leads[status][0][name]=Семинар:+на+результат&leads[status][0][custom_fields][6][values][0][value]="
    )
    body += "https://forms.amocrm.ru/t?dp=Q1z%2BhH&x=1"
    assert parse(body) == {
        "leads": {
            "status": [
                {
                    "name": "Семинар: на результат",
                    "custom_fields": [{"values": [{"value": "https://forms.amocrm.ru/t?dp=Q1z+hH"}]}],
                }
            ]
        },
        "x": "1",
    }


def test_append_and_integer_keys_follow_php():
    assert parse("a[]=1&a[]=2&a[7]=x&a[]=y") == {"a": ["1", "2", "x", "y"]}
    # integer keys keep the order they first appear in; an id used as a key still makes a list
    assert parse("l[35144366][ID]=35144366&l[2][ID]=2") == {"l": [{"ID": "35144366"}, {"ID": "2"}]}
    # a key that is not a canonical integer keeps the container a dict
    assert parse("a[0]=x&a[05]=y") == {"a": {"0": "x", "05": "y"}}
    assert parse("a[0]=x&a[b]=y") == {"a": {"0": "x", "b": "y"}}
    assert parse("a[-1]=x") == {"a": {"-1": "x"}}
    assert parse("0=x&1=y") == {"0": "x", "1": "y"}  # the top level stays a dict


def test_repeated_keys_last_wins_in_place():
    assert parse("a=1&b=2&a=3") == {"a": "3", "b": "2"}
    assert parse("x[0][id]=1&x[0][id]=2") == {"x": [{"id": "2"}]}
    # a later scalar replaces a container and a later container a scalar, as in PHP
    assert parse("a[b]=1&a=2") == {"a": "2"}
    assert parse("a=2&a[b]=1") == {"a": {"b": "1"}}
    assert parse("a[b]=1&a[b][c]=2") == {"a": {"b": {"c": "2"}}}


def test_malformed_keys_are_read_as_php_reads_them():
    assert parse("a[b=1") == {"a_b": "1"}  # an unclosed first bracket is part of the name
    assert parse("a[b]c=1") == {"a": {"b": "1"}}  # text after a closing bracket is ignored
    assert parse("a[b][c=1") == {"a": {"b": "1"}}  # an unclosed later bracket ends the key
    assert parse("a[b[c]]=1") == {"a": {"b[c": "1"}}
    assert parse("=1&[a]=2&[=3&&&flag& c=4") == {"flag": "", "c": "4"}
    assert parse("a[]]=1") == {"a": ["1"]}
    assert parse("") == {}


def test_plus_percent_and_empty_values():
    assert parse("a=x+y%20z&b=&c=%E2%82%AC&d=%zz%4&e=100%25") == {
        "a": "x y z",
        "b": "",
        "c": "€",
        "d": "%zz%4",
        "e": "100%",
    }


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("application/x-www-form-urlencoded; charset=windows-1251", "cp1251"),
        ("application/x-www-form-urlencoded;charset=CP1251", "cp1251"),
        ('Application/X-WWW-Form-Urlencoded; charset="koi8-r"', "koi8_r"),
        ("application/x-www-form-urlencoded; boundary=x; charset=utf-8", "utf-8"),
        ("application/x-www-form-urlencoded", "utf-8"),
    ],
)
def test_the_charset_parameter_decodes_the_values(content_type, encoding):
    body = b"leads[status][0][name]=" + _percent("Сделка Ё".encode(encoding))
    assert parse_form(body, content_type) == {"leads": {"status": [{"name": "Сделка Ё"}]}}


def test_bytes_invalid_in_the_charset_become_replacement_characters():
    body = b"name=" + _percent("Сделка".encode("cp1251")) + b"&id=5"  # cp1251 sent without a charset
    form = parse(body)
    assert form["id"] == "5" and set(form["name"]) == {"\ufffd"}


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("application/x-www-form-urlencoded; charset=klingon", "the charset 'klingon' is unknown"),
        ("application/x-www-form-urlencoded; charset=base64", "the charset 'base64' is unknown"),
        ("application/x-www-form-urlencoded; charset=utf-16", "not ASCII-compatible"),
        ("application/x-www-form-urlencoded; charset=\x00\x01", "the charset given is unknown"),
        ("application/json", "must be application/x-www-form-urlencoded, got 'application/json'"),
        ("", "got none"),
    ],
)
def test_unusable_content_types_are_a_form_error(content_type, message):
    with pytest.raises(FormError, match=message):
        parse_form(b"a=1", content_type)


def test_limits():
    parse_form(b"a=" + b"x" * (MAX_BODY_BYTES - 2), FORM)
    with pytest.raises(FormError, match="larger than 1048576 bytes"):
        parse_form(b"a=" + b"x" * (MAX_BODY_BYTES - 1), FORM)
    assert len(parse_form(b"&".join(b"k%d=1" % i for i in range(MAX_FIELDS)), FORM)) == MAX_FIELDS
    with pytest.raises(FormError, match="more than 10000 fields"):
        parse_form(b"&".join(b"k=1" for _ in range(MAX_FIELDS + 1)), FORM)
    deepest = "a" + "[x]" * MAX_DEPTH
    assert parse(deepest + "=1")["a"]["x"]["x"]
    with pytest.raises(FormError, match="deeper than 32 levels"):
        parse(deepest + "[x]=1")


BODIES = [
    CAPTURED_STATUS,
    amo_status_body(),
    amo_three_leads_body(),
    bitrix_body(),
    bitrix_body("ONCRMLEADADD"),
]
MAPPING = CrmMapping(target_by_status={"142": "purchase", "WON": "purchase"}, client_id_field="_YM_UID")
_NOISE = [
    b"[",
    b"]",
    b"[]",
    b"&",
    b"=",
    b"%",
    b"%E",
    b"%FF",
    b"+",
    b"\x00",
    b"\xff",
    b"\xd0",
    b"0",
    b"[0]",
    b"][",
]


def _mutate(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(data) + 1)
        kind = rng.randrange(6)
        if kind == 0:
            data[at:at] = rng.choice(_NOISE)
        elif kind == 1 and data:
            del data[at : at + rng.randint(1, 12)]
        elif kind == 2 and at < len(data):
            data[at] = rng.randrange(256)
        elif kind == 3:
            start = rng.randrange(len(data) + 1)
            data[at:at] = data[start : start + rng.randint(1, 80)]  # repeat a piece: duplicate keys
        elif kind == 4:
            del data[at:]
        else:
            data[at:at] = b"[x]" * rng.randint(1, 40)
    return bytes(data)


def test_mutated_real_bodies_raise_nothing_but_form_error():
    rng = random.Random(20261126)
    outcomes = {"parsed": 0, "refused": 0}
    for round_ in range(4000):
        body = _mutate(rng.choice(BODIES), rng)
        content_type = FORM if round_ % 5 else f"{FORM}; charset={rng.choice(['cp1251', 'utf-8', 'koi8-r'])}"
        try:
            form = parse_form(body, content_type)
            for event in [*amocrm_events(form), bitrix24_event(form)]:
                map_event(event, MAPPING)
                assert isinstance(event.natural_key, str)
            outcomes["parsed"] += 1
        except FormError as exc:
            assert str(exc)
            outcomes["refused"] += 1
    assert outcomes["parsed"] > 100 and outcomes["refused"] > 100, outcomes


def _percent(raw: bytes) -> bytes:
    return b"".join(b"%%%02X" % byte for byte in raw)
