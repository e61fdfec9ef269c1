"""What the monitoring page shows, computed in the core: the page only draws it.

Every query here answers a chart, and every chart gets a bounded number of points whatever the
range: a year of minute candles is 525,600 rows, the browser gets at most ``max_points`` per
series (2,000 by default). The step between points is chosen from the range's length
(:func:`step_minutes`) among steps that divide a day, so points fall on the same clock grid
whatever the range and a 24 h horizon ends exactly on a later point (the pool value needs that).

- Prices are aggregated in SQL (``date_bin``: low, high and the last close of each step).
- Predictions are *sampled*, not averaged: one real prediction per step (the first of the step),
  so the error of a point is the error of a prediction the model made, and metrics over the
  points are unbiased estimates of the metrics over every minute.
- Baselines are evaluated on the same points with :func:`pricebot.evaluation.baseline_predictions`,
  from past closes only; the pool value is :func:`pricebot.evaluation.pool_value`, after fees,
  against buy-and-hold over the same periods.
- A *replay* is what a registered version would have predicted: the version loaded from MLflow by
  number, applied to the stored feature rows (the one feature definition). It is labelled as a
  replay: it is not what was served.
- Outcomes (what happened, and the baselines' past returns) come from
  :func:`pricebot.labels.label_candles`, the rule training labels and live scoring use: a
  horizon across a gap longer than ``max_gap_minutes`` has no outcome here either.
- A point is *in-sample* when its version was trained on it: its time is before the version's
  training data end (the run's lineage ``dataset.end``) plus one horizon, since the last training
  label already saw the prices up to then. In-sample points are drawn apart and never count in
  the accuracy or pool figures: a model scored on its own training rows looks better than it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from pricebot.errors import NoChampionError, RangeError, TrackingUnavailableError
from pricebot.evaluation import (
    DEFAULT_FEE,
    RECENT_MEAN_HORIZONS,
    baseline_predictions,
    long_position,
    pool_value,
    positive_call,
    positive_truth,
)
from pricebot.registry import CHAMPION, Registry, is_not_found, model_name
from pricebot.targets import TargetSpec

MAX_POINTS = 2000
#: Steps (minutes) that divide a day, then whole days: points share one clock grid.
STEPS_MINUTES = (
    1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 40, 60, 72, 80, 90, 120, 144, 160, 180, 240, 288,
    360, 480, 720, 1440, 2880, 4320, 10080, 20160, 40320,
)  # fmt: skip
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # date_bin's origin: midnight, so steps align to days
AS_LOGGED = "as logged"
LOGGED = "logged"
REPLAY = "replay"
MODEL_SERIES = "model"

POINT_COLUMNS = (
    "time",  # the feature row's open time: when the prediction was made for
    "version",
    "prediction",  # the model's output: the predicted return (or probability of the event)
    "actual",  # the realised target (NaN until the horizon has passed)
    "base_close",  # the close the prediction was made from
    "end_time",  # time + horizon
    "end_close",  # the close at end_time: what happened
    "predicted_price",  # base_close * (1 + prediction) for return targets
    "forward_return",  # close[end_time] / close[time] - 1, NaN across a long gap
    "past_return",
    "recent_mean",
    "crosses_gap",  # the horizon crosses a gap longer than max_gap_minutes: no outcome
    "in_sample",  # the version was trained on this row (see the module docstring)
)
#: The training data's end, as the training job logs it (run param and lineage ``end``).
DATA_END_KEY = "dataset.end"


# ---------------------------------------------------------------------------------------------
# Ranges and steps


def check_range(start: datetime, end: datetime, max_days: float | None = None) -> None:
    """Refuse naive moments, empty or inverted ranges, and ranges longer than ``max_days``
    (the page's cap, ``PRICEBOT_MONITOR_MAX_RANGE_DAYS``) with a message saying what to fix."""
    for name, moment in (("start", start), ("end", end)):
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise RangeError(f"The {name} must be a date and time in UTC, got {moment!r}.")
    if end <= start:
        raise RangeError(
            f"The range is empty: the end ({end:%Y-%m-%d %H:%M} UTC) must be after the start "
            f"({start:%Y-%m-%d %H:%M} UTC). Move the end date or time later."
        )
    if max_days is not None and end - start > timedelta(days=max_days):
        earliest = end - timedelta(days=max_days)
        raise RangeError(
            f"The range is {(end - start) / timedelta(days=1):,.1f} days; the page draws at "
            f"most {max_days:g} days (PRICEBOT_MONITOR_MAX_RANGE_DAYS). Move the start to "
            f"{earliest:%Y-%m-%d %H:%M} UTC or later, or raise the setting."
        )


def step_minutes(start: datetime, end: datetime, max_points: int = MAX_POINTS) -> int:
    """The smallest step of :data:`STEPS_MINUTES` giving at most ``max_points`` over the range."""
    span = max(1.0, (end - start) / timedelta(minutes=1) + 1)
    for step in STEPS_MINUTES:
        if span / step <= max_points:
            return step
    return int(np.ceil(span / max_points / 1440)) * 1440


# ---------------------------------------------------------------------------------------------
# Symbols, targets, prices


def symbol_choices(conn: psycopg.Connection, configured: Iterable[str]) -> list[str]:
    """The configured symbols, then any other symbol with candles (a loose index scan: one
    index probe per symbol, not a pass over the table)."""
    rows = conn.execute(
        """WITH RECURSIVE s AS (
               (SELECT symbol FROM klines ORDER BY symbol LIMIT 1)
               UNION ALL
               SELECT (SELECT k.symbol FROM klines k WHERE k.symbol > s.symbol
                       ORDER BY k.symbol LIMIT 1)
               FROM s WHERE s.symbol IS NOT NULL)
           SELECT symbol FROM s WHERE symbol IS NOT NULL"""
    ).fetchall()
    return list(dict.fromkeys([*configured, *(row[0] for row in rows)]))


def target_choices(conn: psycopg.Connection, symbol: str, configured: Iterable[str]) -> list[str]:
    """The configured targets, then any other target the prediction log holds for ``symbol``
    (a loose index scan: one probe per target, not a pass over the log)."""
    rows = conn.execute(
        """WITH RECURSIVE t AS (
               (SELECT target FROM predictions WHERE symbol = %(s)s ORDER BY target LIMIT 1)
               UNION ALL
               SELECT (SELECT p.target FROM predictions p
                       WHERE p.symbol = %(s)s AND p.target > t.target
                       ORDER BY p.target LIMIT 1)
               FROM t WHERE t.target IS NOT NULL)
           SELECT target FROM t WHERE target IS NOT NULL""",
        {"s": symbol},
    ).fetchall()
    return list(dict.fromkeys([*configured, *(row[0] for row in rows)]))


def candle_span(conn: psycopg.Connection, symbol: str) -> tuple[datetime, datetime] | None:
    """The first and last stored open time of ``symbol`` (two index probes), or None."""
    row = conn.execute(
        """SELECT (SELECT open_time FROM klines WHERE symbol = %(s)s ORDER BY open_time LIMIT 1),
                  (SELECT open_time FROM klines WHERE symbol = %(s)s
                   ORDER BY open_time DESC LIMIT 1)""",
        {"s": symbol},
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]


def price_series(
    conn: psycopg.Connection,
    symbol: str,
    start: datetime,
    end: datetime,
    max_points: int = MAX_POINTS,
) -> pd.DataFrame:
    """Candles of ``symbol`` in [start, end] aggregated per step in SQL: columns ``time`` (the
    step's start), ``low``, ``high``, ``close`` (the step's last close), ``candles``.

    One hashed pass over the range (no sort of its rows), then one primary-key probe per step
    for the close of its last candle."""
    check_range(start, end)
    step = timedelta(minutes=step_minutes(start, end, max_points))
    with conn.transaction():
        # Room to hash the steps in memory: the planner cannot tell that date_bin makes few
        # groups, and would otherwise sort every row of the range on disk.
        conn.execute("SET LOCAL work_mem = '32MB'")
        steps = conn.execute(
            """SELECT date_bin(%(step)s, open_time, %(origin)s), min(low)::float8,
                      max(high)::float8, max(open_time), count(*)
               FROM klines
               WHERE symbol = %(symbol)s AND open_time >= %(start)s AND open_time <= %(end)s
               GROUP BY 1""",
            {"step": step, "origin": ORIGIN, "symbol": symbol, "start": start, "end": end},
        ).fetchall()
    closes = dict(
        conn.execute(
            "SELECT open_time, close::float8 FROM klines WHERE symbol = %s AND open_time = ANY(%s)",
            (symbol, [row[3] for row in steps]),
        ).fetchall()
    )
    rows = sorted((t, low, high, closes.get(last), n) for t, low, high, last, n in steps)
    frame = pd.DataFrame(rows, columns=["time", "low", "high", "close", "candles"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.astype({"low": "float64", "high": "float64", "close": "float64"})


# ---------------------------------------------------------------------------------------------
# Prediction points: logged or replayed, with what happened


def logged_points(
    conn: psycopg.Connection,
    symbol: str,
    spec: TargetSpec,
    start: datetime,
    end: datetime,
    version: str | None = None,
    max_points: int = MAX_POINTS,
    *,
    max_gap_minutes: int | None = None,
) -> pd.DataFrame:
    """Served predictions from the log, one per step (the first of the step), with outcomes.

    ``version`` None: whatever was served ("as logged"); otherwise only that version's rows.
    """
    check_range(start, end)
    step = timedelta(minutes=step_minutes(start, end, max_points))
    # One probe of the (symbol, target, feature_time) index per step, not a sort of the range.
    rows = conn.execute(
        """SELECT p.feature_time, p.model_version, p.prediction, p.base_close
           FROM generate_series(date_bin(%(step)s, %(start)s::timestamptz, %(origin)s),
                                %(end)s::timestamptz, %(step)s) AS b(bucket)
           CROSS JOIN LATERAL (
               SELECT feature_time, model_version, prediction, base_close FROM predictions
               WHERE symbol = %(symbol)s AND target = %(target)s
                 AND feature_time >= greatest(b.bucket, %(start)s)
                 AND feature_time < b.bucket + %(step)s AND feature_time <= %(end)s
                 AND (%(version)s::text IS NULL OR model_version = %(version)s)
               ORDER BY feature_time, made_at DESC LIMIT 1) p
           ORDER BY 1""",
        {"step": step, "origin": ORIGIN, "symbol": symbol, "target": spec.name,
         "start": start, "end": end, "version": version},
    ).fetchall()  # fmt: skip
    frame = pd.DataFrame(rows, columns=["time", "version", "prediction", "base_close"])
    return with_outcomes(conn, symbol, spec, frame, max_gap_minutes=max_gap_minutes)


def replay_points(
    conn: psycopg.Connection,
    symbol: str,
    spec: TargetSpec,
    model: Any,
    version: str,
    start: datetime,
    end: datetime,
    *,
    feature_set: str = "v1",
    max_points: int = MAX_POINTS,
    max_gap_minutes: int | None = None,
) -> pd.DataFrame:
    """What ``model`` (a loaded pyfunc) would have predicted at each step from the stored
    features: the same rows and the same columns the service feeds it."""
    from pricebot.features import feature_names
    from pricebot.transform import load_features

    check_range(start, end)
    step = step_minutes(start, end, max_points)
    features = load_features(conn, symbol, start, end, feature_set, every_minutes=step)
    if features.empty:
        frame = pd.DataFrame(columns=["time", "version", "prediction", "base_close"])
        return with_outcomes(conn, symbol, spec, frame, max_gap_minutes=max_gap_minutes)
    names = feature_names(feature_set)
    predicted = np.asarray(model.predict(features[names].astype("float64")), dtype="float64")
    frame = pd.DataFrame(
        {
            "time": features.index,
            "version": str(version),
            "prediction": predicted.ravel(),
            "base_close": features["close"].to_numpy(),
        }
    )
    return with_outcomes(conn, symbol, spec, frame, max_gap_minutes=max_gap_minutes)


def with_outcomes(
    conn: psycopg.Connection,
    symbol: str,
    spec: TargetSpec,
    frame: pd.DataFrame,
    *,
    max_gap_minutes: int | None = None,
) -> pd.DataFrame:
    """Add what happened and the baselines' causal inputs to ``frame`` (columns ``time``,
    ``version``, ``prediction``, ``base_close``); columns :data:`POINT_COLUMNS`.

    Everything comes from :func:`pricebot.labels.label_candles` over the stored closes from
    :data:`RECENT_MEAN_HORIZONS` horizons before the first point to one horizon after the last:
    ``actual`` is the target's label (the one definition training and ``pricebot score`` use),
    ``forward_return`` what holding over the horizon returned, both NaN when the horizon is not
    over yet or crosses a gap longer than ``max_gap_minutes`` (default: the setting).
    ``in_sample`` is False here; :func:`mark_in_sample` sets it.
    """
    from pricebot.candles import load_candles
    from pricebot.labels import label_candles

    if max_gap_minutes is None:
        from pricebot.settings import get_settings

        max_gap_minutes = get_settings().max_gap_minutes
    frame = frame.copy()
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    for column in ("prediction", "base_close"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["version"] = frame["version"].astype("string")
    horizon = pd.Timedelta(minutes=spec.horizon_minutes)
    times = pd.DatetimeIndex(frame["time"])
    if len(times):
        candles = load_candles(
            conn, symbol, times.min() - RECENT_MEAN_HORIZONS * horizon, times.max() + horizon,
            columns=("close",),
        )  # fmt: skip
    else:
        candles = pd.DataFrame({"close": pd.Series(dtype="float64")}, index=times)
    context = label_candles(candles, spec, max_gap_minutes).reindex(times)
    closes = candles["close"]
    now = closes.reindex(times).to_numpy(dtype="float64")
    base = frame["base_close"].to_numpy(dtype="float64")
    base = np.where(np.isfinite(base), base, now)
    frame["base_close"] = base
    frame["end_time"] = times + horizon
    frame["end_close"] = closes.reindex(times + horizon).to_numpy(dtype="float64")
    frame["actual"] = context["label"].to_numpy(dtype="float64")
    frame["forward_return"] = context["forward_return"].to_numpy(dtype="float64")
    frame["past_return"] = context["past_return"].to_numpy(dtype="float64")
    frame["recent_mean"] = context["recent_mean"].to_numpy(dtype="float64")
    frame["crosses_gap"] = context["crosses_gap"].eq(True).to_numpy(dtype=bool)
    frame["in_sample"] = False
    if spec.is_classification:
        frame["predicted_price"] = np.nan  # a probability of an event is not a price
    else:
        frame["predicted_price"] = base * (1.0 + frame["prediction"].to_numpy())
    return frame.loc[:, list(POINT_COLUMNS)].sort_values("time").reset_index(drop=True)


def mark_in_sample(
    frame: pd.DataFrame, spec: TargetSpec, training_ends: Mapping[str, datetime | None]
) -> pd.DataFrame:
    """Set ``in_sample`` for each point whose version was trained on it: its time is before
    the version's training data end plus one horizon (the last training row's label saw the
    prices up to then). A version whose end is unknown (None) marks nothing."""
    frame = frame.copy()
    horizon = pd.Timedelta(minutes=spec.horizon_minutes)
    cutoffs = {v: pd.Timestamp(end) + horizon for v, end in training_ends.items() if end}
    cutoff = pd.to_datetime(frame["version"].astype("object").map(cutoffs), utc=True)
    frame["in_sample"] = (frame["time"] < cutoff).to_numpy(dtype=bool)  # NaT compares False
    return frame


def in_sample_spans(points: pd.DataFrame) -> pd.DataFrame:
    """Runs of consecutive in-sample points as spans ``start``, ``end``, ``version`` (for
    shading them on a chart)."""
    columns = ["start", "end", "version"]
    if points.empty or not points["in_sample"].any():
        return pd.DataFrame(columns=columns)
    flags = points["in_sample"].to_numpy(dtype=bool)
    versions = points["version"].astype("object").to_numpy()
    run = np.cumsum(np.r_[True, (flags[1:] != flags[:-1]) | (versions[1:] != versions[:-1])])
    marked = points.assign(run=run)[flags]
    spans = marked.groupby("run").agg(
        start=("time", "min"), end=("time", "max"), version=("version", "first")
    )
    return spans.reset_index(drop=True).loc[:, columns]


# ---------------------------------------------------------------------------------------------
# Models in the registry


@dataclass(frozen=True)
class ModelChoices:
    """What the registry holds for one symbol and target."""

    name: str
    champion: str | None
    versions: list[str] = field(default_factory=list)  # newest first
    feature_sets: dict[str, str] = field(default_factory=dict)  # version -> feature set
    champion_moved_at: str | None = None
    #: version -> the run whose params hold ``dataset.end`` (tag ``training_run_id``, else the
    #: version's own run)
    training_runs: dict[str, str] = field(default_factory=dict)
    #: version -> ``dataset.end`` when the version carries it as a tag (no look-up needed)
    data_ends: dict[str, str] = field(default_factory=dict)


def tracking_uri() -> str:
    """The tracking server the page reads (``MLFLOW_TRACKING_URI``, from the environment or
    ``.env``)."""
    from pricebot.settings import get_settings

    return get_settings().tracking_uri()


def check_tracking(uri: str | None, timeout: float = 3.0) -> None:
    """Fail fast (seconds, not MLflow's minutes of retries) if an HTTP tracking server is down;
    the page still shows prices and logged predictions, so the message says so."""
    if not uri or not uri.startswith(("http://", "https://")):
        return
    try:
        Registry(uri).check(timeout=timeout)
    except TrackingUnavailableError as exc:
        raise TrackingUnavailableError(
            f"{exc} Prices and logged predictions are still shown; models and replays need "
            "the registry."
        ) from None


def model_choices(uri: str | None, symbol: str, target: str) -> ModelChoices:
    """The champion and the registered versions of ``pricebot-<symbol>-<target>``."""
    check_tracking(uri)
    name = model_name(symbol, target)
    registry = Registry(uri)
    try:
        ordered = registry.versions(name)
        champion = registry.alias_version(name, CHAMPION)
    except Exception as exc:
        raise TrackingUnavailableError(
            f"The MLflow registry at {registry.where} failed to answer: {_first_line(exc)}"
        ) from None
    tags = {str(mv.version): dict(mv.tags or {}) for mv in ordered}
    moved_at = tags.get(champion or "", {}).get(f"{CHAMPION}.moved_at")
    runs = {str(mv.version): tags[str(mv.version)].get("training_run_id") or mv.run_id
            for mv in ordered}  # fmt: skip
    return ModelChoices(
        name,
        champion,
        [str(mv.version) for mv in ordered],
        {v: t.get("feature_set", "v1") for v, t in tags.items()},
        moved_at,
        {v: r for v, r in runs.items() if r},
        {v: t[DATA_END_KEY] for v, t in tags.items() if t.get(DATA_END_KEY)},
    )


def parse_data_end(value: object) -> datetime | None:
    """A lineage ``end`` (ISO 8601, UTC) as a moment; None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = pd.Timestamp(str(value))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    return moment.to_pydatetime()


def training_end(uri: str | None, choices: ModelChoices, version: str) -> datetime | None:
    """The end of the data ``version`` was trained on (lineage ``dataset.end``): from the
    version's tag when it has one, else from the params of its training run (one look-up).
    None when the registry keeps no record of it (a version registered by hand)."""
    if version in choices.data_ends:
        return parse_data_end(choices.data_ends[version])
    run_id = choices.training_runs.get(version)
    if not run_id:
        return None
    registry = Registry(uri)  # model_choices has just checked that it answers
    try:
        params = registry.run_params(run_id)
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise TrackingUnavailableError(
            f"The MLflow registry at {registry.where} failed to answer: {_first_line(exc)}"
        ) from None
    return parse_data_end(params.get(DATA_END_KEY))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def load_version(uri: str | None, symbol: str, target: str, version: str) -> Any:
    """The registered version as a pyfunc, loaded by number (never by a moving alias)."""
    check_tracking(uri)
    return Registry(uri).load(model_name(symbol, target), version)


#: Below this share of the range's steps, a version's served predictions are too sparse to read
#: as a history: the version is replayed over the whole range instead (and says so).
MIN_LOGGED_SHARE = 0.5


@dataclass
class Points:
    """The predictions a page shows, and where they came from."""

    frame: pd.DataFrame
    source: str  # LOGGED or REPLAY
    version: str | None  # None: as logged (any version)
    step_minutes: int
    logged: int = 0  # for a replay: how many served predictions of the version the range holds
    #: each shown version's training data end (None: unknown, its in-sample rows unmarked)
    training_ends: dict[str, datetime | None] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.source == REPLAY:
            text = f"replay of version {self.version} (computed now from stored features)"
            if self.logged:
                text += (
                    f"; the log holds only {self.logged} of its served predictions in this "
                    "range: choose 'as logged' to see them"
                )
            return text
        if self.version is None:
            return "served predictions, as logged"
        return f"served predictions of version {self.version}, as logged"

    @property
    def in_sample(self) -> int:
        """How many points their version was trained on."""
        return int(self.frame["in_sample"].sum()) if not self.frame.empty else 0

    @property
    def unknown_training_ends(self) -> list[str]:
        """Shown versions whose training data end the registry does not record."""
        return sorted(v for v, end in self.training_ends.items() if end is None)

    @property
    def in_sample_note(self) -> str | None:
        """What the page says about in-sample points, or None when there is nothing to say."""
        parts = []
        if self.in_sample:
            ends = ", ".join(
                f"version {v} to {end:%Y-%m-%d %H:%M} UTC"
                for v, end in sorted(self.training_ends.items())
                if end is not None
            )
            parts.append(
                f"**In-sample**: {self.in_sample} of {len(self.frame)} points are rows their "
                f"version was trained on (training data: {ends}, whose labels reach one "
                "horizon further). They are shaded, and left out of the error and pool figures."
            )
        if self.unknown_training_ends:
            listed = ", ".join(self.unknown_training_ends)
            parts.append(
                f"The training data end of version {listed} is unknown (the registry does not "
                "record it, or cannot be reached): rows it was trained on cannot be told apart, "
                "and count as out of sample."
            )
        return " ".join(parts) or None


def prediction_points(
    conn: psycopg.Connection,
    symbol: str,
    spec: TargetSpec,
    start: datetime,
    end: datetime,
    model: str,
    *,
    uri: str | None = None,
    choices: ModelChoices | None = None,
    loader: Callable[[str | None, str, str, str], Any] = load_version,
    training_end_of: Callable[[str], datetime | None] | None = None,
    max_points: int = MAX_POINTS,
    max_gap_minutes: int | None = None,
) -> Points:
    """The points for the page's model choice: ``"as logged"``, ``"champion"`` or a version.

    For the champion or a version, its served predictions are shown when the log holds them
    for at least :data:`MIN_LOGGED_SHARE` of the range's steps; otherwise the version is
    replayed over the stored features for the whole range (labelled as a replay). Either way
    the points each version was trained on are marked ``in_sample`` (``training_end_of``
    gives a version's training data end; by default :func:`training_end` through the
    registry, or unknown when there is no registry to ask).
    """
    step = step_minutes(start, end, max_points)
    gap = {"max_gap_minutes": max_gap_minutes}
    if training_end_of is None:

        def training_end_of(version: str) -> datetime | None:
            return training_end(uri, choices, version) if choices is not None else None

    def marked(frame: pd.DataFrame, source: str, version: str | None, logged: int = 0) -> Points:
        shown = [str(v) for v in frame["version"].dropna().unique()]
        ends = {v: training_end_of(v) for v in shown}
        frame = mark_in_sample(frame, spec, ends)
        return Points(frame, source, version, step, logged=logged, training_ends=ends)

    if model == AS_LOGGED:
        frame = logged_points(conn, symbol, spec, start, end, None, max_points, **gap)
        return marked(frame, LOGGED, None)
    if choices is None:
        choices = model_choices(uri, symbol, spec.name)
    if not choices.versions:
        raise NoChampionError(
            f"No model is registered for {symbol} {spec.name} yet ({choices.name}): run "
            f"`pricebot train --symbol {symbol} --target {spec.name}`."
        )
    version = choices.champion if model == CHAMPION else model
    if version is None:
        raise NoChampionError(
            f"{choices.name} has no champion yet (versions {', '.join(choices.versions)}): "
            "promote one with `pricebot promote`, or pick a version."
        )
    if version not in choices.versions:
        raise NoChampionError(f"{choices.name} has no version {version}.")
    logged = logged_points(conn, symbol, spec, start, end, version, max_points, **gap)
    steps = max(1, int((end - start) / timedelta(minutes=step)))
    if len(logged) >= MIN_LOGGED_SHARE * steps:
        return marked(logged, LOGGED, version)
    loaded = loader(uri, symbol, spec.name, version)
    frame = replay_points(
        conn, symbol, spec, loaded, version, start, end,
        feature_set=choices.feature_sets.get(version, "v1"), max_points=max_points, **gap,
    )  # fmt: skip
    if frame.empty and not logged.empty:  # no features to replay on: what was served
        return marked(logged, LOGGED, version)
    return marked(frame, REPLAY, version, logged=len(logged))


# ---------------------------------------------------------------------------------------------
# Errors over time and the pool value


def _in_sample(points: pd.DataFrame) -> np.ndarray:
    if "in_sample" not in points:
        return np.zeros(len(points), dtype=bool)
    return points["in_sample"].fillna(False).to_numpy(dtype=bool)


def default_window_minutes(start: datetime, end: datetime, horizon_minutes: int) -> int:
    """A rolling window of a twentieth of the range, never shorter than one horizon."""
    return max(horizon_minutes, int((end - start) / timedelta(minutes=1)) // 20)


def candidate_predictions(points: pd.DataFrame, spec: TargetSpec) -> dict[str, np.ndarray]:
    """The model's and the baselines' predictions on the same points."""
    baselines = baseline_predictions(
        points["past_return"].to_numpy(), points["recent_mean"].to_numpy(), spec
    )
    return {MODEL_SERIES: points["prediction"].to_numpy(dtype="float64"), **baselines}


#: A rolling window spans a twentieth of the range: this many points per series draw it exactly
#: enough, and keep the error chart (ten series) light for the browser.
ROLLING_POINTS = 500


def rolling_metrics(
    points: pd.DataFrame,
    spec: TargetSpec,
    window_minutes: int,
    max_points: int = ROLLING_POINTS,
) -> pd.DataFrame:
    """Rolling MAE and directional accuracy over the last ``window_minutes`` of scored points,
    for the model and each baseline on the same points.

    Long format for charting: columns ``time``, ``metric`` (``mae`` or
    ``directional_accuracy``), ``series`` and ``value``, at most ``max_points`` per series.
    Only points whose outcome is known count, and never an in-sample one (its version was
    trained on it); buy-and-hold has no MAE of its own (it predicts no return) and is left out.
    """
    columns = ["time", "metric", "series", "value"]
    scored = points[np.isfinite(points["actual"].to_numpy(dtype="float64")) & ~_in_sample(points)]
    if scored.empty:
        return pd.DataFrame(columns=columns)
    actual = scored["actual"].to_numpy(dtype="float64")
    truth = positive_truth(actual, spec)
    # Every point counts in the windows; every k-th value is drawn (always the last one).
    every = max(1, int(np.ceil(len(scored) / max_points)))
    drawn = np.arange(len(scored))[::-1][::every][::-1]
    index = pd.DatetimeIndex(scored["time"])
    window = f"{int(window_minutes)}min"
    parts = []
    for series, pred in candidate_predictions(scored, spec).items():
        hits = pd.Series((positive_call(pred, spec) == truth).astype("float64"), index=index)
        metrics = {"directional_accuracy": hits.rolling(window, min_periods=1).mean()}
        if series != "buy_and_hold":
            error = pd.Series(np.abs(pred - actual), index=index)
            metrics["mae"] = error.rolling(window, min_periods=1).mean()
        for metric, values in metrics.items():
            parts.append(
                pd.DataFrame(
                    {"time": index[drawn], "metric": metric, "series": series,
                     "value": values.to_numpy()[drawn]}
                )
            )  # fmt: skip
    return pd.concat(parts, ignore_index=True)


@dataclass
class PoolCurves:
    """The model's pool value after fees and buy-and-hold's, over the same periods."""

    curve: pd.DataFrame  # columns time, series ("model (after fees)", "buy and hold"), value
    model_value: float
    buy_hold_value: float
    trades: int
    pools: int


def pool_curves(
    points: pd.DataFrame, spec: TargetSpec, step: int, *, fee: float = DEFAULT_FEE
) -> PoolCurves:
    """:func:`pricebot.evaluation.pool_value` on the out-of-sample points whose forward return
    is known.

    Points are ``step`` minutes apart, so at most ``H / step`` staggered pools are distinct
    (up to the 24 that evaluation uses on every minute).
    """
    known = points[
        np.isfinite(points["forward_return"].to_numpy(dtype="float64")) & ~_in_sample(points)
    ]
    pools = max(1, min(24, spec.horizon_minutes // max(1, step)))
    columns = ["time", "series", "value"]
    if known.empty:
        return PoolCurves(pd.DataFrame(columns=columns), 1.0, 1.0, 0, pools)
    times = pd.DatetimeIndex(known["time"])
    forward = known["forward_return"].to_numpy(dtype="float64")
    pred = known["prediction"].to_numpy(dtype="float64")
    model = pool_value(
        times, long_position(pred, spec), forward, spec.horizon_minutes, fee=fee, pools=pools
    )
    hold = pool_value(
        times, np.ones(len(known), bool), forward, spec.horizon_minutes, fee=fee, pools=pools
    )
    start = times[0]
    frames = []
    for series, result in (("model (after fees)", model), ("buy and hold (after fees)", hold)):
        curve = pd.concat([pd.Series([1.0], index=[start]), result.curve])
        frames.append(
            pd.DataFrame({"time": curve.index, "series": series, "value": curve.to_numpy()})
        )
    return PoolCurves(pd.concat(frames, ignore_index=True), model.value, hold.value,
                      model.trades, pools)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Which version was champion when


def champion_timeline(
    conn: psycopg.Connection,
    symbol: str,
    target: str,
    start: datetime,
    end: datetime,
    *,
    max_points: int = MAX_POINTS,
) -> pd.DataFrame:
    """Segments ``version``, ``start``, ``end``, ``source`` clipped to [start, end]:

    - ``alias history``: from table ``model_alias_events`` (each move of ``champion`` starts a
      segment that lasts until the next move);
    - ``served (prediction log)``: runs of steps in which the log's first prediction of the
      step is of one version (merged here), so a rollback shows as a new segment.
    """
    check_range(start, end)
    name = model_name(symbol, target)
    segments: list[tuple[str, datetime, datetime, str]] = []
    events = conn.execute(
        """SELECT version, moved_at FROM model_alias_events
           WHERE model_name = %s AND alias = %s AND moved_at <= %s ORDER BY moved_at, id""",
        (name, CHAMPION, end),
    ).fetchall()
    for i, (version, moved_at) in enumerate(events):
        until = events[i + 1][1] if i + 1 < len(events) else end
        if version is None or until < start:
            continue
        segments.append((str(version), max(moved_at, start), min(until, end), "alias history"))
    step = timedelta(minutes=step_minutes(start, end, max_points))
    # The version of the first prediction made in each step stands for the step: one probe of
    # the (symbol, target, made_at) index per step, not a pass over the range's rows.
    rows = conn.execute(
        """SELECT b.bucket, p.model_version
           FROM generate_series(date_bin(%(step)s, %(start)s::timestamptz, %(origin)s),
                                %(end)s::timestamptz, %(step)s) AS b(bucket)
           CROSS JOIN LATERAL (
               SELECT model_version FROM predictions
               WHERE symbol = %(symbol)s AND target = %(target)s
                 AND made_at >= greatest(b.bucket, %(start)s)
                 AND made_at < b.bucket + %(step)s AND made_at <= %(end)s
               ORDER BY made_at LIMIT 1) p
           ORDER BY 1""",
        {"step": step, "origin": ORIGIN, "symbol": symbol, "target": target,
         "start": start, "end": end},
    ).fetchall()  # fmt: skip
    current: list[Any] | None = None
    for bucket, version in rows:
        if current and current[0] == version and bucket <= current[2] + step:
            current[2] = bucket
            continue
        if current:
            segments.append((current[0], current[1], min(current[2] + step, end), "served"))
        current = [version, max(bucket, start), bucket]
    if current:
        segments.append((current[0], current[1], min(current[2] + step, end), "served"))
    frame = pd.DataFrame(segments, columns=["version", "start", "end", "source"])
    frame["source"] = frame["source"].replace({"served": "served (prediction log)"})
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


# ---------------------------------------------------------------------------------------------
# Data health


@dataclass
class Health:
    """Newest candle per symbol and its age, the gaps in the range, recent ingestion runs."""

    symbols: pd.DataFrame  # symbol, newest, age_minutes, stale, newest_features, gaps
    gaps: pd.DataFrame  # symbol, start, end, minutes
    runs: pd.DataFrame  # started_at, symbol, source, rows_written, outcome, error


def data_health(
    url: str,
    symbol: str,
    start: datetime,
    end: datetime,
    *,
    feature_set: str = "v1",
    stale_after_minutes: float = 5.0,
    now: datetime | None = None,
    runs: int = 30,
) -> Health:
    """Per symbol with candles: the newest candle, its age, the newest feature row and the
    recorded gaps (index probes only: a page must not count a year of rows to say how fresh
    the data is); the gaps of ``symbol`` in the range (:func:`pricebot.gaps.list_gaps`) and
    the recent ingestion runs (:func:`pricebot.runs.recent_runs`), as the CLI reads them."""
    from pricebot.db import connect
    from pricebot.gaps import list_gaps
    from pricebot.runs import recent_runs

    now = now or datetime.now(UTC)
    with connect(url) as conn:
        rows = conn.execute(
            """WITH RECURSIVE s AS (
                   (SELECT symbol FROM klines ORDER BY symbol LIMIT 1)
                   UNION ALL
                   SELECT (SELECT k.symbol FROM klines k WHERE k.symbol > s.symbol
                           ORDER BY k.symbol LIMIT 1)
                   FROM s WHERE s.symbol IS NOT NULL)
               SELECT s.symbol,
                      (SELECT open_time FROM klines k WHERE k.symbol = s.symbol
                       ORDER BY open_time DESC LIMIT 1),
                      (SELECT open_time FROM features f
                       WHERE f.symbol = s.symbol AND f.feature_set = %(feature_set)s
                       ORDER BY open_time DESC LIMIT 1),
                      (SELECT count(*) FROM gaps g WHERE g.symbol = s.symbol)
               FROM s WHERE s.symbol IS NOT NULL ORDER BY 1""",
            {"feature_set": feature_set},
        ).fetchall()
        gaps = list_gaps(conn, symbol, start, end)
        recent = recent_runs(conn, runs)
    symbols = pd.DataFrame(rows, columns=["symbol", "newest", "newest_features", "gaps"])
    for column in ("newest", "newest_features"):
        symbols[column] = pd.to_datetime(symbols[column], utc=True)
    # A candle opened at t is complete at t + 1 min: its age counts from then.
    age = (pd.Timestamp(now) - symbols["newest"] - pd.Timedelta(minutes=1)) / pd.Timedelta(
        minutes=1
    )
    symbols["age_minutes"] = age.clip(lower=0).astype("float64")
    symbols["stale"] = symbols["age_minutes"] > stale_after_minutes
    gap_frame = pd.DataFrame(
        [(g.symbol, g.start, g.end + timedelta(minutes=1), g.minutes) for g in gaps],
        columns=["symbol", "start", "end", "minutes"],
    )
    run_frame = pd.DataFrame(
        [(r[3], r[1], r[2], r[6], r[10], r[11]) for r in recent],
        columns=["started_at", "symbol", "source", "rows_written", "outcome", "error"],
    )
    for frame, columns in ((gap_frame, ("start", "end")), (run_frame, ("started_at",))):
        for column in columns:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return Health(symbols, gap_frame, run_frame)
