"""Target specs: what a model predicts, named by a short string that is also the model's name.

Grammar (case-insensitive)::

    target     := "ret" horizon                       regression: forward return over the horizon
                | ("up" | "down") percent "pct" horizon   classification: does the close rise /
                                                          fall by at least percent within horizon
    horizon    := integer ("m" | "h" | "d")           minutes, hours, days
    percent    := number, e.g. 2 or 0.5 (written 0p5 is also accepted, for names without dots)

Examples: ``ret24h`` (the default), ``ret60m``, ``up2pct24h``, ``down1.5pct4h``, ``up0p5pct1h``.

A spec's ``name`` is its canonical spelling, used in model and experiment names, so
``RET1440M`` and ``ret24h`` are the same target and name the same model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pricebot.errors import TargetSpecError

DEFAULT_TARGET = "ret24h"
EXAMPLES = ("ret24h", "ret60m", "up2pct24h", "down1.5pct4h")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440}
_MAX_HORIZON_MINUTES = 30 * 1440
_PATTERN = re.compile(
    r"^(?:(?P<ret>ret)|(?P<dir>up|down)(?P<pct>\d+(?:[.p]\d+)?)pct)(?P<n>\d+)(?P<unit>[mhd])$"
)


@dataclass(frozen=True)
class TargetSpec:
    """What to predict: the kind, how far ahead, and for classifiers the move that counts.

    ``threshold`` is a fraction (0.02 = 2%); ``direction`` is ``up`` or ``down`` for
    classification targets and ``None`` for the regression target.
    """

    name: str
    kind: Literal["regression", "classification"]
    horizon_minutes: int
    threshold: float | None = None
    direction: Literal["up", "down"] | None = None

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
        if not re.match(r"^(ret|up|down)", text):
            problem = "it must start with 'ret', 'up' or 'down'"
        elif not re.search(r"\d+[mhd]$", text):
            problem = "it must end with a horizon such as 24h, 60m or 2d"
        elif text.startswith(("up", "down")) and "pct" not in text:
            problem = "a classification target needs a move in percent, e.g. up2pct24h"
        else:
            problem = "it does not follow ret<H> or up|down<X>pct<H>"
        raise _fail(spec, problem)
    minutes = int(match["n"]) * _UNIT_MINUTES[match["unit"]]
    if minutes <= 0:
        raise _fail(spec, "the horizon must be at least one minute")
    if minutes > _MAX_HORIZON_MINUTES:
        raise _fail(spec, f"the horizon is longer than {_MAX_HORIZON_MINUTES // 1440} days")
    horizon = _canonical_horizon(minutes)
    if match["ret"]:
        return TargetSpec(name=f"ret{horizon}", kind="regression", horizon_minutes=minutes)
    percent = float(match["pct"].replace("p", "."))
    if not 0 < percent < 100:
        raise _fail(spec, "the move must be more than 0% and less than 100%")
    pct_text = f"{percent:g}".replace(".", "p")
    return TargetSpec(
        name=f"{match['dir']}{pct_text}pct{horizon}",
        kind="classification",
        horizon_minutes=minutes,
        threshold=percent / 100.0,
        direction=match["dir"],  # type: ignore[arg-type]
    )
