"""numpy <-> Arrow for the scorer's columns, without loading pandas.

pyarrow imports pandas (when it is installed) the first time ``pa.array`` converts numpy or Python
values, ``pa.scalar`` makes a scalar or ``Array.to_numpy`` runs: about 0.4 s, a tenth of scoring a
1M-visit day as a CLI process.  The scorer only moves fixed-width columns without nulls between the
two, which their buffers do directly, and makes its few scalars from such arrays; with these
helpers a ``metrika-score score --logs-dir`` run never loads pandas (``tests/scorer/test_cli.py``
watches it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

_ARROW: dict[np.dtype[Any], pa.DataType] = {
    np.dtype(np.int8): pa.int8(),
    np.dtype(np.int32): pa.int32(),
    np.dtype(np.int64): pa.int64(),
    np.dtype(np.uint8): pa.uint8(),
    np.dtype(np.uint64): pa.uint64(),
    np.dtype(np.float64): pa.float64(),
}
_NUMPY: dict[pa.DataType, np.dtype[Any]] = {arrow: dtype for dtype, arrow in _ARROW.items()}


def to_numpy(column: pa.Array | pa.ChunkedArray) -> npt.NDArray[Any]:
    """A fixed-width column without nulls (ints, floats; timestamps as int64 seconds) as numpy: a
    read-only view of its buffer, or one copy joining its chunks."""
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 1:
            return to_numpy(column.chunk(0))
        if column.num_chunks == 0:
            return np.zeros(0, dtype=_dtype(column.type))
        return np.concatenate([to_numpy(chunk) for chunk in column.chunks])
    if column.null_count:
        raise ValueError(f"a {column.type} column with nulls")
    dtype = _dtype(column.type)
    return np.frombuffer(
        column.buffers()[1], dtype=dtype, count=len(column), offset=column.offset * dtype.itemsize
    )


def _dtype(arrow: pa.DataType) -> np.dtype[Any]:
    if pa.types.is_timestamp(arrow):
        return np.dtype(np.int64)
    if arrow not in _NUMPY:
        raise TypeError(f"no fixed-width numpy type for {arrow}")
    return _NUMPY[arrow]


def from_numpy(values: npt.NDArray[Any]) -> pa.Array:
    """A 1-d numpy array of a fixed-width type as an Arrow array sharing its memory."""
    values = np.ascontiguousarray(values)
    if values.dtype not in _ARROW:
        raise TypeError(f"no Arrow type for {values.dtype}")
    return pa.Array.from_buffers(_ARROW[values.dtype], values.size, [None, pa.py_buffer(values)])


def strings(values: list[str]) -> pa.Array:
    """Python strings as an Arrow string array."""
    data = [v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(d) for d in data])
    return pa.Array.from_buffers(
        pa.string(), len(data), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    )


def scalar(value: int | str, dtype: npt.DTypeLike = np.int64) -> pa.Scalar:
    """An Arrow scalar (an int of ``dtype``, or a string) for a compute function's argument."""
    if isinstance(value, str):
        return strings([value])[0]
    return from_numpy(np.array([value], dtype=dtype))[0]
