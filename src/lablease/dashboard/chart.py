"""A step chart as inline SVG, drawn on the server: no chart library, nothing to build, no JavaScript.

The summary's "nodes in use over the last 24 hours" is a step function (the count changes at each
lock and unlock); an SVG path of horizontal and vertical segments draws it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise


@dataclass(frozen=True)
class StepChart:
    """What the template draws: the path, the axis ticks and the scale, in SVG user units."""

    width: int
    height: int
    path: str
    area: str
    top: int
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, int]]


def step_chart(points: list[tuple[datetime, int]], since: datetime, now: datetime, *,
               width: int = 720, height: int = 180) -> StepChart:
    """Scale ``points`` (time, count) between ``since`` and ``now`` into a ``width`` x ``height`` box."""
    span = max((now - since).total_seconds(), 1.0)
    top = max(max(c for _, c in points), 1)

    def x(t: datetime) -> float:
        return round(min(max((t - since).total_seconds() / span, 0.0), 1.0) * width, 1)

    def y(c: int) -> float:
        return round(height - c / top * height, 1)

    parts = [f"M{x(points[0][0])},{y(points[0][1])}"]
    for (_, before), (t, c) in pairwise(points):
        parts.append(f"H{x(t)}")
        if c != before:
            parts.append(f"V{y(c)}")
    path = " ".join(parts)
    area = f"{path} V{height} H0 Z"
    x_ticks = []
    first = since.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for h in range(0, 24, 3):
        tick = first + timedelta(hours=h)
        if tick <= now:
            x_ticks.append((x(tick), tick.strftime("%H:%M")))
    y_ticks = sorted({(y(v), v) for v in (0, top // 2, top)})
    return StepChart(width, height, path, area, top, x_ticks, y_ticks)
