from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from shared.conversions import Conversion, Rejected, Rules, check_row, check_rows, parse_price
from shared.currencies import ISO_4217
from shared.schemas import ConversionsBulk

MSK = ZoneInfo("Europe/Moscow")
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
RULES = Rules(MSK, NOW)


def row(**fields):
    return {
        "client_id": "175085690441127503",
        "target": "purchase",
        "date_time": "2026-03-09T12:00:00",
    } | fields


def errors_of(result):
    assert isinstance(result, Rejected), result
    return {e.field: e.reason for e in result.errors}


def test_a_full_valid_row():
    result = check_row(row(price=1500.50, currency="rub", purchase_id="order-1", extra="ignored"), 3, RULES)
    assert result == Conversion(
        index=3,
        id_type="CLIENT_ID",
        identifier="175085690441127503",
        target="purchase",
        date_time=dt.datetime(2026, 3, 9, 9, 0, tzinfo=dt.UTC),
        price=Decimal("1500.5"),
        currency="RUB",
        purchase_id="order-1",
    )
    batch = uuid.uuid4()
    assert result.record(batch) == (
        batch, 3, "CLIENT_ID", "175085690441127503", "purchase", result.date_time, Decimal("1500.5"), "RUB",
        "order-1", "pending", None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-09T12:00:00", dt.datetime(2026, 3, 9, 9, 0, tzinfo=dt.UTC)),  # naive: counter zone (UTC+3)
        ("2026-03-09 12:00", dt.datetime(2026, 3, 9, 9, 0, tzinfo=dt.UTC)),
        ("2026-03-09T12:00:00Z", dt.datetime(2026, 3, 9, 12, 0, tzinfo=dt.UTC)),
        ("2026-03-09T12:00:00+05:00", dt.datetime(2026, 3, 9, 7, 0, tzinfo=dt.UTC)),
        ("20260309T120000", dt.datetime(2026, 3, 9, 9, 0, tzinfo=dt.UTC)),
    ],
)
def test_date_time_with_and_without_zone_becomes_utc(text, expected):
    result = check_row(row(date_time=text), 0, RULES)
    assert isinstance(result, Conversion) and result.date_time == expected
    assert result.date_time.utcoffset() == dt.timedelta(0)


def test_naive_time_follows_the_configured_zone():
    result = check_row(row(date_time="2026-03-09T12:00:00"), 0, Rules(ZoneInfo("Asia/Yekaterinburg"), NOW))
    assert isinstance(result, Conversion) and result.date_time == dt.datetime(2026, 3, 9, 7, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-03-10T12:02:00Z", "future"),
        ("2025-12-01T00:00:00Z", "days old"),
        ("2026-03-09", "ISO 8601"),
        ("yesterday", "ISO 8601"),
        ("2026-02-30T10:00:00", "ISO 8601"),
        ("2026-03-09T12:00:00Z\x00<anything>", "ISO 8601"),  # fromisoformat stopped reading at the NUL
        ("2026-03-09T12:00:00\x00", "ISO 8601"),
        (1741600000, "ISO 8601 string"),
        (None, "is required"),
        ("  ", "is required"),
    ],
)
def test_bad_date_times(value, reason):
    assert reason in errors_of(check_row(row(date_time=value), 0, RULES))["date_time"]


def test_a_little_clock_skew_is_not_the_future():
    # naive Moscow 15:00:30 is 12:00:30 UTC, 30 s after NOW
    assert isinstance(check_row(row(date_time="2026-03-10T15:00:30"), 0, RULES), Conversion)
    assert isinstance(check_row(row(date_time="2026-03-10T15:01:30"), 0, RULES), Rejected)


def test_too_old_says_why():
    reason = errors_of(check_row(row(date_time="2025-01-01T00:00:00Z"), 0, RULES))["date_time"]
    assert "90 days" in reason and "Metrika" in reason


def test_identifier_priority_and_type():
    both = check_row(row(user_id="u-1", yclid="123"), 0, RULES)
    assert isinstance(both, Conversion) and both.id_type == "CLIENT_ID"
    no_client = {k: v for k, v in row(user_id="u-1", yclid="123").items() if k != "client_id"}
    result = check_row(no_client, 0, RULES)
    assert isinstance(result, Conversion) and (result.id_type, result.identifier) == ("USER_ID", "u-1")
    only_yclid = check_row(row(client_id=None, yclid="987"), 0, RULES)
    assert isinstance(only_yclid, Conversion) and only_yclid.id_type == "YCLID"
    # an empty string counts as not given
    blank = check_row(row(client_id="", user_id="u-2"), 0, RULES)
    assert isinstance(blank, Conversion) and blank.id_type == "USER_ID"


def test_an_identifier_is_required():
    result = check_row(row(client_id=None), 0, RULES)
    assert "one of client_id, user_id, yclid, purchase_id" in errors_of(result)["client_id"]
    blank = check_row(row(client_id=" ", purchase_id=""), 0, RULES)
    assert "purchase_id is required" in errors_of(blank)["client_id"]


def test_a_purchase_id_alone_identifies_the_row():
    result = check_row(row(client_id=None, purchase_id=" order-77 "), 4, RULES)
    assert isinstance(result, Conversion)
    assert (result.id_type, result.identifier, result.purchase_id) == ("PURCHASE_ID", "order-77", "order-77")
    batch = uuid.uuid4()
    assert result.record(batch)[2:4] == ("PURCHASE_ID", "order-77") and result.record(batch)[8] == "order-77"
    # a JSON integer is its digits; up to 255 characters, as an attribute
    number = check_row({k: v for k, v in row(purchase_id=10**200).items() if k != "client_id"}, 0, RULES)
    assert isinstance(number, Conversion) and (number.id_type, number.identifier) == (
        "PURCHASE_ID",
        "1" + "0" * 200,
    )


def test_another_identifier_wins_over_purchase_id():
    for ids, expected in (
        ({"client_id": "42"}, ("CLIENT_ID", "42")),
        ({"client_id": None, "user_id": "u-1"}, ("USER_ID", "u-1")),
        ({"client_id": "", "yclid": "987"}, ("YCLID", "987")),
    ):
        result = check_row(row(purchase_id="order-1", **ids), 0, RULES)
        assert isinstance(result, Conversion) and (result.id_type, result.identifier) == expected
        assert result.purchase_id == "order-1"


def test_a_broken_purchase_id_alone_is_reported_once_and_names_the_row():
    result = check_row(row(client_id=None, purchase_id="p" * 256), 0, RULES)
    assert set(errors_of(result)) == {"purchase_id"}
    rejected = check_row(row(client_id=None, purchase_id="order-9", target=""), 0, RULES)
    assert isinstance(rejected, Rejected) and (rejected.id_type, rejected.identifier) == (
        "PURCHASE_ID",
        "order-9",
    )


def test_integer_ids_are_exact_and_floats_refused():
    big = 2**64 - 1
    result = check_row(row(client_id=big), 0, RULES)
    assert isinstance(result, Conversion) and result.identifier == "18446744073709551615"
    huge = check_row(row(client_id=10**40 + 1), 0, RULES)
    assert isinstance(huge, Conversion) and huge.identifier == "1" + "0" * 39 + "1"
    for value in (1.75085690441127e17, 123.0, 1.5):
        assert "fraction or exponent" in errors_of(check_row(row(client_id=value), 0, RULES))["client_id"]
    assert "must be a string" in errors_of(check_row(row(client_id=True), 0, RULES))["client_id"]
    assert "must be a string" in errors_of(check_row(row(user_id={"a": 1}), 0, RULES))["user_id"]


def test_identifier_limits_and_every_given_id_is_checked():
    assert "128" in errors_of(check_row(row(client_id="1" * 129), 0, RULES))["client_id"]
    assert isinstance(check_row(row(client_id="1" * 128), 0, RULES), Conversion)
    assert "control" in errors_of(check_row(row(client_id="12\n34"), 0, RULES))["client_id"]
    # a valid client_id does not hide a broken user_id
    assert "user_id" in errors_of(check_row(row(user_id=1.5), 0, RULES))


def test_integers_obey_the_text_limits():
    """A JSON integer is taken as its digits, under the same length limit, and never negative."""
    assert isinstance(check_row(row(client_id=10**127), 0, RULES), Conversion)  # 128 digits
    for value in (10**128, 10**4299):  # 129 digits, and the 4,300 digits json.loads still reads
        assert "128" in errors_of(check_row(row(client_id=value), 0, RULES))["client_id"]
    for field in ("client_id", "user_id", "yclid", "purchase_id", "target"):
        assert "negative" in errors_of(check_row(row(**{field: -5}), 0, RULES))[field]
    assert "255" in errors_of(check_row(row(purchase_id=10**255), 0, RULES))["purchase_id"]
    assert "255" in errors_of(check_row(row(target=10**255), 0, RULES))["target"]


def test_target_rules():
    assert errors_of(check_row(row(target=""), 0, RULES))["target"] == "is required"
    assert errors_of(check_row(row(target=None), 0, RULES))["target"] == "is required"
    assert "255" in errors_of(check_row(row(target="t" * 256), 0, RULES))["target"]
    assert "control" in errors_of(check_row(row(target="a\tb"), 0, RULES))["target"]
    assert "must be a string" in errors_of(check_row(row(target=["x"]), 0, RULES))["target"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "negative"),
        (-0.01, "negative"),
        ("100", "number"),
        (True, "number"),
        (float("nan"), "finite"),
        (10**12 + 1, "10^12"),
        (1e308, "10^12"),
        (10**30, "10^12"),
    ],
)
def test_bad_prices(value, reason):
    assert reason in errors_of(check_row(row(price=value), 0, RULES))["price"]


def test_prices_keep_what_was_written():
    assert parse_price(0) == Decimal(0)
    assert str(parse_price(0.1)) == "0.1"
    assert str(parse_price(1500.50)) == "1500.5"
    assert parse_price(10**12) == Decimal(10**12) and parse_price(1e12) == Decimal(10**12)
    assert isinstance(check_row(row(price=None, currency=None, purchase_id=""), 0, RULES), Conversion)


def test_currency_codes():
    assert {"RUB", "USD", "EUR", "KZT", "BYN", "CNY"} <= ISO_4217
    assert all(len(code) == 3 and code.isupper() for code in ISO_4217)
    for bad in ("RUR", "XYZ", "RUBLES", 643, "HRK"):
        assert "ISO 4217" in errors_of(check_row(row(currency=bad), 0, RULES))["currency"]
    result = check_row(row(currency=" usd "), 0, RULES)
    assert isinstance(result, Conversion) and result.currency == "USD"


def test_purchase_id_is_optional_and_bounded():
    assert "255" in errors_of(check_row(row(purchase_id="p" * 256), 0, RULES))["purchase_id"]
    result = check_row(row(purchase_id=42), 0, RULES)
    assert isinstance(result, Conversion) and result.purchase_id == "42"


def test_a_row_must_be_an_object_and_every_problem_is_reported():
    rejected = check_row(["not", "an", "object"], 7, RULES)
    assert isinstance(rejected, Rejected) and rejected.errors[0].as_dict() == {
        "index": 7,
        "field": None,
        "reason": "each conversion must be a JSON object",
    }
    many = check_row({"user_id": "u", "price": -1, "currency": "ZZZ"}, 2, RULES)
    assert set(errors_of(many)) == {"target", "date_time", "price", "currency"}
    assert isinstance(many, Rejected) and (many.id_type, many.identifier) == ("USER_ID", "u")
    batch = uuid.uuid4()
    record = many.record(batch)
    assert record[:4] == (batch, 2, "USER_ID", "u") and record[9] == "error"
    assert record[10].startswith("target: is required; date_time: is required; price: must not be negative")


def test_check_rows_splits_valid_and_rejected_by_position():
    checked = check_rows([row(), row(target=""), row(), 5], RULES)
    assert [c.index for c in checked.valid] == [0, 2]
    assert [r.index for r in checked.rejected] == [1, 3]
    assert [e.index for e in checked.errors] == [1, 3]


def test_bulk_target_uses_the_same_rule():
    with pytest.raises(ValueError, match="control"):
        ConversionsBulk.model_validate({"task_id": str(uuid.uuid4()), "target": "4p\nlus"})
    with pytest.raises(ValueError):
        ConversionsBulk.model_validate({"task_id": str(uuid.uuid4()), "target": "   "})
    body = ConversionsBulk.model_validate({"task_id": str(uuid.uuid4()), "target": " 4plus "})
    assert body.target == "4plus"


# values each field may carry: usual ones, edge cases, and wrong types
_VARIANTS = {
    "client_id": [
        None,
        "",
        "  ",
        "175085690441127503",
        " 42 ",
        18446744073709551615,
        10**127,  # 128 digits: the limit
        10**128,
        10**4299,
        -5,
        1.5,
        True,
        "x" * 129,
        "a\x00b",
        "\ud800",
        ["1"],
    ],
    "user_id": [None, "", "crm-user-1", "x" * 128, "\x7f", 0, -1],
    "yclid": [None, "9876543210123456789", " ", {}, 10**200],
    "target": [None, "", "purchase", " lead ", "x" * 255, "x" * 256, "a\nb", 5, -5, 10**255],
    "date_time": [
        None,
        "",
        "2026-03-09T12:00:00",
        "2026-03-09 12:00:00+03:00",
        "2026-03-09T09:00:00Z",
        "2026-03-09",
        "2026-03-11T12:00:00",
        "2025-01-01T00:00:00",
        "garbage",
        1741512000,
        "2026-03-09T09:00:00Z\x00<anything>",
        "2026-03-09T12:00:00\x00",
    ],
    "price": [
        None,
        "",
        0,
        1500,
        1500.5,
        -1,
        -0.0,
        0.1,
        float("nan"),
        float("inf"),
        1e308,
        "12",
        True,
        10**30,
        10**12,
        1e12,
        10**12 + 1,
        1000000000000.0002,
    ],
    "currency": [None, "", "RUB", "rub", " usd ", "XXX", "ZZZ", 643, "RUBLE"],
    "purchase_id": [None, "", "order-1", " p ", "x" * 256, "a\tb", 7, -7, 10**254, 10**255],
}


_USUAL = {
    "client_id": ["175085690441127503", " 42 "],
    "user_id": [None, "crm-user-1"],
    "yclid": [None, "9876543210123456789"],
    "target": ["purchase", " lead "],
    "date_time": ["2026-03-09T12:00:00", "2026-03-09T09:00:00Z"],
    "price": [None, 1500.5, 0, 10**12],
    "currency": [None, "RUB"],
    "purchase_id": [None, "order-1"],
}


def test_the_fast_path_agrees_with_the_field_by_field_judge():
    """check_row takes a fast path (_usual_row) for rows of usual types; it must accept exactly what the
    field-by-field judge accepts, with the same values, and refuse (fall back) on anything else."""
    import random

    from shared.conversions import _judge_row, _usual_row

    rng = random.Random(7)
    fast_hits = 0
    by_purchase_id = 0
    for _ in range(30_000):
        # each field half the time usual, so that whole valid rows come up often next to odd ones
        raw = {
            name: rng.choice(_USUAL[name] if rng.random() < 0.5 else values)
            for name, values in _VARIANTS.items()
        }
        if rng.random() < 0.3:  # no usual identifier: purchase_id decides, or nothing does
            for name in ("client_id", "user_id", "yclid"):
                raw[name] = rng.choice(
                    [None, "", "  ", raw[name]] if rng.random() < 0.2 else [None, "", "  "]
                )
        raw = {name: value for name, value in raw.items() if value is not None or rng.random() < 0.5}
        judged = _judge_row(raw, 3, RULES)
        usual = _usual_row(raw, RULES)
        if usual is not None:
            fast_hits += 1
            by_purchase_id += usual[0] == "PURCHASE_ID"
            assert judged == Conversion(3, *usual), raw
        assert check_row(raw, 3, RULES) == judged, raw
    # the fast path must really be taken for ordinary rows, not only be harmless
    assert fast_hits >= 50
    assert by_purchase_id >= 20
    assert _usual_row(row(price=1500.5, currency="RUB", purchase_id="p1"), RULES) is not None
    assert _usual_row(row(client_id=None, purchase_id="p1"), RULES) is not None
