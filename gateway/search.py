"""GET /search: conversion rows of uploads and webhook batches, found by an identifier, newest first.

A row keeps one identifier with its type (the first of client_id, user_id, yclid it was sent with), so
`client_id` finds the rows identified by that ClientID; `purchase_id` any row carrying it; `crm_id` the rows
of CRM webhooks made from that lead or deal (its id is the row's purchase_id). Several filters must all
match. Ids are compared as the exact text they were stored as."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field, field_validator, model_validator

from gateway import keys, pages
from gateway.bodies import parse_query
from shared.db import listings

FILTERS = ("client_id", "user_id", "yclid", "purchase_id", "crm_id")
_ID_FIELDS = {"CLIENT_ID": "client_id", "USER_ID": "user_id", "YCLID": "yclid"}
MAX_ID_CHARS = 255


class SearchQuery(pages.PageQuery):
    client_id: str | None = Field(None, max_length=MAX_ID_CHARS)
    user_id: str | None = Field(None, max_length=MAX_ID_CHARS)
    yclid: str | None = Field(None, max_length=MAX_ID_CHARS)
    purchase_id: str | None = Field(None, max_length=MAX_ID_CHARS)
    crm_id: str | None = Field(None, max_length=MAX_ID_CHARS)

    @field_validator(*FILTERS, mode="before")
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @model_validator(mode="after")
    def _one_at_least(self) -> SearchQuery:
        if all(getattr(self, name) is None for name in FILTERS):
            raise ValueError(f"give at least one of {', '.join(FILTERS)}")
        return self


async def search(request: web.Request) -> web.Response:
    query = parse_query(request, SearchQuery)
    filters = {name: getattr(query, name) for name in FILTERS}
    queries = listings.search_queries(filters, query.limit, query.offset)
    total, rows = await listings.page(request.app[keys.PG_POOL], queries)
    return pages.answer([_item(row) for row in rows], total, query)


def _item(row: Any) -> dict[str, Any]:
    webhook = row["source"] == "webhook"
    item: dict[str, Any] = {"kind": "webhook_batch" if webhook else "upload"}
    item["batch_id" if webhook else "upload_id"] = str(row["batch_id"])
    item["webhook_id"] = str(row["webhook_id"]) if row["webhook_id"] else None
    item["row"] = row["idx"]
    ids = dict.fromkeys(_ID_FIELDS.values())
    if row["id_type"] in _ID_FIELDS:
        ids[_ID_FIELDS[row["id_type"]]] = row["identifier"]
    item.update(ids)
    item["purchase_id"] = row["purchase_id"]
    item["crm_id"] = row["purchase_id"] if row["from_crm"] else None
    item["target"] = row["target"]
    item["status"] = row["status"]
    item["error"] = row["reason"]
    item["created_at"] = pages.timestamp(row["created_at"])
    return item
