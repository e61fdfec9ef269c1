"""The monitoring page: how each model did, over time. ``pricebot monitor`` serves it.

It reads PostgreSQL and the MLflow registry only; everything it shows is computed by
:mod:`pricebot.monitoring` (through :mod:`pricebot_monitor.data`, which caches) and drawn by
:mod:`pricebot_monitor.charts`. A fault in one view is a message in that view, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from pricebot import errors, monitoring
from pricebot.errors import DatabaseUnavailableError, TargetSpecError
from pricebot.registry import CHAMPION
from pricebot.settings import get_settings
from pricebot.targets import TargetSpec, parse_target
from pricebot_monitor import charts, data

DEFAULT_DAYS = 7
EMPTY_POINTS = pd.DataFrame(columns=["time", "end_time", "predicted_price", "end_close"])


@contextmanager
def shown_as_message(view: str) -> Iterator[None]:
    """Turn the errors a view can meet into a message in the page (no traceback)."""
    try:
        yield
    except DatabaseUnavailableError as exc:
        st.error(f"{view}: the database is unreachable. {exc}")
    except errors.TrackingUnavailableError as exc:
        st.warning(f"{view}: {exc}")
    except errors.NoChampionError as exc:
        st.info(f"{view}: {exc}")
    except (errors.RangeError, TargetSpecError) as exc:
        st.error(f"{view}: {exc}")
    except Exception as exc:  # the page must stay readable whatever broke
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        st.error(f"{view} could not be drawn: {type(exc).__name__}: {first}")


def moment(label: str, default: datetime) -> datetime:
    """A date and a time input read as one UTC moment."""
    left, right = st.sidebar.columns(2)
    day = left.date_input(f"{label} date (UTC)", value=default.date())
    clock = right.time_input(f"{label} time (UTC)", value=default.time(), step=timedelta(hours=1))
    return datetime.combine(day, clock if isinstance(clock, time) else time(), tzinfo=UTC)


def default_range(span: tuple[datetime, datetime] | None) -> tuple[datetime, datetime]:
    """The last week of stored candles (or up to now when there are none)."""
    newest = span[1] if span else datetime.now(UTC)
    end = (newest + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=DEFAULT_DAYS)
    if span:
        start = max(start, span[0].replace(minute=0, second=0, microsecond=0))
    return start, end


def opening_choice() -> dict[str, str]:
    """What the page's address asked for when the session opened (``?symbol=ETHUSDT&target=
    ret24h&start=2026-05-01T00:00&end=2026-06-01T00:00&model=champion``): read once, so the
    widgets' defaults, and with them the widgets, stay the same for the whole session."""
    if "opening_choice" not in st.session_state:
        st.session_state["opening_choice"] = {k: st.query_params[k] for k in st.query_params}
    return st.session_state["opening_choice"]


def asked_moment(asked: dict[str, str], key: str, default: datetime) -> datetime:
    """A moment from the address (ISO 8601, UTC), or ``default`` when absent or unreadable."""
    try:
        value = datetime.fromisoformat(asked[key])
    except (KeyError, ValueError):
        return default
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def index_of(options: list[str], wanted: str | None) -> int:
    return options.index(wanted) if wanted in options else 0


def model_label(choices: monitoring.ModelChoices | None) -> Callable[[str], str]:
    def label(option: str) -> str:
        if option == CHAMPION:
            live = choices.champion if choices else None
            return f"live champion (version {live})" if live else "live champion (none yet)"
        if option == monitoring.AS_LOGGED:
            return "as logged (what was served)"
        return f"version {option}"

    return label


def main() -> None:
    st.set_page_config(page_title="pricebot monitoring", layout="wide")
    st.title("pricebot: how the models did")
    settings = get_settings()
    url, uri = settings.database_url, monitoring.tracking_uri()
    asked = opening_choice()

    try:
        symbols = data.symbols(url, tuple(settings.symbols))
    except DatabaseUnavailableError as exc:
        st.error(f"The database is unreachable, so there is nothing to show yet. {exc}")
        st.stop()
    sidebar = st.sidebar
    sidebar.header("What to show")
    symbol = sidebar.selectbox("Symbol", symbols, index=index_of(symbols, asked.get("symbol")))
    try:
        targets = data.targets(url, symbol, tuple(settings.targets))
        span = data.candle_span(url, symbol)
    except DatabaseUnavailableError as exc:
        st.error(f"The database is unreachable. {exc}")
        st.stop()
    target = sidebar.selectbox("Target", targets, index=index_of(targets, asked.get("target")))
    default_start, default_end = default_range(span)
    start = moment("Start", asked_moment(asked, "start", default_start))
    end = moment("End", asked_moment(asked, "end", default_end))
    # Messages about the choice go above the charts, though some are known only later.
    notes = st.container()
    try:
        monitoring.check_range(start, end, settings.monitor_max_range_days)
        spec = parse_target(target)
    except (errors.RangeError, TargetSpecError) as exc:
        st.error(str(exc))
        st.stop()
    if span is None:
        notes.info(
            f"No candles are stored for {symbol} yet: run `pricebot ingest --symbol {symbol}` "
            "(or `make demo`)."
        )
    elif end < span[0] or start > span[1]:
        notes.info(
            f"No candles for {symbol} between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} "
            f"UTC: stored candles run from {span[0]:%Y-%m-%d %H:%M} to {span[1]:%Y-%m-%d %H:%M}. "
            "Pick a range inside it."
        )

    # The price first: it needs the database only, so it is drawn while the registry and the
    # predictions are read, and the predictions are drawn over it when they are ready.
    st.subheader(f"{symbol} {spec.name}: price and predictions")
    price_slot = st.empty()
    prices = first_price_view(price_slot, url, symbol, spec, start, end)

    choices: monitoring.ModelChoices | None = None
    try:
        choices = data.model_choices(uri, symbol, target)
    except errors.TrackingUnavailableError as exc:
        notes.warning(str(exc))
    options = [monitoring.AS_LOGGED]
    if choices and choices.versions:
        options = [CHAMPION, monitoring.AS_LOGGED, *choices.versions]
    if choices and not choices.champion and choices.versions:
        options.remove(CHAMPION)
    model = sidebar.selectbox(
        "Model", options, index=index_of(options, asked.get("model")),
        format_func=model_label(choices),
    )  # fmt: skip
    sidebar.caption(
        "A registered version served on less than half of the range is replayed over it: "
        "computed now from the stored features, and labelled as a replay."
    )
    if choices is not None and not choices.versions:
        notes.info(
            f"No model is registered for {symbol} {target} yet: run `pricebot train --symbol "
            f"{symbol}`. Prices and data health are shown; predictions appear once a model "
            "serves or is registered."
        )
    st.query_params.from_dict(
        {"symbol": symbol, "target": target, "start": f"{start:%Y-%m-%dT%H:%M}",
         "end": f"{end:%Y-%m-%dT%H:%M}", "model": model}
    )  # fmt: skip

    points = price_view(price_slot, prices, url, uri, symbol, spec, start, end, model, choices)
    error_view(points, spec, start, end)
    pool_view(points, spec)
    timeline_view(url, symbol, spec.name, start, end, choices)
    health_view(url, symbol, start, end)
    step = monitoring.step_minutes(start, end)
    st.caption(
        f"Range shown: {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, one point per "
        f"{step} min (at most {monitoring.MAX_POINTS:,} per series)."
    )


def first_price_view(
    slot: DeltaGenerator, url: str, symbol: str, spec: TargetSpec, start: datetime, end: datetime
) -> pd.DataFrame | None:
    """The price alone, up to one horizon past the end (where the last predictions' outcomes
    are); None when it cannot be read (the message is in the slot)."""
    with slot.container(), shown_as_message("Price and predictions"):
        horizon = timedelta(minutes=spec.horizon_minutes)
        prices = data.prices(url, symbol, start, end + horizon)
        if prices.empty:
            st.info(f"No candles for {symbol} in this range.")
            return None
        st.vega_lite_chart(
            spec=charts.price_with_predictions(prices, EMPTY_POINTS, ""), width="stretch"
        )
        return prices
    return None


def price_view(
    slot: DeltaGenerator,
    prices: pd.DataFrame | None,
    url: str,
    uri: str | None,
    symbol: str,
    spec: TargetSpec,
    start: datetime,
    end: datetime,
    model: str,
    choices: monitoring.ModelChoices | None,
) -> monitoring.Points | None:
    """The predictions over the price, against what happened, and the predicted growth."""
    if prices is None:
        return None
    settings = get_settings()
    with slot.container(), shown_as_message("Price and predictions"):
        key = (choices.champion, tuple(choices.versions)) if choices else None
        use = model if (choices and choices.versions) else monitoring.AS_LOGGED
        points = data.points(
            url, uri, symbol, spec.name, start, end, use, choices, key, settings.max_gap_minutes
        )
        if points.source == monitoring.REPLAY:
            st.caption(f"**Replay**: {points.label}. Not what was served.")
        else:
            st.caption(f"{points.label.capitalize()}.")
        if points.in_sample_note:
            st.caption(points.in_sample_note)
        spans = monitoring.in_sample_spans(points.frame)
        horizon = timedelta(minutes=spec.horizon_minutes)
        st.vega_lite_chart(
            spec=charts.price_with_predictions(prices, points.frame, points.source, spans, horizon),
            width="stretch",
        )
        if points.frame.empty:
            hint = (
                " for this choice of model."
                if use != monitoring.AS_LOGGED
                else ": the service logged none here. Pick a registered version to replay it."
            )
            st.info(f"No predictions in this range{hint}")
            return points
        st.markdown("**Predicted growth over time**")
        st.vega_lite_chart(
            spec=charts.predicted_growth(points.frame, spec.is_classification, spans),
            width="stretch",
        )
        return points
    return None


def error_view(
    points: monitoring.Points | None, spec: TargetSpec, start: datetime, end: datetime
) -> None:
    st.subheader("Error over time, against the baselines")
    with shown_as_message("Error over time"):
        if points is None or points.frame.empty:
            st.info("No predictions to score in this range.")
            return
        window = monitoring.default_window_minutes(start, end, spec.horizon_minutes)
        metrics = monitoring.rolling_metrics(points.frame, spec, window)
        if metrics.empty:
            st.info(out_of_sample_hint(points, spec, "to score"))
            return
        label = f"{window / 60:g} h" if window >= 60 else f"{window} min"
        st.vega_lite_chart(spec=charts.rolling_errors(metrics, label), width="stretch")
        st.caption(excluded_note(points))


def pool_view(points: monitoring.Points | None, spec: TargetSpec) -> None:
    st.subheader("Pool value after fees vs buy-and-hold")
    with shown_as_message("Pool value"):
        if points is None or points.frame.empty:
            st.info("No predictions to trade on in this range.")
            return
        pools = monitoring.pool_curves(points.frame, spec, points.step_minutes)
        if pools.curve.empty:
            st.info(out_of_sample_hint(points, spec, "to trade on"))
            return
        st.vega_lite_chart(spec=charts.pool_value(pools), width="stretch")
        st.caption(
            f"Model {pools.model_value:.4f} vs buy-and-hold {pools.buy_hold_value:.4f} (1.0 = "
            f"broke even; 0.1% fee per side; {pools.pools} staggered pools, {pools.trades} buys). "
            + excluded_note(points)
        )


def out_of_sample_hint(points: monitoring.Points, spec: TargetSpec, purpose: str) -> str:
    """Why no point can be scored: all in-sample, or no outcome known yet."""
    if points.in_sample and points.in_sample == len(points.frame):
        return (
            f"No out-of-sample prediction {purpose} in this range: every point is a row its "
            "version was trained on. Move the start after its training data end."
        )
    return (
        f"No out-of-sample prediction in this range has an outcome yet: the horizon "
        f"({spec.horizon_minutes} min) has not passed, its candles are not stored yet, or it "
        "crosses a gap in the candles (no outcome, as in training)."
    )


def excluded_note(points: monitoring.Points) -> str:
    """What the figures leave out: in-sample points and horizons across long gaps."""
    frame = points.frame
    gaps = int(frame["crosses_gap"].sum())
    parts = []
    if points.in_sample:
        parts.append(f"{points.in_sample} in-sample points (trained on) are left out")
    if gaps:
        parts.append(f"{gaps} points whose horizon crosses a gap in the candles have no outcome")
    return ("; ".join(parts) + ".").capitalize() if parts else "Out-of-sample points only."


def timeline_view(
    url: str,
    symbol: str,
    target: str,
    start: datetime,
    end: datetime,
    choices: monitoring.ModelChoices | None,
) -> None:
    st.subheader("Which version was champion when")
    with shown_as_message("Champion timeline"):
        if choices is not None and choices.champion:
            moved = f", moved {choices.champion_moved_at}" if choices.champion_moved_at else ""
            st.caption(f"MLflow now: {choices.name}@champion = version {choices.champion}{moved}.")
        segments = data.timeline(url, symbol, target, start, end)
        if segments.empty:
            st.info("No alias moves or served predictions recorded in this range.")
            return
        st.vega_lite_chart(spec=charts.champion_timeline(segments), width="stretch")


def health_view(url: str, symbol: str, start: datetime, end: datetime) -> None:
    settings = get_settings()
    st.subheader("Data health")
    with shown_as_message("Data health"):
        stale = settings.stale_after_seconds / 60
        health = data.health(url, symbol, start, end, settings.feature_set, stale)
        if health.symbols.empty:
            st.info("No candles stored yet.")
        else:
            st.vega_lite_chart(spec=charts.candle_age(health, stale), width="stretch")
        if health.gaps.empty:
            st.caption(f"No gaps recorded for {symbol} in this range.")
        else:
            st.vega_lite_chart(spec=charts.gaps(health.gaps), width="stretch")
        if health.runs.empty:
            st.caption("No ingestion runs recorded yet.")
            return
        st.vega_lite_chart(spec=charts.ingestion_runs(health.runs), width="stretch")
        failed = health.runs[health.runs["outcome"] == "failed"]
        if not failed.empty:
            st.warning(f"{len(failed)} of the last {len(health.runs)} ingestion runs failed.")
            with st.expander("Failed runs"):
                st.dataframe(failed, hide_index=True)


main()
