from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import get_args

from shared.conversions import IdType
from uploader import csvfile


def test_one_identifier_column_unix_seconds_and_quoting():
    rows = [
        {
            "identifier": "18446744073709551615",
            "target": "purchase",
            "date_time": dt.datetime(2025, 7, 1, 9, 34, 56, tzinfo=dt.UTC),
            "price": Decimal("1500.50"),
            "currency": "RUB",
        },
        {
            "identifier": "user,1",
            "target": "lead",
            "date_time": dt.datetime(2025, 7, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=3))),
            "price": None,
            "currency": None,
        },
    ]
    text = csvfile.build("CLIENT_ID", rows).decode()
    assert text.splitlines() == [
        "ClientId,Target,DateTime,Price,Currency",
        "18446744073709551615,purchase,1751362496,1500.5,RUB",
        '"user,1",lead,1751362200,,',
    ]
    assert csvfile.build("YCLID", rows[:1]).decode().startswith("Yclid,Target,")
    assert csvfile.build("USER_ID", rows[:1]).decode().startswith("UserId,Target,")
    assert csvfile.build("PURCHASE_ID", rows[:1]).decode().startswith("PurchaseId,Target,")


def test_every_identifier_type_has_its_one_column():
    assert set(csvfile.ID_COLUMNS) == set(get_args(IdType))
    for id_type, column in csvfile.ID_COLUMNS.items():
        row = {"identifier": "x", "target": "t", "date_time": dt.datetime(2025, 7, 1, tzinfo=dt.UTC)}
        header = csvfile.build(id_type, [row | {"price": None, "currency": None}]).decode().splitlines()[0]
        assert header == f"{column},Target,DateTime,Price,Currency"  # no second identifier column
