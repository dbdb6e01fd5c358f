"""The activity chart: delivery attempts per time bucket as stacked bars,
in inline SVG (OutboxAdmin.activity gives the numbers).
"""

import datetime
from xml.sax.saxutils import escape

from ..delivery.store import Logged

# (attempt outcome, colour, label): each series counts the attempts of its
# outcome in the attempt log, and says so.
COLOURS = (
    (Logged.SENT, "#2e8540", "sent"),
    (Logged.RETRY, "#e0a526", "deferred, retried"),
    (Logged.HELD, "#7f8c8d", "held"),
    (Logged.FAILED, "#c0392b", "failed"),
)
# (bucket start, {outcome: attempts}) oldest first: OutboxAdmin.activity().
Activity = list[tuple[datetime.datetime, dict[str, int]]]


def chart_svg(
    activity: Activity,
    width: int = 720,
    height: int = 180,
    title: str = "Delivery attempts per hour (UTC)",
) -> str:
    """Stacked bars of attempts by outcome per bucket, as inline SVG.

    Plain SVG text with a <title> per bar (the browser shows it on hover);
    no script, no external file.
    """
    box = _Box(
        width, height, len(activity), _nice(max([sum(v.values()) for _, v in activity] + [1]))
    )
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        'viewBox="0 0 %d %d" width="100%%" aria-label="%s">' % (width, height, escape(title)),
        '<text x="%d" y="14" class="chart-title">%s</text>' % (box.left, escape(title)),
    ]
    out += _grid(box) + _legend(box)
    every = max(1, box.n // 8)
    for i, (start, values) in enumerate(activity):
        out += _bar(box, i, start, values)
        if i % every == 0:
            out.append(
                '<text x="%.1f" y="%d" text-anchor="middle" class="chart-axis">'
                "%s</text>"
                % (box.left + (i + 0.5) * box.slot, height - 6, start.strftime("%H:%M"))
            )
    out.append("</svg>")
    return "".join(out)


class _Box:
    """The chart's geometry: margins, plot size, bar slots and the axis top."""

    left, right, top, bottom = 40, 10, 24, 24

    def __init__(self, width: int, height: int, n: int, scale: float) -> None:
        self.width, self.height, self.n, self.scale = width, height, max(1, n), scale
        self.plot_w = width - self.left - self.right
        self.plot_h = height - self.top - self.bottom
        self.slot = self.plot_w / float(self.n)
        self.bar = max(1.0, self.slot * 0.8)


def _grid(box: _Box) -> list[str]:
    """Horizontal lines at 0, half and the top, with their values."""
    out = []
    for frac in (0, 0.5, 1):
        y = box.top + box.plot_h * (1 - frac)
        out.append(
            '<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#d5d9de"/>'
            % (box.left, box.width - box.right, y, y)
        )
        out.append(
            '<text x="%d" y="%.1f" text-anchor="end" class="chart-axis">%s'
            "</text>" % (box.left - 4, y + 4, _num(box.scale * frac))
        )
    return out


def _legend(box: _Box) -> list[str]:
    out = []
    legend_x = box.width - box.right
    for _key, colour, label in reversed(COLOURS):
        legend_x -= 8 + 7 * len(label) + 14
        out.append(
            '<rect x="%d" y="5" width="10" height="10" fill="%s"/>'
            '<text x="%d" y="14" class="chart-axis">%s</text>'
            % (legend_x, colour, legend_x + 14, escape(label))
        )
    return out


def _bar(box: _Box, i: int, start: datetime.datetime, values: dict[str, int]) -> list[str]:
    """Bucket ``i``: its stacked rectangles under one hover title."""
    x = box.left + i * box.slot + (box.slot - box.bar) / 2
    y: float = box.top + box.plot_h
    tip = "%s: %s" % (
        start.strftime("%Y-%m-%d %H:%M"),
        ", ".join("%d %s" % (values[k], label) for k, _, label in COLOURS),
    )
    out = ["<g><title>%s</title>" % escape(tip)]
    for key, colour, _ in COLOURS:
        h = box.plot_h * values[key] / float(box.scale)
        if h > 0:
            y -= h
            out.append(
                '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" '
                'fill="%s" class="bar-%s"/>' % (x, y, box.bar, h, colour, key)
            )
    out.append(
        '<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="transparent"/>'
        "</g>" % (box.left + i * box.slot, box.top, box.slot, box.plot_h)
    )
    return out


def _nice(peak: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= peak: a readable axis top."""
    step = 1
    while True:
        for m in (1, 2, 2.5, 5):
            if m * step >= peak:
                return m * step
        step *= 10


def _num(value: float) -> str:
    return ("%d" % value) if value == int(value) else ("%.1f" % value)
