"""Every body that crosses a process boundary: HTTP requests in, AMQP messages between services."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512)]
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


class UploadBatch(BaseModel):
    """Message on the conversion_uploads queue: a stored batch of conversions to send to Metrika."""

    batch_id: uuid.UUID
