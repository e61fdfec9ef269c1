"""The page's charts as Vega-Lite specifications, one per view, for ``st.vega_lite_chart``.

Each function takes what :mod:`pricebot.monitoring` returns and writes the chart as a plain
Vega-Lite dict whose data are named datasets (DataFrames, sent to the browser as Arrow). Plain
dicts rather than Altair objects: Altair costs most of a second to import and, per chart, tens
of milliseconds to infer encodings and validate the result against its schema, on every rerun
of the page; the browser draws the same specification either way. No computing here beyond
picking columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pricebot.monitoring import Health, PoolCurves

Spec = dict[str, Any]

TIME_FORMAT = "%Y-%m-%d %H:%M"
HEIGHT = 280
PREDICTED = "#f58518"
ACTUAL = "#4c4c4c"
IN_SAMPLE = "#9e9e9e"
IN_SAMPLE_LABEL = "in-sample: trained on"
SERIES = ["model", "no_change", "momentum", "recent_mean", "buy_and_hold"]
SERIES_COLORS = [PREDICTED, "#7f7f7f", "#d62728", "#2ca02c", "#1f77b4"]
LEGEND_ON_TOP = {"legend": {"orient": "top", "labelLimit": 400}}
#: Canvas, not SVG: thousands of points per chart draw several times faster on a canvas.
CANVAS = {"embedOptions": {"renderer": "canvas"}}


def time_x(field: str = "time", title: str = "time (UTC)") -> Spec:
    """A UTC time axis (the browser's own time zone never shows)."""
    return {
        "field": field,
        "type": "temporal",
        "scale": {"type": "utc"},
        "title": title,
        # With a UTC scale, the format is applied in UTC.
        "axis": {"format": TIME_FORMAT, "labelAngle": 0, "labelOverlap": True},
    }


def time_tip(field: str, title: str | None = None, fmt: str = TIME_FORMAT) -> Spec:
    """A time in a tooltip, in UTC (a UTC time unit makes Vega-Lite format it in UTC)."""
    unit = "utcyearmonthdatehoursminutesseconds" if "%S" in fmt else "utcyearmonthdatehoursminutes"
    tip: Spec = {"field": field, "type": "temporal", "timeUnit": unit, "format": fmt}
    if title:
        tip["title"] = title
    return tip


def number_tip(field: str, title: str | None = None, fmt: str | None = None) -> Spec:
    tip: Spec = {"field": field, "type": "quantitative"}
    if title:
        tip["title"] = title
    if fmt:
        tip["format"] = fmt
    return tip


def text_tip(field: str, title: str | None = None) -> Spec:
    tip: Spec = {"field": field, "type": "nominal"}
    if title:
        tip["title"] = title
    return tip


def colors(domain: list[str], range_: list[str], title: str | None = None) -> Spec:
    return {
        "field": "series",
        "type": "nominal",
        "title": title,
        "scale": {"domain": domain, "range": range_},
    }


def in_sample_layers(dataset: str, axis_title: str = "time (UTC)") -> list[Spec]:
    """Shaded spans where the points are rows their version was trained on, labelled."""
    tooltip = [
        text_tip("label", "in-sample"),
        text_tip("version"),
        time_tip("start"),
        time_tip("end"),
    ]
    return [
        {
            "data": {"name": dataset},
            "mark": {"type": "rect", "color": IN_SAMPLE, "opacity": 0.18},
            "encoding": {
                "x": time_x("start", axis_title),
                "x2": {"field": "end"},
                "tooltip": tooltip,
            },
        },
        {
            "data": {"name": dataset},
            "mark": {
                "type": "text",
                "align": "left",
                "baseline": "top",
                "dx": 4,
                "color": "#616161",
            },
            "encoding": {
                "x": time_x("start", axis_title),
                "y": {"value": 4},
                "text": {"field": "label", "type": "nominal"},
            },
        },
    ]


def _spans(spans: pd.DataFrame | None, offset: pd.Timedelta | None = None) -> pd.DataFrame | None:
    if spans is None or spans.empty:
        return None
    frame = spans.assign(label=IN_SAMPLE_LABEL, version=spans["version"].astype(str))
    if offset is not None:
        frame = frame.assign(start=frame["start"] + offset, end=frame["end"] + offset)
    return frame


def _in_sample_flags(points: pd.DataFrame) -> np.ndarray:
    if "in_sample" not in points:
        return np.zeros(len(points), dtype=bool)
    return points["in_sample"].fillna(False).to_numpy(dtype=bool)


def price_with_predictions(
    prices: pd.DataFrame,
    points: pd.DataFrame,
    label: str,
    spans: pd.DataFrame | None = None,
    horizon: pd.Timedelta | None = None,
) -> Spec:
    """The price, and each prediction drawn where its horizon ends: the predicted price beside
    the price that came. In-sample predictions are grey and dashed over a shaded span."""
    predicted_name = f"predicted price at horizon end ({label})"
    in_sample_name = f"predicted price, {IN_SAMPLE_LABEL}"
    drawn = points.dropna(subset=["predicted_price"])
    flags = _in_sample_flags(drawn)
    names, shades = ["price (close)"], [ACTUAL]
    if (~flags).any():
        names, shades = [*names, predicted_name], [*shades, PREDICTED]
    if flags.any():
        names, shades = [*names, in_sample_name], [*shades, IN_SAMPLE]
    color = colors(names, shades)
    datasets: dict[str, pd.DataFrame] = {
        "prices": prices[["time", "close", "low", "high"]].assign(series="price (close)")
    }
    layers: list[Spec] = []
    shaded = _spans(spans, horizon)
    if shaded is not None:
        datasets["in_sample"] = shaded
        layers += in_sample_layers("in_sample")
    layers.append(
        {
            "data": {"name": "prices"},
            "mark": {"type": "line", "strokeWidth": 1.2},
            "params": [
                {
                    "name": "zoom",
                    "select": {"type": "interval", "encodings": ["x"]},
                    "bind": "scales",
                }
            ],
            "encoding": {
                "x": time_x(),
                "y": {
                    "field": "close",
                    "type": "quantitative",
                    "title": "price",
                    "scale": {"zero": False},
                },
                "color": color,
                "tooltip": [
                    time_tip("time"),
                    number_tip("close"),
                    number_tip("low"),
                    number_tip("high"),
                ],
            },
        }
    )
    for part, name, dash in (
        (drawn[flags], in_sample_name, [4, 3]),
        (drawn[~flags], predicted_name, [1, 0]),
    ):
        if part.empty:
            continue
        key = "in_sample_predictions" if dash[0] == 4 else "predictions"
        datasets[key] = part[["end_time", "predicted_price", "end_close", "time"]].assign(
            series=name
        )
        layers.append(
            {
                "data": {"name": key},
                "mark": {
                    "type": "line",
                    "strokeWidth": 1,
                    "opacity": 0.85,
                    "strokeDash": dash,
                    "point": len(part) < 60,
                },
                "encoding": {
                    "x": time_x("end_time"),
                    "y": {
                        "field": "predicted_price",
                        "type": "quantitative",
                        "scale": {"zero": False},
                    },
                    "color": color,
                    "tooltip": [
                        time_tip("time", "predicted at"),
                        time_tip("end_time", "for"),
                        number_tip("predicted_price", fmt=",.4f"),
                        number_tip("end_close", "actual price", ",.4f"),
                    ],
                },
            }
        )
    return {
        "datasets": datasets,
        "layer": layers,
        "height": HEIGHT,
        "config": LEGEND_ON_TOP,
        "usermeta": CANVAS,
    }


def predicted_growth(
    points: pd.DataFrame, classification: bool, spans: pd.DataFrame | None = None
) -> Spec:
    """The prediction over time (a return in %, or a probability) against what happened;
    in-sample predictions grey over a shaded span."""
    value = "probability of the event" if classification else "return over the horizon (%)"
    scale = 1.0 if classification else 100.0
    in_sample_name = f"predicted, {IN_SAMPLE_LABEL}"
    flags = _in_sample_flags(points)
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
    datasets: dict[str, pd.DataFrame] = {
        "growth": frame,
        "zero": pd.DataFrame({"y": [0.5 if classification else 0.0]}),
    }
    layers: list[Spec] = []
    shaded = _spans(spans)
    if shaded is not None:
        datasets["in_sample"] = shaded
        layers += in_sample_layers("in_sample", "predicted at (UTC)")
    layers += [
        {
            "data": {"name": "growth"},
            "mark": {"type": "line", "strokeWidth": 1.2, "point": len(points) < 60},
            "encoding": {
                "x": time_x(title="predicted at (UTC)"),
                "y": {"field": "value", "type": "quantitative", "title": value},
                "color": colors(*growth_series(bool(flags.any()))),
                "tooltip": [
                    time_tip("time"),
                    text_tip("series"),
                    number_tip("value", fmt=".3f"),
                ],
            },
        },
        {
            "data": {"name": "zero"},
            "mark": {"type": "rule", "color": "grey", "strokeWidth": 0.6},
            "encoding": {"y": {"field": "y", "type": "quantitative"}},
        },
    ]
    return {
        "datasets": datasets,
        "layer": layers,
        "height": 220,
        "config": LEGEND_ON_TOP,
        "usermeta": CANVAS,
    }


def growth_series(in_sample: bool) -> tuple[list[str], list[str]]:
    """The growth chart's series and colours: the in-sample series only when there is one."""
    if in_sample:
        names = ["predicted", f"predicted, {IN_SAMPLE_LABEL}", "actual"]
        return names, [PREDICTED, IN_SAMPLE, ACTUAL]
    return ["predicted", "actual"], [PREDICTED, ACTUAL]


def rolling_errors(metrics: pd.DataFrame, window_label: str, width: int = 860) -> Spec:
    """Rolling MAE and directional accuracy on one chart (a row each), the model bold and the
    baselines dashed, all on the same points."""
    frame = metrics.assign(kind=np.where(metrics["series"].eq("model"), "model", "baseline"))
    return {
        "datasets": {"metrics": frame},
        "data": {"name": "metrics"},
        "facet": {
            "row": {
                "field": "metric",
                "type": "nominal",
                "title": None,
                "sort": ["mae", "directional_accuracy"],
                "header": {"labelOrient": "top", "labelFontWeight": "bold"},
            }
        },
        "spec": {
            "width": width,
            "height": 200,
            "mark": {"type": "line"},
            "encoding": {
                "x": time_x(),
                "y": {
                    "field": "value",
                    "type": "quantitative",
                    "title": None,
                    "scale": {"zero": False},
                },
                "color": {
                    "field": "series",
                    "type": "nominal",
                    "title": f"rolling over {window_label}",
                    "scale": {"domain": SERIES, "range": SERIES_COLORS},
                },
                "strokeDash": {
                    "field": "kind",
                    "type": "nominal",
                    "legend": None,
                    "sort": ["model", "baseline"],
                },
                "strokeWidth": {
                    "field": "kind",
                    "type": "nominal",
                    "legend": None,
                    "scale": {"domain": ["model", "baseline"], "range": [2.2, 1.1]},
                },
                "tooltip": [
                    time_tip("time"),
                    text_tip("metric"),
                    text_tip("series"),
                    number_tip("value", fmt=".4f"),
                ],
            },
        },
        "resolve": {"scale": {"y": "independent"}},
        "config": LEGEND_ON_TOP,
        "usermeta": CANVAS,
    }


def pool_value(pools: PoolCurves) -> Spec:
    names = ["model (after fees)", "buy and hold (after fees)"]
    return {
        "datasets": {"pools": pools.curve, "even": pd.DataFrame({"y": [1.0]})},
        "layer": [
            {
                "data": {"name": "pools"},
                "mark": {"type": "line", "interpolate": "step-after", "strokeWidth": 1.4},
                "encoding": {
                    "x": time_x(),
                    "y": {
                        "field": "value",
                        "type": "quantitative",
                        "title": "value of 1.0 invested",
                        "scale": {"zero": False},
                    },
                    "color": colors(names, [PREDICTED, ACTUAL]),
                    "tooltip": [
                        time_tip("time"),
                        text_tip("series"),
                        number_tip("value", fmt=".4f"),
                    ],
                },
            },
            {
                "data": {"name": "even"},
                "mark": {"type": "rule", "color": "grey", "strokeWidth": 0.6},
                "encoding": {"y": {"field": "y", "type": "quantitative"}},
            },
        ],
        "height": HEIGHT,
        "config": LEGEND_ON_TOP,
        "usermeta": CANVAS,
    }


def champion_timeline(segments: pd.DataFrame) -> Spec:
    frame = segments.assign(version="v" + segments["version"].astype(str))
    return {
        "datasets": {"segments": frame},
        "data": {"name": "segments"},
        "mark": {"type": "bar", "height": 18},
        "encoding": {
            "x": time_x("start"),
            "x2": {"field": "end"},
            "y": {"field": "source", "type": "nominal", "title": None, "axis": {"labelLimit": 220}},
            "color": {"field": "version", "type": "nominal", "title": "version"},
            "tooltip": [
                text_tip("version"),
                text_tip("source"),
                time_tip("start"),
                time_tip("end"),
            ],
        },
        "height": 110,
        "config": LEGEND_ON_TOP,
    }


def candle_age(health: Health, stale_minutes: float) -> Spec:
    stale = f"stale (> {stale_minutes:g} min)"
    frame = health.symbols.assign(state=np.where(health.symbols["stale"], stale, "fresh"))
    return {
        "datasets": {"symbols": frame},
        "data": {"name": "symbols"},
        "title": "Newest candle per symbol",
        "mark": {"type": "bar", "size": 22},
        "encoding": {
            "x": {
                "field": "age_minutes",
                "type": "quantitative",
                "title": f"age of the newest candle (minutes; red: older than {stale_minutes:g})",
            },
            "y": {"field": "symbol", "type": "nominal", "title": None},
            "color": {
                "field": "state",
                "type": "nominal",
                "legend": None,
                "scale": {"domain": ["fresh", stale], "range": ["#4c9a2a", "#d62728"]},
            },
            "tooltip": [
                text_tip("symbol"),
                time_tip("newest", "newest candle"),
                number_tip("age_minutes", fmt=",.1f"),
                time_tip("newest_features", "newest feature row"),
                number_tip("gaps"),
            ],
        },
        "height": {"step": 34},
    }


def gaps(frame: pd.DataFrame) -> Spec:
    return {
        "datasets": {"gaps": frame},
        "data": {"name": "gaps"},
        "title": "Gaps (minutes the exchange had no candle)",
        "mark": {"type": "bar", "height": 16, "color": "#d62728"},
        "encoding": {
            "x": time_x("start"),
            "x2": {"field": "end"},
            "y": {"field": "symbol", "type": "nominal", "title": None},
            "tooltip": [time_tip("start"), number_tip("minutes")],
        },
        "height": 80,
    }


def ingestion_runs(frame: pd.DataFrame) -> Spec:
    return {
        "datasets": {"runs": frame},
        "data": {"name": "runs"},
        "title": "Recent ingestion runs",
        "mark": {"type": "circle", "size": 70},
        "encoding": {
            "x": time_x("started_at", "started (UTC)"),
            "y": {"field": "rows_written", "type": "quantitative", "title": "rows written"},
            "color": {
                "field": "outcome",
                "type": "nominal",
                "scale": {
                    "domain": ["success", "running", "failed"],
                    "range": ["#4c9a2a", "#1f77b4", "#d62728"],
                },
            },
            "shape": {"field": "symbol", "type": "nominal"},
            "tooltip": [
                text_tip("symbol"),
                text_tip("source"),
                text_tip("outcome"),
                number_tip("rows_written"),
                text_tip("error"),
                time_tip("started_at", fmt="%Y-%m-%d %H:%M:%S"),
            ],
        },
        "height": 200,
    }
