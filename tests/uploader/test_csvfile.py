from __future__ import annotations

import datetime as dt
from decimal import Decimal

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
