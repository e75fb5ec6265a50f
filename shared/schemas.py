"""Every body that crosses a process boundary: HTTP requests in, AMQP messages between services."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)

from shared import conversions

_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


def _token_text(value: str) -> str:
    # a token goes into an Authorization header: CR, LF or NUL would only fail later, at Metrika's door
    if not _TOKEN_CHARS.fullmatch(value):
        raise ValueError("must be printable ASCII without spaces or control characters")
    return value


Token = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512), AfterValidator(_token_text)
]
CounterId = Annotated[int, Field(gt=0, lt=2**32)]


class TaskCreate(BaseModel):
    """POST /tasks."""

    model_config = ConfigDict(extra="forbid")

    date: dt.date
    token: Token | None = None
    counter: CounterId | None = None

    @field_validator("date")
    @classmethod
    def _past_only(cls, value: dt.date) -> dt.date:
        if value >= dt.date.today():
            raise ValueError("date must be in the past: the Logs API has no data for today or later")
        return value


class ScoreTask(BaseModel):
    """Message on the score_tasks queue."""

    task_id: uuid.UUID


class UploadBatches(BaseModel):
    """Message on the conversion_uploads queue: stored batches of conversions to send to Metrika (the
    batches the gateway stored in one commit travel in one message)."""

    batch_ids: list[uuid.UUID] = Field(min_length=1)


def _storable(value: str) -> str:
    # Postgres text cannot hold NUL; other control characters have no business in a name either
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", value):
        raise ValueError("must not contain control characters")
    return value


GoalTarget = Annotated[str, AfterValidator(conversions.parse_target)]
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), AfterValidator(_storable)
]
LongText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=1000), AfterValidator(_storable)
]


class ConversionsBulk(BaseModel):
    """POST /conversions/bulk: every level-4+ visit of a completed task becomes a conversion."""

    model_config = ConfigDict(extra="forbid")

    task_id: uuid.UUID
    target: GoalTarget
    counter: CounterId | None = None
    token: Token | None = None


class UploadCredentials(BaseModel):
    """The non-row fields of POST /conversions/single; the row itself is checked by shared.conversions."""

    model_config = ConfigDict(extra="ignore")

    counter: CounterId | None = None
    token: Token | None = None


class WebhookCreate(BaseModel):
    """POST /webhook/offline-conversions."""

    model_config = ConfigDict(extra="forbid")

    name: Text
    counter_id: CounterId
    token: Token
    description: LongText | None = None


class WebhookUpdate(BaseModel):
    """PATCH /webhook/offline-conversions/{webhook_id}."""

    model_config = ConfigDict(extra="forbid")

    is_active: StrictBool


class WebhookConversions(BaseModel):
    """POST /webhook/offline-conversions/{webhook_id}: rows stay raw, to be judged one by one."""

    model_config = ConfigDict(extra="ignore")

    conversions: list[Any]
