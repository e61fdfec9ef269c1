"""The prediction log: every prediction served, and later what actually happened.

Writing happens off the request path. A request only puts a record on a queue (microseconds);
one background thread gathers records and writes them with a single COPY every ``batch_rows``
rows or every ``flush_ms`` milliseconds, whichever comes first. ``close`` drains the queue, so a
clean shutdown loses nothing. When the database is down the writer keeps the rows in memory
(up to ``max_pending``, oldest dropped first and counted) and retries, so an outage costs log
rows only if it outlasts that buffer.

``score_predictions`` fills ``actual`` once a prediction's horizon has passed: the realised value
of its target, from the candles, by the rule training labels use (a horizon across a long gap
has no outcome). It touches only rows not yet decided, so it can run any number of times (the
transform step and ``pricebot score`` both call it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import psycopg

from pricebot import db, errors

log = logging.getLogger(__name__)

COLUMNS = (
    "made_at",
    "symbol",
    "target",
    "model_name",
    "model_version",
    "alias",
    "feature_time",
    "horizon_minutes",
    "prediction",
    "base_close",
    "request_id",
)

_COPY_SQL = f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN"


class PredictionRecord(NamedTuple):
    """One row of the ``predictions`` table, as the service made it (field order = COLUMNS).

    A tuple, so the request path queues it as it is (no per-request conversion)."""

    made_at: datetime
    symbol: str
    target: str
    model_name: str
    model_version: str
    alias: str | None
    feature_time: datetime
    horizon_minutes: int
    prediction: float
    base_close: float | None
    request_id: str | None = None


class _Barrier:
    """A marker put on the queue: set once everything queued before it is written (or tried)."""

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class PredictionLog:
    """A batched, thread-backed writer of :class:`PredictionRecord` rows."""

    def __init__(
        self,
        url: str,
        *,
        batch_rows: int = 500,
        flush_ms: float = 200.0,
        max_pending: int = 100_000,
        retry_seconds: float = 1.0,
    ) -> None:
        self.url = url
        self.batch_rows = batch_rows
        self.flush_seconds = flush_ms / 1000.0
        self.max_pending = max_pending
        self.retry_seconds = retry_seconds
        self.written = 0
        self.dropped = 0
        self.failed_flushes = 0
        self.last_error: str | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._pending: list[tuple] = []
        self._conn: psycopg.Connection | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the request path ----------------------------------------------------------------------

    def record(self, record: PredictionRecord) -> None:
        """Queue one prediction for writing; never blocks and never touches the database."""
        if self._closed:
            raise RuntimeError("the prediction log is closed")
        self._queue.put(record)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> PredictionLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every record queued so far has been written (or a write attempted)."""
        barrier = _Barrier()
        self._queue.put(barrier)
        return barrier.done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued, then stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pending:
            log.error("prediction log closed with %d rows unwritten", len(self._pending))
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def pending(self) -> int:
        return len(self._pending) + self._queue.qsize()

    def __enter__(self) -> PredictionLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._drain_queue()
                self._write(final=True)
                return
            if isinstance(item, _Barrier):
                self._drain_queue()
                self._write(final=True)
                item.done.set()
                deadline = None
                continue
            if isinstance(item, tuple):
                self._pending.append(item)
                if deadline is None:
                    deadline = time.monotonic() + self.flush_seconds
            if len(self._pending) >= self.batch_rows or (
                deadline is not None and time.monotonic() >= deadline
            ):
                ok = self._write()
                deadline = (
                    None
                    if not self._pending
                    else time.monotonic() + (self.flush_seconds if ok else self.retry_seconds)
                )

    def _drain_queue(self) -> None:
        """Move what is already queued into the batch (a barrier or stop flushes it all)."""
        barriers = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, tuple):
                self._pending.append(item)
            elif isinstance(item, _Barrier):
                barriers.append(item)
            elif item is _STOP:
                self._queue.put(_STOP)
                break
        for barrier in barriers:  # written in the same batch, released after it
            self._queue.put(barrier)

    def _write(self, final: bool = False) -> bool:
        """COPY the pending rows in one transaction; on failure keep them for the next try."""
        if not self._pending:
            return True
        attempts = 3 if final else 1
        for attempt in range(attempts):
            rows = list(self._pending)
            try:
                conn = self._connection()
                with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(_COPY_SQL) as copy,
                ):
                    for row in rows:
                        copy.write_row(row)
                del self._pending[: len(rows)]
                self.written += len(rows)
                return True
            except (psycopg.Error, errors.DatabaseUnavailableError) as exc:
                self.failed_flushes += 1
                self.last_error = str(exc).strip().splitlines()[0] if str(exc) else repr(exc)
                log.warning(
                    "prediction log: %d rows not written yet (%s)", len(rows), self.last_error
                )
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if attempt + 1 < attempts:
                    time.sleep(self.retry_seconds)
        overflow = len(self._pending) - self.max_pending
        if overflow > 0:
            del self._pending[:overflow]
            self.dropped += overflow
            log.error("prediction log: dropped the %d oldest rows (buffer full)", overflow)
        return False

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.url)
        return self._conn


_DUE_SQL = """
SELECT id, symbol, target, feature_time, horizon_minutes
FROM predictions
WHERE actual IS NULL AND scored_at IS NULL
  AND feature_time + make_interval(mins => horizon_minutes) <= %(now)s
ORDER BY id
FOR UPDATE SKIP LOCKED
"""


def score_predictions(
    url: str, *, now: datetime | None = None, max_gap_minutes: int | None = None
) -> int:
    """Fill ``actual`` for predictions whose horizon has passed; return how many were filled.

    ``actual`` is the realised value of the prediction's target by the rule training labels
    use (:func:`pricebot.labels.label_candles`, the one definition): the forward return for
    ``ret<H>``, 1.0/0.0 for ``up/down<X>pct<H>``, and no value when the horizon crosses a gap
    in the candles longer than ``max_gap_minutes`` (default ``settings.max_gap_minutes``), as
    such a row would not have been a training row either.

    A prediction whose outcome the candles cannot tell *yet* (nothing is stored at or after
    ``t + H``) stays pending and is tried again next time. One the candles can never tell (the
    candle at ``t + H`` or at ``t`` is missing while later ones are stored, or the horizon
    crosses a long gap) gets ``scored_at`` with ``actual`` left NULL: decided, without an
    outcome, and never read again. Idempotent: decided rows are never touched again, and
    concurrent scorers skip each other's rows.
    """
    import pandas as pd

    from pricebot.candles import load_candles
    from pricebot.labels import label_candles
    from pricebot.targets import parse_target

    if max_gap_minutes is None:
        from pricebot.settings import get_settings

        max_gap_minutes = get_settings().max_gap_minutes
    when = now or datetime.now(UTC)
    updates: list[tuple[float | None, datetime, int]] = []
    filled = 0
    with db.transaction(url) as conn:
        due = conn.execute(_DUE_SQL, {"now": when}).fetchall()
        groups: dict[tuple[str, str, int], list[tuple[int, datetime]]] = {}
        for pid, symbol, target, feature_time, horizon in due:
            groups.setdefault((symbol, target, horizon), []).append((pid, feature_time))
        newest: dict[str, datetime | None] = {}
        for (symbol, target, horizon), rows in groups.items():
            if symbol not in newest:
                newest[symbol] = conn.execute(
                    "SELECT max(open_time) FROM klines WHERE symbol = %s", (symbol,)
                ).fetchone()[0]
            stored_until = newest[symbol]
            if stored_until is None:
                continue
            spec = replace(parse_target(target), horizon_minutes=horizon)
            span = timedelta(minutes=horizon)
            first = min(t for _, t in rows)
            last = min(max(t for _, t in rows) + span, stored_until)
            candles = load_candles(conn, symbol, first, last, columns=("close",))
            labels = label_candles(candles, spec, max_gap_minutes)["label"]
            for pid, feature_time in rows:
                value = labels.get(pd.Timestamp(feature_time).tz_convert("UTC"))
                if value is not None and pd.notna(value):
                    updates.append((float(value), when, pid))
                    filled += 1
                elif feature_time + span <= stored_until:  # the candles will never tell
                    updates.append((None, when, pid))
        if updates:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE predictions SET actual = %s, scored_at = %s "
                    "WHERE id = %s AND actual IS NULL AND scored_at IS NULL",
                    updates,
                )
    return filled
