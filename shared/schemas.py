"""Every body that crosses a process boundary: HTTP requests in, AMQP messages between services."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from shared import conversions
from shared.crm.mapping import CrmMapping
from shared.crm.sources import HttpUrlText, Source, webhook_problems

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

MAX_CALLBACK_URL_CHARS = 2048


def _callback_url(value: str) -> str:
    # where the signed summary of a finished task or batch is POSTed (shared/notify.py): an absolute http(s)
    # URL of printable ASCII, with a host and no credentials (they would be stored and shown in status)
    if len(value) > MAX_CALLBACK_URL_CHARS:
        raise ValueError(f"must be at most {MAX_CALLBACK_URL_CHARS} characters")
    if not _TOKEN_CHARS.fullmatch(value):
        raise ValueError("must be printable ASCII without spaces (percent-encode the rest)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError as exc:
        raise ValueError(f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL, e.g. https://example.com/hooks/metrika-score")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials (user:password@): put a token in the path instead")
    return value


CallbackUrl = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(_callback_url)
]


MAX_BACKFILL_DAYS = 365  # days of one backfill, as the Logs API allows in one request


class TaskCreate(BaseModel):
    """POST /tasks: one day (`date`), or a backfill of every day from `date_from` to `date_to` (inclusive,
    at most MAX_BACKFILL_DAYS days): exactly one of the two forms. Days before the counter's local today
    only: the gateway checks that, once it knows the counter's zone (gateway/tasks.py)."""

    model_config = ConfigDict(extra="forbid")

    date: dt.date | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    token: Token | None = None
    counter: CounterId | None = None
    callback_url: CallbackUrl | None = None

    @model_validator(mode="after")
    def _one_form(self) -> TaskCreate:
        ranged = self.date_from is not None or self.date_to is not None
        if self.date is not None and ranged:
            raise ValueError("give either date (one day) or date_from and date_to (a backfill), not both")
        if self.date is None and not ranged:
            raise ValueError("date (one day) or date_from and date_to (a backfill) is required")
        if ranged:
            if self.date_from is None or self.date_to is None:
                raise ValueError("a backfill needs both date_from and date_to")
            if self.date_from > self.date_to:
                raise ValueError("date_from must not be after date_to")
            if (self.date_to - self.date_from).days >= MAX_BACKFILL_DAYS:
                raise ValueError(f"a backfill spans at most {MAX_BACKFILL_DAYS} days; split it")
        return self

    def days(self) -> list[dt.date]:
        """The days to score: `date`, or every day from date_from to date_to."""
        if self.date is not None:
            return [self.date]
        assert self.date_from is not None and self.date_to is not None
        count = (self.date_to - self.date_from).days + 1
        return [self.date_from + dt.timedelta(days=i) for i in range(count)]


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
    callback_url: CallbackUrl | None = None


class UploadCredentials(BaseModel):
    """The non-row fields of POST /conversions/single; the row itself is checked by shared.conversions."""

    model_config = ConfigDict(extra="ignore")

    counter: CounterId | None = None
    token: Token | None = None
    callback_url: CallbackUrl | None = None


class WebhookCreate(BaseModel):
    """POST /webhook/offline-conversions."""

    model_config = ConfigDict(extra="forbid")

    name: Text
    counter_id: CounterId
    token: Token
    description: LongText | None = None
    source: Source = "json"
    mapping: CrmMapping | None = None
    # bitrix24 only: compared with the event's auth[application_token]; the portal's inbound-webhook URL
    application_token: Token | None = None
    bitrix_webhook_url: HttpUrlText | None = None
    callback_url: CallbackUrl | None = None

    @model_validator(mode="after")
    def _fits_source(self) -> WebhookCreate:
        bitrix_only = [n for n in _BITRIX_ONLY if getattr(self, n) is not None]
        problems = webhook_problems(self.source, self.mapping, mapping_given=True, bitrix_only=bitrix_only)
        if problems:
            raise ValueError("; ".join(problems))
        return self


_BITRIX_ONLY = ("application_token", "bitrix_webhook_url")


class WebhookUpdate(BaseModel):
    """PATCH /webhook/offline-conversions/{webhook_id}: the fields given change (at least one); null clears
    `description`, `application_token` and `bitrix_webhook_url`. The source is fixed at creation."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = None
    description: LongText | None = None
    token: Token | None = None
    counter_id: CounterId | None = None
    mapping: CrmMapping | None = None
    is_active: StrictBool | None = None
    application_token: Token | None = None
    bitrix_webhook_url: HttpUrlText | None = None
    callback_url: CallbackUrl | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_source(cls, data: Any) -> Any:
        if isinstance(data, dict) and "source" in data:
            raise ValueError("source is fixed at creation: create another webhook for another source")
        return data

    @model_validator(mode="after")
    def _something(self) -> WebhookUpdate:
        if not self.model_fields_set:
            raise ValueError(
                f"nothing to change: give at least one of {', '.join(WebhookUpdate.model_fields)}"
            )
        for name in ("name", "token", "counter_id", "is_active"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def source_problems(self, source: Source) -> list[str]:
        """Why the fields given do not fit the webhook's source (see shared.crm.sources.webhook_problems)."""
        bitrix_only = [n for n in _BITRIX_ONLY if getattr(self, n) is not None]
        given = "mapping" in self.model_fields_set
        return webhook_problems(source, self.mapping, mapping_given=given, bitrix_only=bitrix_only)

    def changes_credentials(self) -> bool:
        """A token or counter change: applies to the webhook's batches not uploaded yet."""
        return self.token is not None or self.counter_id is not None


class WebhookConversions(BaseModel):
    """POST /webhook/offline-conversions/{webhook_id}: rows stay raw, to be judged one by one."""

    model_config = ConfigDict(extra="ignore")

    conversions: list[Any]


def _time_of_day(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError('must be a time of day "HH:MM", from "00:00" to "23:59"')
    return value


# a schedule's time of day, counter-local
RunTime = Annotated[str, AfterValidator(_time_of_day)]


class ScheduleUpload(BaseModel):
    """What a schedule uploads: every level-4+ visit of a run, as a ClientId conversion of `target`."""

    model_config = ConfigDict(extra="forbid")

    target: GoalTarget


class ScheduleCreate(BaseModel):
    """POST /schedules: every day, once `time` (counter-local) has passed, score the counter's yesterday
    and, with `upload`, upload its level-4+ visits."""

    model_config = ConfigDict(extra="forbid")

    counter: CounterId
    token: Token
    time: RunTime = "03:00"
    upload: ScheduleUpload | None = None
    callback_url: CallbackUrl | None = None


class ScheduleUpdate(BaseModel):
    """PATCH /schedules/{schedule_id}: the fields given change (at least one); `upload: null` stops
    uploading, `callback_url: null` removes it."""

    model_config = ConfigDict(extra="forbid")

    time: RunTime | None = None
    token: Token | None = None
    upload: ScheduleUpload | None = None
    paused: StrictBool | None = None
    callback_url: CallbackUrl | None = None

    @model_validator(mode="after")
    def _something(self) -> ScheduleUpdate:
        if not self.model_fields_set:
            fields = ", ".join(ScheduleUpdate.model_fields)
            raise ValueError(f"nothing to change: give at least one of {fields}")
        for name in ("time", "token", "paused"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self
