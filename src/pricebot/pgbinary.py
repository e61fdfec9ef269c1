"""PostgreSQL's binary formats for fixed-width rows, encoded and decoded with numpy.

A year of minute rows is half a million tuples; building or parsing them one Python object at a
time costs seconds. When every row has the same byte layout (fixed-width columns, arrays of one
length, no NULLs) the rows are one numpy structured array, encoded or decoded in a single
vectorised step. Layouts are checked field by field, so a row that does not fit (a NULL, another
array length) raises instead of being misread.

Writing uses binary ``COPY ... FROM STDIN``. Reading does not use ``COPY ... TO STDOUT``: libpq
hands a COPY out one row per call, which costs about 2 us a row in the client (a second for a
year). Instead :func:`read_packed` has the server pack each row with the types' binary send
functions (``timestamptz_send``, ``float8send``, ``array_send``) and ``string_agg`` them into one
``bytea`` per chunk of rows: one value per million rows crosses the wire.

Formats: https://www.postgresql.org/docs/current/sql-copy.html (Binary Format); the send
functions are the binary I/O of each type (src/backend/utils/adt).
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
    """Binary rows that do not have the fixed layout the reader expected."""


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


#: Rows per packed value: a million feature rows are ~240 MB, well below bytea's 1 GB limit.
PACKED_CHUNK_ROWS = 1_000_000
_SEND = {
    "timestamptz": "timestamptz_send",
    "float8": "float8send",
    "float8[]": "array_send",
    "xid": "xidsend",
}


def packed_dtype(columns: list[tuple[str, str, str]], array_length: int = 0) -> np.dtype:
    """The layout of rows packed by :func:`read_packed` (``array_send`` has no length word)."""
    fields: list[tuple] = []
    for name, _, kind in columns:
        if kind == "timestamptz":
            fields.append((name, ">i8"))
        elif kind == "float8":
            fields.append((name, ">f8"))
        elif kind == "float8[]":
            fields += float8_array_field(name, array_length)[1:]
        elif kind == "xid":  # a transaction id (``xmin``): unsigned 32 bits
            fields.append((name, ">u4"))
        else:
            raise ValueError(f"cannot pack {kind!r}")
    return np.dtype(fields)


def read_packed(
    conn: psycopg.Connection,
    source: str,
    params: list,
    columns: list[tuple[str, str, str]],
    array_length: int = 0,
) -> np.ndarray:
    """Rows of ``SELECT <columns> FROM <source>`` ordered by ``open_time``, as one numpy array.

    ``columns``: (name, SQL expression, kind) with kind ``timestamptz``, ``float8``,
    ``float8[]`` (of ``array_length``) or ``xid`` (a row version's ``xmin``, which tells whether
    the row was written again since it was last seen); the first must be ``open_time``.
    ``source`` is the ``FROM ... WHERE ...`` text with ``%s`` placeholders for ``params``.
    Chunks are paged by open time; the order is checked (and restored) on the client, so it
    does not rest on how the server feeds the aggregate.
    """
    if columns[0][0] != "open_time" or columns[0][2] != "timestamptz":
        raise ValueError("the first packed column must be open_time (timestamptz)")
    dtype = packed_dtype(columns, array_length)
    inner = ", ".join(f"{sql} AS {name}" for name, sql, _ in columns)
    packed = " || ".join(f"{_SEND[kind]}({name})" for name, _, kind in columns)
    chunks, after = [], None
    while True:
        page = "" if after is None else " AND open_time > %s"
        query = (
            f"SELECT string_agg({packed}, ''::bytea), count(*), max(open_time) FROM "
            f"(SELECT {inner} {source}{page} ORDER BY open_time LIMIT {PACKED_CHUNK_ROWS}) AS page"
        )
        data, count, last = conn.execute(
            query, [*params, *([] if after is None else [after])], binary=True
        ).fetchone()
        if count:
            chunks.append(_unpack(data, dtype, array_length))
        if count < PACKED_CHUNK_ROWS:
            break
        after = last
    rows = chunks[0] if len(chunks) == 1 else np.concatenate([np.zeros(0, dtype), *chunks])
    stamps = rows["open_time"]
    if len(stamps) > 1 and not np.all(stamps[1:] > stamps[:-1]):
        rows = rows[np.argsort(stamps, kind="stable")]
    return rows


def _unpack(data: bytes, dtype: np.dtype, array_length: int) -> np.ndarray:
    if len(data) % dtype.itemsize:
        raise CopyLayoutError(
            f"packed rows of {len(data)} bytes are not whole {dtype.itemsize}-byte rows: arrays "
            f"of another length than {array_length}, or NULL elements"
        )
    rows = np.frombuffer(data, dtype=dtype)
    for name in dtype.names:
        if name.endswith("_ndim"):
            base = name[: -len("_ndim")]
            expected = {"_ndim": 1, "_hasnull": 0, "_oid": FLOAT8_OID, "_dim": array_length,
                        "_lbound": 1}  # fmt: skip
            for suffix, value in expected.items():
                if not np.all(rows[base + suffix] == value):
                    raise CopyLayoutError(
                        f"packed array {base!r} does not hold {array_length} non-NULL float8 "
                        f"values in every row (field {suffix[1:]})"
                    )
            if not np.all(rows[base]["len"] == 8):
                raise CopyLayoutError(f"packed array {base!r} holds NULL elements")
    return rows


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
