"""The prediction log: every prediction served, and later what actually happened.

Writing happens off the request path. A request only appends a record to an in-memory queue
(under a lock, well under a microsecond); one background thread writes the queue in batches of
``batch_rows`` rows, or ``flush_ms`` after the oldest queued record, whichever comes first.

Nothing answered is lost unless the memory bound is exceeded, and then the loss is counted:

- The queue is bounded (``max_pending``). When it is full the *oldest* record is dropped, counted
  in :attr:`PredictionLog.dropped` and reported through ``on_event("dropped", n)`` (the service
  counts it in ``pricebot_prediction_log_rows_total{outcome="dropped"}``), and logged.
- A batch that fails to write goes back to the head of the queue, and the writer waits before the
  next attempt: ``retry_seconds``, doubling per failure up to ``retry_max_seconds``, with jitter.
  New records never shorten that wait, so a database that refuses connections sees one attempt
  per back-off step, not one per request.
- Writes are idempotent. A batch goes through a temporary table and ``INSERT ... ON CONFLICT
  (request_id) DO NOTHING`` (migration 0006 makes ``request_id`` unique), so a batch whose
  commit succeeded but whose acknowledgement was lost (the connection broke at that moment) is
  not written twice when it is retried.
- ``close`` keeps writing until the queue is empty or ``shutdown_seconds`` have passed, then logs
  how many rows this log wrote and how many it lost (dropped while full, unwritten at exit).

``score_predictions`` fills ``actual`` once a prediction's horizon has passed: the realised value
of its target, from the candles, by the rule training labels use (a horizon across a long gap
has no outcome). It touches only rows not yet decided, so it can run any number of times (the
transform step and ``pricebot score`` both call it).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
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

# A batch is copied into a session-local table first, then moved with ON CONFLICT DO NOTHING:
# retrying a batch whose commit outcome is unknown can then never write a prediction twice.
_STAGING_SQL = """
CREATE TEMP TABLE IF NOT EXISTS prediction_batch (
    made_at timestamptz, symbol text, target text, model_name text, model_version text,
    alias text, feature_time timestamptz, horizon_minutes integer,
    prediction double precision, base_close double precision, request_id text
) ON COMMIT DELETE ROWS
"""
# Binary COPY: a sixth of the client's CPU per row of the text format (0.8 us against 5-6 us),
# which is most of what a logged prediction costs the service.
_COPY_SQL = f"COPY prediction_batch ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = (
    "timestamptz", "text", "text", "text", "text", "text", "timestamptz", "int4", "float8",
    "float8", "text",
)  # fmt: skip
_MOVE_SQL = (
    f"INSERT INTO predictions ({', '.join(COLUMNS)}) "
    f"SELECT {', '.join(COLUMNS)} FROM prediction_batch "
    "ON CONFLICT (request_id) DO NOTHING"
)

#: Events handed to ``on_event(kind, rows)``.
WRITTEN = "written"  # rows committed
DROPPED = "dropped"  # oldest rows discarded because the queue was full
FAILED = "failed"  # one write attempt failed (rows = the batch size); it will be retried
LOST_AT_EXIT = "lost_at_exit"  # rows still queued when close gave up
REJECTED = "rejected"  # a row the database can never take (bad content): logged, not retried

# Failures that retrying cannot cure: the rows' content, not the database's state.
_PERMANENT = (psycopg.DataError, psycopg.IntegrityError, TypeError, ValueError)

LogEvent = Callable[[str, int], None]


def _crossed(before: int, after: int) -> bool:
    """Whether the dropped count passed a point worth an error line (1, 10, 100, 1000, then
    every 10,000) on its way from ``before`` to ``after``."""
    marks = (1, 10, 100, 1000)
    return any(before < m <= after for m in marks) or after // 10_000 > before // 10_000


class PredictionRecord(NamedTuple):
    """One row of the ``predictions`` table, as the service made it (field order = COLUMNS).

    A tuple, so the request path queues it as it is (no per-request conversion). The answer's
    feature age is ``made_at - feature_time`` (the table keeps it as the generated column
    ``feature_age_seconds``), so ``made_at`` is the instant the answer's age was measured at."""

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


class PredictionLog:
    """A bounded, batched, thread-backed writer of :class:`PredictionRecord` rows."""

    def __init__(
        self,
        url: str,
        *,
        batch_rows: int = 500,
        flush_ms: float = 200.0,
        max_pending: int = 100_000,
        retry_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        shutdown_seconds: float = 10.0,
        statement_timeout_seconds: float = 10.0,
        on_event: LogEvent | None = None,
    ) -> None:
        if batch_rows < 1 or max_pending < 1:
            raise errors.UsageError("batch_rows and max_pending must be at least 1")
        self.url = url
        self.batch_rows = batch_rows
        self.flush_seconds = flush_ms / 1000.0
        self.max_pending = max_pending
        self.retry_seconds = retry_seconds
        self.retry_max_seconds = max(retry_max_seconds, retry_seconds)
        self.shutdown_seconds = shutdown_seconds
        self.statement_timeout_seconds = statement_timeout_seconds
        self.written = 0
        self.dropped = 0
        self.lost_at_exit = 0
        self.rejected = 0
        self.failed_flushes = 0
        self.last_error: str | None = None
        self._on_event = on_event
        self._queue: deque[PredictionRecord] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._queued_at = 0.0  # when the oldest queued record arrived (monotonic)
        self._enqueued = 0  # records ever accepted; with _settled, what a flush waits for
        self._settled = 0  # records written or dropped, oldest first
        self._flush_waiters = 0
        self._stopping = False
        self._closed = False
        self._conn: psycopg.Connection | None = None
        self._thread: threading.Thread | None = None

    # -- the request path ----------------------------------------------------------------------

    def record(self, record: PredictionRecord) -> None:
        """Queue one prediction; never blocks on the database. A full queue drops its oldest."""
        self.record_many((record,))

    def record_many(self, records: Sequence[PredictionRecord]) -> None:
        """Queue predictions in order, under one acquisition of the lock (a batch of answers
        pays for it once, not per answer); the same bound and drop rule as :meth:`record`."""
        if not records:
            return
        with self._cond:
            if self._closed:
                raise RuntimeError("the prediction log is closed")
            queue = self._queue
            before = len(queue)
            queue.extend(records)
            self._enqueued += len(records)
            dropped = max(0, len(queue) - self.max_pending)
            if dropped:  # the oldest go, as if the records had come one at a time
                for _ in range(dropped):
                    queue.popleft()
                self.dropped += dropped
                self._settled += dropped
            if before == 0:  # the writer sleeps until there is something: start its clock
                self._queued_at = time.monotonic()
                self._cond.notify()
            elif before < self.batch_rows <= before + len(records):
                self._cond.notify()
        if dropped:
            self._emit(DROPPED, dropped)
            if _crossed(self.dropped - dropped, self.dropped):
                log.error(
                    "prediction log full (%d rows waiting: the database is away or slower "
                    "than the answers): dropped the oldest, %d so far",
                    self.max_pending,
                    self.dropped,
                )

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> PredictionLog:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued so far is written; False if ``timeout`` passed first
        (the database is away) or a record queued so far was dropped."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target, dropped_before = self._enqueued, self.dropped
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while self._settled < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._thread is None:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._flush_waiters -= 1
            return self.dropped == dropped_before

    def close(self) -> None:
        """Write what is queued (for up to ``shutdown_seconds``), stop the writer, report."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.shutdown_seconds + self.statement_timeout_seconds + 5)
            self._thread = None
        with self._cond:
            unwritten = len(self._queue)
            self._queue.clear()
        if unwritten:
            self.lost_at_exit += unwritten
            self._emit(LOST_AT_EXIT, unwritten)
        lost = self.dropped + self.lost_at_exit + self.rejected
        report = log.error if lost else log.info
        report(
            "prediction log closed: %d rows written, %d lost (%d dropped while the queue was "
            "full, %d unwritten at exit, %d rejected by the database)",
            self.written,
            lost,
            self.dropped,
            self.lost_at_exit,
            self.rejected,
        )
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def pending(self) -> int:
        """Records accepted and not yet written or dropped."""
        with self._cond:
            return self._enqueued - self._settled

    def __enter__(self) -> PredictionLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.retry_seconds
        stop_by: float | None = None  # once close() was called: when to give up
        while True:
            with self._cond:
                batch = self._next_batch()
                if self._stopping and stop_by is None:
                    stop_by = time.monotonic() + self.shutdown_seconds
                if not batch:
                    return  # stopping, and everything is written
            if self._write(batch):
                delay = self.retry_seconds
            else:
                with self._cond:
                    self._requeue(batch)
                    self._back_off(delay * random.uniform(0.8, 1.2), stop_by)
                    if self._stopping and stop_by is None:
                        stop_by = time.monotonic() + self.shutdown_seconds
                delay = min(delay * 2, self.retry_max_seconds)
            if stop_by is not None and time.monotonic() >= stop_by:
                return  # close() counts what is left as lost

    def _back_off(self, seconds: float, stop_by: float | None) -> None:
        """Wait (lock held) before the next attempt. New records and flushes do not cut it
        short; a close does, down to what is left of the shutdown allowance."""
        until = time.monotonic() + seconds
        while True:
            if self._stopping:
                if stop_by is None:
                    stop_by = time.monotonic() + self.shutdown_seconds
                until = min(until, stop_by)
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _next_batch(self) -> list[PredictionRecord]:
        """Wait (lock held) until a batch is due, and take it from the head of the queue."""
        while True:
            size = len(self._queue)
            if size and (
                self._stopping
                or self._flush_waiters
                or size >= self.batch_rows
                or time.monotonic() >= self._queued_at + self.flush_seconds
            ):
                break
            if self._stopping:
                return []
            timeout = self._queued_at + self.flush_seconds - time.monotonic() if size else None
            self._cond.wait(timeout)
        count = min(self.batch_rows, len(self._queue))
        batch = [self._queue.popleft() for _ in range(count)]
        self._queued_at = time.monotonic()  # the rest waits at most one more interval
        return batch

    def _requeue(self, batch: list[PredictionRecord]) -> None:
        """Put a failed batch back at the head (lock held); trim the oldest beyond the bound."""
        self._queue.extendleft(reversed(batch))
        overflow = len(self._queue) - self.max_pending
        if overflow > 0:
            for _ in range(overflow):
                self._queue.popleft()
            self.dropped += overflow
            self._settled += overflow
            self._cond.notify_all()
            log.error(
                "prediction log full: dropped the %d oldest rows (%d so far)",
                overflow,
                self.dropped,
            )
            self._emit(DROPPED, overflow)

    def _write(self, rows: list[PredictionRecord]) -> bool:
        """Write one batch in one transaction; False when it must be retried, ``rows`` then
        holding what is still unwritten.

        A batch the database refuses for its content (a row it can never take) is written row
        by row instead, so one bad record is rejected, counted and logged, and never holds up
        the records behind it."""
        try:
            self._copy(rows)
        except _PERMANENT as exc:
            log.error("prediction log: a batch was refused (%s); writing it row by row", exc)
            return self._write_each(rows)
        except (psycopg.Error, errors.DatabaseUnavailableError) as exc:
            self._failed(exc, len(rows))
            return False
        self._settle_written(len(rows))
        return True

    def _write_each(self, rows: list[PredictionRecord]) -> bool:
        for index, row in enumerate(rows):
            try:
                self._copy([row])
            except _PERMANENT as exc:
                with self._cond:
                    self.rejected += 1
                    self._settled += 1
                    self._cond.notify_all()
                log.error("prediction log: rejected request %s: %s", row.request_id, exc)
                self._emit(REJECTED, 1)
            except (psycopg.Error, errors.DatabaseUnavailableError) as exc:
                self._failed(exc, len(rows) - index)
                del rows[:index]  # what is left of the batch is what the caller puts back
                return False
            else:
                self._settle_written(1)
        return True

    def _copy(self, rows: list[PredictionRecord]) -> None:
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(_COPY_SQL) as copy:
                    copy.set_types(_COPY_TYPES)
                    for row in rows:
                        copy.write_row(row)
                cur.execute(_MOVE_SQL)
        except _PERMANENT:
            raise
        except (psycopg.Error, errors.DatabaseUnavailableError):
            conn.close()
            self._conn = None
            raise

    def _failed(self, exc: BaseException, rows: int) -> None:
        self.failed_flushes += 1
        text = str(exc).strip()
        self.last_error = text.splitlines()[0] if text else repr(exc)
        log.warning(
            "prediction log: %d rows not written yet, will retry (%s)", rows, self.last_error
        )
        self._emit(FAILED, rows)

    def _settle_written(self, rows: int) -> None:
        with self._cond:
            self.written += rows
            self._settled += rows
            self._cond.notify_all()
        self._emit(WRITTEN, rows)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            timeout = max(1, int(self.statement_timeout_seconds))
            conn = db.connect(self.url, autocommit=True, connect_timeout=timeout)
            try:
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, false)",
                    (f"{int(self.statement_timeout_seconds * 1000)}ms",),
                )
                conn.execute(_STAGING_SQL)
            except psycopg.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _emit(self, kind: str, rows: int) -> None:
        if self._on_event is not None:
            try:
                self._on_event(kind, rows)
            except Exception:  # a metrics callback must never stop the log
                log.exception("prediction log event callback failed")


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
