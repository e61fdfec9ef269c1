"""PostgreSQL's binary COPY format for fixed-width rows, encoded and decoded with numpy.

A year of minute rows is half a million tuples; building or parsing them one Python object at a
time costs seconds. When every row has the same byte layout (fixed-width columns, arrays of one
length, no NULLs) the whole COPY stream is one numpy structured array, so it is encoded or
decoded in a single vectorised step. The layout is checked field by field on the way in, so a
row that does not fit (a NULL, another array length) raises instead of being misread.

Format: https://www.postgresql.org/docs/current/sql-copy.html (Binary Format) and array_send.
"""

from __future__ import annotations

import numpy as np
import psycopg

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER = SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # no flags, no extension
TRAILER = b"\xff\xff"
FLOAT8_OID = 701
#: timestamptz is microseconds since 2000-01-01 UTC.
PG_EPOCH_US = 946_684_800 * 1_000_000


class CopyLayoutError(RuntimeError):
    """A binary COPY stream that does not have the fixed layout the reader expected."""


def float8_field(name: str) -> list[tuple]:
    return [(f"{name}_len", ">i4"), (name, ">f8")]


def int8_field(name: str) -> list[tuple]:
    return [(f"{name}_len", ">i4"), (name, ">i8")]


def text_field(name: str, size: int) -> list[tuple]:
    return [(f"{name}_len", ">i4"), (name, f"S{size}")] if size else [(f"{name}_len", ">i4")]


def float8_array_field(name: str, length: int) -> list[tuple]:
    """A one-dimensional float8[] of ``length`` non-NULL elements."""
    element = np.dtype([("len", ">i4"), ("value", ">f8")])
    return [
        (f"{name}_len", ">i4"),
        (f"{name}_ndim", ">i4"),
        (f"{name}_hasnull", ">i4"),
        (f"{name}_oid", ">i4"),
        (f"{name}_dim", ">i4"),
        (f"{name}_lbound", ">i4"),
        (name, element, (length,)),
    ]


def row_dtype(fields: list[list[tuple]]) -> np.dtype:
    return np.dtype([("nfields", ">i2"), *[part for field in fields for part in field]])


def to_pg_timestamps(stamps_ns: np.ndarray) -> np.ndarray:
    """Nanoseconds since 1970 (pandas) to timestamptz's microseconds since 2000."""
    return stamps_ns // 1000 - PG_EPOCH_US


def from_pg_timestamps(stamps_us: np.ndarray) -> np.ndarray:
    return (stamps_us.astype(np.int64) + PG_EPOCH_US) * 1000


def fill_lengths(rows: np.ndarray) -> None:
    """Set every length word and array header of ``rows`` from its dtype (values set apart)."""
    dtype = rows.dtype
    rows["nfields"] = sum(1 for name in dtype.names if name.endswith("_len"))
    for name in dtype.names:
        if not name.endswith("_len"):
            continue
        base = name[: -len("_len")]
        if f"{base}_ndim" in dtype.names:
            length = dtype[base].shape[0]
            rows[name] = 20 + 12 * length
            rows[f"{base}_ndim"] = 1
            rows[f"{base}_hasnull"] = 0
            rows[f"{base}_oid"] = FLOAT8_OID
            rows[f"{base}_dim"] = length
            rows[f"{base}_lbound"] = 1
            rows[base]["len"] = 8
        elif base in dtype.names:
            rows[name] = dtype[base].itemsize
        else:
            rows[name] = 0  # an empty text value


def encode(rows: np.ndarray) -> bytes:
    """The whole COPY stream as one bytes object (small payloads, tests)."""
    return HEADER + rows.tobytes() + TRAILER


def _body(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    if bytes(view[:11]) != SIGNATURE:
        raise CopyLayoutError("not a PostgreSQL binary COPY stream (bad signature)")
    extension = int.from_bytes(view[15:19], "big")
    start = 19 + extension
    if bytes(view[-2:]) != TRAILER:
        raise CopyLayoutError("binary COPY stream without its trailer (truncated?)")
    return view[start:-2]


def decode(data: bytes | bytearray | memoryview, dtype: np.dtype) -> np.ndarray:
    """The rows of a binary COPY stream laid out as ``dtype``, with every length word checked."""
    body = _body(data)
    if len(body) % dtype.itemsize:
        raise CopyLayoutError(
            f"binary COPY body of {len(body)} bytes is not a whole number of {dtype.itemsize}-byte"
            " rows (a NULL or an array of another length?)"
        )
    rows = np.frombuffer(body, dtype=dtype)
    expected = np.zeros(1, dtype=dtype)
    fill_lengths(expected)
    for name in dtype.names:
        if name == "nfields" or name.endswith(("_len", "_ndim", "_hasnull", "_oid", "_dim")):
            if not np.all(rows[name] == expected[name][0]):
                raise CopyLayoutError(f"binary COPY rows do not match the layout at {name!r}")
        elif dtype[name].names and not np.all(rows[name]["len"] == 8):
            # an array element whose length word is not 8 bytes is a NULL
            raise CopyLayoutError(f"binary COPY array {name!r} holds NULL elements")
    return rows


def first_array_length(data: bytes | bytearray | memoryview, offset: int) -> int:
    """The dimension of the array whose length word starts ``offset`` bytes into the first row."""
    body = _body(data)
    if len(body) < offset + 24:
        return 0
    return int.from_bytes(body[offset + 16 : offset + 20], "big", signed=True)


def copy_out(conn: psycopg.Connection, query: str, params: object = None) -> bytes:
    """``COPY (query) TO STDOUT (FORMAT binary)`` into one bytes object."""
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)", params) as copy,
    ):
        return b"".join(copy)


def new_rows(count: int, dtype: np.dtype, **constants: bytes) -> np.ndarray:
    """``count`` rows of ``dtype`` with every length word and the given constant fields set.

    One row is filled field by field, then copied to all rows in a single pass (filling each
    field across half a million rows would walk the whole buffer once per field).
    """
    template = np.zeros(1, dtype=dtype)
    fill_lengths(template)
    for name, value in constants.items():
        if value:
            template[name] = value
    rows = np.empty(count, dtype=dtype)
    rows[...] = template[0]
    return rows


def copy_in(conn: psycopg.Connection, table_columns: str, rows: np.ndarray) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT binary)`` of rows laid out by :func:`row_dtype`.

    The rows' buffer is sent as it is (in chunks), without a copy into one bytes object.
    """
    chunk = 1 << 22
    body = memoryview(np.ascontiguousarray(rows).view(np.uint8))
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY {table_columns} FROM STDIN (FORMAT binary)") as copy,
    ):
        copy.write(HEADER)
        for start in range(0, len(body), chunk):
            copy.write(body[start : start + chunk])
        copy.write(TRAILER)
