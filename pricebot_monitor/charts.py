"""Altair charts, one per view. Each takes what :mod:`pricebot.monitoring` returns and draws it;
no computing here beyond picking columns."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from pricebot.monitoring import Health, PoolCurves

TIME_AXIS = alt.Axis(format="%Y-%m-%d %H:%M", labelAngle=0, title="time (UTC)", labelOverlap=True)
HEIGHT = 280
PREDICTED = "#f58518"
ACTUAL = "#4c4c4c"
IN_SAMPLE = "#9e9e9e"
IN_SAMPLE_LABEL = "in-sample: trained on"


def _time(field: str = "time", title: str = "time (UTC)") -> alt.X:
    return alt.X(f"{field}:T", scale=alt.Scale(type="utc"), axis=TIME_AXIS, title=title)


def in_sample_band(spans: pd.DataFrame, offset: pd.Timedelta | None = None) -> alt.LayerChart:
    """Shaded spans where the points are rows their version was trained on, labelled."""
    frame = spans.assign(label=IN_SAMPLE_LABEL)
    if offset is not None:
        frame = frame.assign(start=frame["start"] + offset, end=frame["end"] + offset)
    base = alt.Chart(frame)
    rect = base.mark_rect(color=IN_SAMPLE, opacity=0.18).encode(
        _time("start"),
        alt.X2("end:T"),
        tooltip=[
            alt.Tooltip("label:N", title="in-sample"),
            "version:N",
            alt.Tooltip("start:T", format="%Y-%m-%d %H:%M"),
            alt.Tooltip("end:T", format="%Y-%m-%d %H:%M"),
        ],
    )
    text = base.mark_text(align="left", baseline="top", dx=4, color="#616161").encode(
        _time("start"), y=alt.value(4), text="label:N"
    )
    return alt.layer(rect, text)


def _split(points: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Out-of-sample and in-sample points."""
    flags = points["in_sample"].fillna(False).astype(bool) if "in_sample" in points else None
    if flags is None:
        return points, points.iloc[0:0]
    return points[~flags], points[flags]


def price_with_predictions(
    prices: pd.DataFrame,
    points: pd.DataFrame,
    label: str,
    spans: pd.DataFrame | None = None,
    horizon: pd.Timedelta | None = None,
) -> alt.Chart:
    """The price, and each prediction drawn where its horizon ends: the predicted price beside
    the price that came. In-sample predictions are grey over a shaded span."""
    predicted_name = f"predicted price at horizon end ({label})"
    in_sample_name = f"predicted price, {IN_SAMPLE_LABEL}"
    colors = alt.Scale(
        domain=["price (close)", predicted_name, in_sample_name],
        range=[ACTUAL, PREDICTED, IN_SAMPLE],
    )
    price = (
        alt.Chart(prices.assign(series="price (close)"))
        .mark_line(strokeWidth=1.2)
        .encode(
            _time(),
            alt.Y("close:Q", scale=alt.Scale(zero=False), title="price"),
            alt.Color("series:N", title=None, scale=colors),
            tooltip=[alt.Tooltip("time:T", format="%Y-%m-%d %H:%M"), "close:Q", "low:Q", "high:Q"],
        )
    )
    layers: list = []
    if spans is not None and not spans.empty:
        layers.append(in_sample_band(spans, horizon))
    layers.append(price)
    out_of_sample, in_sample = _split(points.dropna(subset=["predicted_price"]))
    for part, name, dash in (
        (in_sample, in_sample_name, [4, 3]),
        (out_of_sample, predicted_name, [1, 0]),
    ):
        if part.empty:
            continue
        frame = part[["end_time", "predicted_price", "end_close", "time"]].assign(series=name)
        layers.append(
            alt.Chart(frame)
            .mark_line(strokeWidth=1, opacity=0.85, strokeDash=dash, point=len(frame) < 60)
            .encode(
                _time("end_time"),
                alt.Y("predicted_price:Q", scale=alt.Scale(zero=False)),
                alt.Color("series:N", title=None, scale=colors),
                tooltip=[
                    alt.Tooltip("time:T", title="predicted at", format="%Y-%m-%d %H:%M"),
                    alt.Tooltip("end_time:T", title="for", format="%Y-%m-%d %H:%M"),
                    alt.Tooltip("predicted_price:Q", format=",.4f"),
                    alt.Tooltip("end_close:Q", title="actual price", format=",.4f"),
                ],
            )
        )
    return (
        alt.layer(*layers)
        .properties(height=HEIGHT)
        .configure_legend(orient="top", labelLimit=400)
        .interactive(bind_y=False)
    )


def predicted_growth(
    points: pd.DataFrame, classification: bool, spans: pd.DataFrame | None = None
) -> alt.Chart:
    """The prediction over time (a return in %, or a probability) against what happened;
    in-sample predictions grey over a shaded span."""
    value = "probability of the event" if classification else "return over the horizon (%)"
    scale = 1.0 if classification else 100.0
    in_sample_name = f"predicted, {IN_SAMPLE_LABEL}"
    flags = points["in_sample"].fillna(False).astype(bool) if "in_sample" in points else False
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "time": points["time"],
                    "series": np.where(flags, in_sample_name, "predicted"),
                    "value": points["prediction"] * scale,
                }
            ),
            pd.DataFrame(
                {"time": points["time"], "series": "actual", "value": points["actual"] * scale}
            ),
        ],
        ignore_index=True,
    ).dropna()
    lines = (
        alt.Chart(frame)
        .mark_line(strokeWidth=1.2, point=len(points) < 60)  # a handful of points: show them
        .encode(
            _time(title="predicted at (UTC)"),
            alt.Y("value:Q", title=value),
            alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(
                    domain=["predicted", in_sample_name, "actual"],
                    range=[PREDICTED, IN_SAMPLE, ACTUAL],
                ),
            ),
            tooltip=[
                alt.Tooltip("time:T", format="%Y-%m-%d %H:%M"),
                "series:N",
                alt.Tooltip("value:Q", format=".3f"),
            ],
        )
    )
    zero = (
        alt.Chart(pd.DataFrame({"y": [0.5 if classification else 0.0]}))
        .mark_rule(color="grey", strokeWidth=0.6)
        .encode(y="y:Q")
    )
    layers: list = [lines, zero]
    if spans is not None and not spans.empty:
        layers.insert(0, in_sample_band(spans))
    return alt.layer(*layers).properties(height=220).configure_legend(orient="top")


SERIES_COLORS = alt.Scale(
    domain=["model", "no_change", "momentum", "recent_mean", "buy_and_hold"],
    range=[PREDICTED, "#7f7f7f", "#d62728", "#2ca02c", "#1f77b4"],
)


def rolling_errors(metrics: pd.DataFrame, window_label: str, width: int = 860) -> alt.Chart:
    """Rolling MAE and directional accuracy on one chart (a row each), the model bold and the
    baselines dashed, all on the same points."""
    kind = metrics["series"].eq("model").map({True: "model", False: "baseline"})
    frame = metrics.assign(kind=kind)
    return (
        alt.Chart(frame)
        .mark_line()
        .encode(
            _time(),
            alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
            alt.Color("series:N", title=f"rolling over {window_label}", scale=SERIES_COLORS),
            alt.StrokeDash("kind:N", sort=["model", "baseline"], legend=None),
            alt.StrokeWidth(
                "kind:N",
                scale=alt.Scale(domain=["model", "baseline"], range=[2.2, 1.1]),
                legend=None,
            ),
            tooltip=[
                alt.Tooltip("time:T", format="%Y-%m-%d %H:%M"),
                "metric:N",
                "series:N",
                alt.Tooltip("value:Q", format=".4f"),
            ],
        )
        .properties(height=200, width=width)
        .facet(
            row=alt.Row(
                "metric:N",
                title=None,
                sort=["mae", "directional_accuracy"],
                header=alt.Header(labelOrient="top", labelFontWeight="bold"),
            )
        )
        .resolve_scale(y="independent")
        .configure_legend(orient="top")
    )


def pool_value(pools: PoolCurves) -> alt.Chart:
    lines = (
        alt.Chart(pools.curve)
        .mark_line(interpolate="step-after", strokeWidth=1.4)
        .encode(
            _time(),
            alt.Y("value:Q", title="value of 1.0 invested", scale=alt.Scale(zero=False)),
            alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(
                    domain=["model (after fees)", "buy and hold (after fees)"],
                    range=[PREDICTED, ACTUAL],
                ),
            ),
            tooltip=[
                alt.Tooltip("time:T", format="%Y-%m-%d %H:%M"),
                "series:N",
                alt.Tooltip("value:Q", format=".4f"),
            ],
        )
    )
    even = alt.Chart(pd.DataFrame({"y": [1.0]})).mark_rule(color="grey", strokeWidth=0.6)
    return (
        alt.layer(lines, even.encode(y="y:Q"))
        .properties(height=HEIGHT)
        .configure_legend(orient="top")
    )


def champion_timeline(segments: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(segments.assign(version="v" + segments["version"].astype(str)))
        .mark_bar(height=18)
        .encode(
            _time("start"),
            alt.X2("end:T"),
            alt.Y("source:N", title=None, axis=alt.Axis(labelLimit=220)),
            alt.Color("version:N", title="version"),
            tooltip=[
                "version:N",
                "source:N",
                alt.Tooltip("start:T", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("end:T", format="%Y-%m-%d %H:%M"),
            ],
        )
        .properties(height=110)
        .configure_legend(orient="top")
    )


def candle_age(health: Health, stale_minutes: float) -> alt.Chart:
    frame = health.symbols.assign(
        state=health.symbols["stale"].map(
            {True: f"stale (> {stale_minutes:g} min)", False: "fresh"}
        )
    )
    return (
        alt.Chart(frame)
        .mark_bar(size=22)
        .encode(
            alt.X(
                "age_minutes:Q",
                title=f"age of the newest candle (minutes; red: older than {stale_minutes:g})",
            ),
            alt.Y("symbol:N", title=None),
            alt.Color(
                "state:N",
                legend=None,
                scale=alt.Scale(
                    domain=["fresh", f"stale (> {stale_minutes:g} min)"],
                    range=["#4c9a2a", "#d62728"],
                ),
            ),
            tooltip=[
                "symbol:N",
                alt.Tooltip("newest:T", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("age_minutes:Q", format=",.1f"),
                "candles:Q",
                "gaps:Q",
                "feature_rows:Q",
            ],
        )
        .properties(height=alt.Step(34), title="Newest candle per symbol")
    )


def gaps(frame: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(frame)
        .mark_bar(height=16, color="#d62728")
        .encode(
            _time("start"),
            alt.X2("end:T"),
            alt.Y("symbol:N", title=None),
            tooltip=[alt.Tooltip("start:T", format="%Y-%m-%d %H:%M"), "minutes:Q"],
        )
        .properties(height=80, title="Gaps (minutes the exchange had no candle)")
    )


def ingestion_runs(frame: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(frame)
        .mark_circle(size=70)
        .encode(
            _time("started_at", "started (UTC)"),
            alt.Y("rows_written:Q", title="rows written"),
            alt.Color(
                "outcome:N",
                scale=alt.Scale(
                    domain=["success", "running", "failed"], range=["#4c9a2a", "#1f77b4", "#d62728"]
                ),
            ),
            alt.Shape("symbol:N"),
            tooltip=[
                "symbol:N",
                "source:N",
                "outcome:N",
                "rows_written:Q",
                "error:N",
                alt.Tooltip("started_at:T", format="%Y-%m-%d %H:%M:%S"),
            ],
        )
        .properties(height=200, title="Recent ingestion runs")
    )
