"""Text -> numbers for the scorer: decimal UInt64 ids, id arrays like ``[1,2,3]``, and date-times.

Input is an Arrow binary or string column (``scorer.tsv`` reads these columns as binary: no UTF-8
check of bytes that must be digits anyway), or a pandas text column, handed over without a copy.
The bytes are checked with numpy (digits only; the one date-time layout), then Arrow converts
them: ids become exact uint64 (never via float or int64, so a 20-digit id above 2**63 stays
exact), date-times seconds since 1970-01-01 on the counter's own clock (Arrow refuses impossible
dates such as Feb 30).  ``ym:s:watchIDs`` arrays are split by Arrow's string kernels.  Anything
else raises ``FeatureError`` naming the column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from scorer import arrays

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

MAX_DIGITS = 20  # 2**64 - 1 = 18446744073709551615
_LENGTH = {pa.binary(): np.int32, pa.large_binary(): np.int64}  # binary_length's type
_DATETIME_WIDTH = len("2024-03-01 10:00:00")
_DATE_END = len("2024-03-01")


class FeatureError(ValueError):
    """Input that cannot be turned into features (malformed ids, id arrays or dates)."""


def as_arrow(values: Any) -> pa.Array:
    """A text column (Arrow array, chunked array, pandas Series, numpy or list of str) as one Arrow
    binary array, without a copy where the data is already one Arrow array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    elif not isinstance(values, pa.Array):
        if type(values).__module__.startswith("pandas"):  # a Series: its Arrow data, no copy
            values = values.array
        values = pa.array(values, type=pa.string(), from_pandas=True)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
    if pa.types.is_string(values.type):
        return values.view(pa.binary())
    if pa.types.is_large_string(values.type):
        return values.view(pa.large_binary())
    if not (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
        raise FeatureError(f"expected text, got {values.type}")
    return values


def _bytes(values: pa.Array) -> tuple[npt.NDArray[np.int64], U8]:
    """Value lengths and the bytes of all values (in order, back to back), as numpy views."""
    n = len(values)
    _, offsets_buf, data = values.buffers()
    offset_type = np.int64 if pa.types.is_large_binary(values.type) else np.int32
    width = np.dtype(offset_type).itemsize
    offsets = np.frombuffer(offsets_buf, dtype=offset_type, count=n + 1, offset=values.offset * width)
    if n == 0 or data is None:
        return np.zeros(n, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    raw = np.frombuffer(data, dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
    return np.diff(offsets).astype(np.int64, copy=False), raw


def _check_nulls(values: pa.Array, what: str) -> None:
    if values.null_count:
        raise FeatureError(f"{what}: missing value")


def _per_chunk(values: Any) -> list[pa.Array] | None:
    """The chunks of a chunked Arrow column (parsed one by one: no copy into one array), else None."""
    if isinstance(values, pa.ChunkedArray) and values.num_chunks > 1:
        return list(values.chunks)
    return None


def uint64s(values: Any, what: str = "id") -> U64:
    """One decimal UInt64 per value (e.g. ym:pv:watchID) as exact uint64."""
    chunks = _per_chunk(values)
    if chunks is not None:
        return np.concatenate([uint64s(c, what) for c in chunks])
    values = as_arrow(values)
    _check_nulls(values, what)
    lengths, raw = _bytes(values)
    if lengths.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if int(lengths.min()) < 1:
        raise FeatureError(f"{what}: empty id")
    if int(lengths.max()) > MAX_DIGITS:
        raise FeatureError(f"{what}: id with {int(lengths.max())} digits does not fit UInt64")
    if int(raw.min()) < ord("0") or int(raw.max()) > ord("9"):
        raise FeatureError(f"{what}: expected decimal ids (digits only)")
    try:
        ids: U64 = arrays.to_numpy(pc.cast(values, pa.uint64()))
    except pa.ArrowInvalid as exc:
        raise FeatureError(f"{what}: id does not fit UInt64") from exc
    return ids


def datetimes(values: Any, what: str = "dateTime") -> I64:
    """'YYYY-MM-DD HH:MM:SS' (counter-local, naive) as seconds since 1970-01-01 on that same clock."""
    chunks = _per_chunk(values)
    if chunks is not None:
        return np.concatenate([datetimes(c, what) for c in chunks])
    values = as_arrow(values)
    _check_nulls(values, what)
    lengths, raw = _bytes(values)
    if lengths.size == 0:
        return np.zeros(0, dtype=np.int64)
    if int(lengths.min()) != _DATETIME_WIDTH or int(lengths.max()) != _DATETIME_WIDTH:
        raise FeatureError(f"{what}: expected date-times like 2024-03-01 10:00:00")
    # Of the 19-byte spellings Arrow's ISO 8601 parser takes, only 'T' in place of the space is not ours.
    if not bool(np.all(raw[_DATE_END::_DATETIME_WIDTH] == ord(" "))):
        raise FeatureError(f"{what}: expected date-times like 2024-03-01 10:00:00")
    text = values.view(pa.large_string() if pa.types.is_large_binary(values.type) else pa.string())
    try:
        stamps = pc.cast(text, pa.timestamp("s"))  # Arrow's ISO 8601 parser reads the bytes as they are
    except pa.ArrowInvalid as exc:
        raise FeatureError(f"{what}: invalid date-time ({exc})") from exc
    seconds: I64 = arrays.to_numpy(stamps)
    return seconds


def id_lists(values: Any, what: str = "ym:s:watchIDs") -> tuple[U64, I64]:
    """ClickHouse arrays '[1,2,3]' (or '[]') as (all ids in order, how many each row lists)."""
    chunks = _per_chunk(values)
    if chunks is not None:
        parsed = [id_lists(c, what) for c in chunks]
        return np.concatenate([ids for ids, _ in parsed]), np.concatenate([n for _, n in parsed])
    values = as_arrow(values)
    _check_nulls(values, what)
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    if not pc.all(pc.and_(pc.starts_with(values, "["), pc.ends_with(values, "]"))).as_py():
        raise FeatureError(f"{what}: expected arrays of decimal ids like [1,2,3]")
    inner = pc.binary_slice(values, 1, -1)
    # '[]' lists nothing; as null it splits into no element at all (an empty string would give one).
    empty = pc.equal(pc.binary_length(inner), arrays.scalar(0, _LENGTH[inner.type]))
    inner = pc.if_else(empty, pa.nulls(1, inner.type)[0], inner)
    split = pc.split_pattern(inner, ",")
    lengths = pc.fill_null(pc.list_value_length(split), arrays.scalar(0, np.int32))
    per_row: I64 = arrays.to_numpy(lengths).astype(np.int64)
    try:
        ids = uint64s(pc.list_flatten(split), what)
    except FeatureError as exc:
        raise FeatureError(f"{what}: expected arrays of decimal ids like [1,2,3] ({exc})") from exc
    return ids, per_row
