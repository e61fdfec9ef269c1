"""Target specs: what a model predicts, named by a short string that is also the model's name.

Grammar (case-insensitive)::

    target     := "ret" horizon                        regression: forward return over the horizon
                | "dir" horizon                        classification: is the close at the horizon
                                                       above the close now
                | ("up" | "down") percent "pct" horizon    classification: does some close within
                                                       the horizon rise / fall by at least percent
                | "trend" ("up" | "down") percent "pct" horizon
                                                       classification: is the moving average over
                                                       one horizon, a horizon from now, at least
                                                       percent above / below today's
    horizon    := integer ("m" | "h" | "d")            minutes, hours, days
    percent    := number, e.g. 2 or 0.5 (written 0p5 is also accepted, for names without dots)

Examples: ``ret24h`` (the default), ``ret60m``, ``dir24h``, ``up2pct24h``, ``down1.5pct4h``,
``trendup5pct10d`` (the 10-day moving average at least 5% above today's in 10 days).

A spec's ``name`` is its canonical spelling, used in model and experiment names, so
``RET1440M`` and ``ret24h`` are the same target and name the same model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pricebot.errors import TargetSpecError

DEFAULT_TARGET = "ret24h"
EXAMPLES = ("ret24h", "ret60m", "dir24h", "up2pct24h", "down1.5pct4h", "trendup5pct10d")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440}
_MAX_HORIZON_MINUTES = 30 * 1440
_PATTERN = re.compile(
    r"^(?:(?P<ret>ret)|(?P<close>dir)|(?P<trend>trend)?(?P<dir>up|down)(?P<pct>\d+(?:[.p]\d+)?)pct)"
    r"(?P<n>\d+)(?P<unit>[mhd])$"
)
Rule = Literal["return", "close", "touch", "trend"]


@dataclass(frozen=True)
class TargetSpec:
    """What to predict: the kind, how far ahead, and for classifiers the move that counts.

    ``threshold`` is a fraction (0.02 = 2%; 0 for ``dir``); ``direction`` is ``up`` or ``down``
    for classification targets and ``None`` for the regression target. ``rule`` says which
    price the move is measured on (see :func:`pricebot.labels.compute_labels`): ``return`` (the
    regression target), ``close`` (the close at the horizon), ``touch`` (any close within the
    horizon), ``trend`` (the moving average over ``window_minutes``, at the horizon).
    """

    name: str
    kind: Literal["regression", "classification"]
    horizon_minutes: int
    threshold: float | None = None
    direction: Literal["up", "down"] | None = None
    rule: Rule = "return"
    window_minutes: int | None = None  # the moving average's window, for ``trend`` targets

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"


def _fail(spec: str, problem: str) -> TargetSpecError:
    return TargetSpecError(
        f"Target spec {spec!r} does not parse: {problem}. Valid examples: {', '.join(EXAMPLES)} "
        "(ret<H> = forward return over H; up<X>pct<H> / down<X>pct<H> = does the close rise / "
        "fall by at least X% within H; H is a number with m, h or d)."
    )


def _canonical_horizon(minutes: int) -> str:
    if minutes % 1440 == 0 and minutes >= 2880:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def parse_target(spec: str) -> TargetSpec:
    """Parse a target spec such as ``ret24h`` or ``up2pct24h`` (see the module docstring)."""
    if not isinstance(spec, str) or not spec.strip():
        raise _fail(str(spec), "it is empty")
    text = spec.strip().lower()
    match = _PATTERN.match(text)
    if match is None:
        if not re.match(r"^(ret|dir|up|down|trend)", text):
            problem = "it must start with 'ret', 'dir', 'up', 'down' or 'trend'"
        elif not re.search(r"\d+[mhd]$", text):
            problem = "it must end with a horizon such as 24h, 60m or 2d"
        elif text.startswith(("up", "down")) and "pct" not in text:
            problem = "a classification target needs a move in percent, e.g. up2pct24h"
        elif text.startswith("trend") and "pct" not in text:
            problem = "a trend target needs a move in percent, e.g. trendup5pct10d"
        else:
            problem = "it does not follow ret<H>, dir<H>, up|down<X>pct<H> or trendup|down<X>pct<H>"
        raise _fail(spec, problem)
    minutes = int(match["n"]) * _UNIT_MINUTES[match["unit"]]
    if minutes <= 0:
        raise _fail(spec, "the horizon must be at least one minute")
    if minutes > _MAX_HORIZON_MINUTES:
        raise _fail(spec, f"the horizon is longer than {_MAX_HORIZON_MINUTES // 1440} days")
    horizon = _canonical_horizon(minutes)
    if match["ret"]:
        return TargetSpec(name=f"ret{horizon}", kind="regression", horizon_minutes=minutes)
    if match["close"]:
        return TargetSpec(
            name=f"dir{horizon}", kind="classification", horizon_minutes=minutes, threshold=0.0,
            direction="up", rule="close",
        )  # fmt: skip
    percent = float(match["pct"].replace("p", "."))
    if not 0 < percent < 100:
        raise _fail(spec, "the move must be more than 0% and less than 100%")
    pct_text = f"{percent:g}".replace(".", "p")
    trend = bool(match["trend"])
    return TargetSpec(
        name=f"{'trend' if trend else ''}{match['dir']}{pct_text}pct{horizon}",
        kind="classification",
        horizon_minutes=minutes,
        threshold=percent / 100.0,
        direction=match["dir"],  # type: ignore[arg-type]
        rule="trend" if trend else "touch",
        # The seed study's trend targets compare moving averages over as long as the horizon
        # (the 10-day average, 10 days on); a separate window would be one more field here.
        window_minutes=minutes if trend else None,
    )
