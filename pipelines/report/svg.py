"""Small inline SVG charts for the report: lines, scatter, bars, a matrix and the step graph.

Hand-written so that the page needs no plotting library, no script and no network, and stays small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

W, H = 360, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 40
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
STATUS_COLORS = {
    "Succeeded": "#2e7d32",
    "Failed": "#c62828",
    "Executing": "#1565c0",
    "Starting": "#1565c0",
    "Stopped": "#6d4c41",
    "NotStarted": "#9e9e9e",
}


def _fmt(value: float) -> str:
    return f"{value:.3g}"


class _Frame:
    def __init__(self, x_range, y_range, width=W, height=H):
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        if self.x1 == self.x0:
            self.x1 = self.x0 + 1
        if self.y1 == self.y0:
            self.y1 = self.y0 + 1
        self.width, self.height = width, height

    def x(self, value: float) -> float:
        return LEFT + (value - self.x0) / (self.x1 - self.x0) * (self.width - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return self.height - BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (self.height - TOP - BOTTOM)

    def axes(self, x_label: str, y_label: str) -> str:
        parts = [
            f'<rect x="{LEFT}" y="{TOP}" width="{self.width - LEFT - RIGHT}" height="{self.height - TOP - BOTTOM}" '
            'fill="none" stroke="#999"/>'
        ]
        for i in range(5):
            xv = self.x0 + (self.x1 - self.x0) * i / 4
            yv = self.y0 + (self.y1 - self.y0) * i / 4
            parts.append(
                f'<text x="{self.x(xv):.1f}" y="{self.height - BOTTOM + 14}" font-size="10" text-anchor="middle">{_fmt(xv)}</text>'
            )
            parts.append(
                f'<text x="{LEFT - 4}" y="{self.y(yv) + 3:.1f}" font-size="10" text-anchor="end">{_fmt(yv)}</text>'
            )
        parts.append(
            f'<text x="{(LEFT + self.width - RIGHT) / 2}" y="{self.height - 6}" font-size="11" text-anchor="middle">{escape(x_label)}</text>'
        )
        parts.append(
            f'<text x="12" y="{(TOP + self.height - BOTTOM) / 2}" font-size="11" text-anchor="middle" '
            f'transform="rotate(-90 12 {(TOP + self.height - BOTTOM) / 2})">{escape(y_label)}</text>'
        )
        return "".join(parts)


def _svg(plot_id: str, title: str, body: str, width: int = W, height: int = H) -> str:
    return (
        f'<svg class="plot" data-plot="{escape(plot_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _thin(points: Sequence[tuple[float, float]], limit: int = 300) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return list(points)
    step = len(points) / limit
    kept = [points[int(i * step)] for i in range(limit)]
    return kept + [points[-1]]


def _range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or 0.5
    return low - pad, high + pad


def line_chart(
    plot_id: str,
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    x_label: str,
    y_label: str,
    *,
    unit_square: bool = False,
    diagonal: bool = False,
    markers: bool = False,
) -> str:
    points = [p for _, pts in series for p in pts]
    if unit_square or not points:
        frame = _Frame((0.0, 1.0), (0.0, 1.0))
    else:
        frame = _Frame(_range([p[0] for p in points]), _range([p[1] for p in points]))
    body = [frame.axes(x_label, y_label)]
    if diagonal:
        body.append(
            f'<line x1="{frame.x(0)}" y1="{frame.y(0)}" x2="{frame.x(1)}" y2="{frame.y(1)}" '
            'stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    for index, (label, pts) in enumerate(series):
        color = COLORS[index % len(COLORS)]
        path = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in _thin(pts))
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{path}"/>')
        if markers:
            body += [
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.5" fill="{color}"/>'
                for x, y in _thin(pts, 60)
            ]
        body.append(
            f'<text x="{LEFT + 8}" y="{TOP + 14 + 13 * index}" font-size="11" fill="{color}">{escape(label)}</text>'
        )
    return _svg(plot_id, title, "".join(body))


def scatter(
    plot_id: str,
    title: str,
    points: Sequence[tuple[float, float]],
    x_label: str,
    y_label: str,
    *,
    identity: bool = False,
    zero_line: bool = False,
) -> str:
    if not points:
        points = [(0.0, 0.0)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if identity:
        low, high = _range(xs + ys)
        frame = _Frame((low, high), (low, high))
    else:
        frame = _Frame(_range(xs), _range(ys))
    body = [frame.axes(x_label, y_label)]
    if identity:
        body.append(
            f'<line x1="{frame.x(frame.x0)}" y1="{frame.y(frame.x0)}" x2="{frame.x(frame.x1)}" '
            f'y2="{frame.y(frame.x1)}" stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    if zero_line and frame.y0 < 0 < frame.y1:
        body.append(
            f'<line x1="{LEFT}" y1="{frame.y(0)}" x2="{W - RIGHT}" y2="{frame.y(0)}" stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    body += [
        f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2" fill="{COLORS[0]}" fill-opacity="0.5"/>'
        for x, y in _thin(points, 1500)
    ]
    return _svg(plot_id, title, "".join(body))


def bars(plot_id: str, title: str, items: Sequence[tuple[str, float]], value_label: str) -> str:
    """Horizontal bars, largest first as given."""
    row, label_width = 16, 170
    height = TOP + BOTTOM + row * max(1, len(items))
    width = 460
    top = max((v for _, v in items), default=1.0) or 1.0
    body = []
    for index, (label, value) in enumerate(items):
        y = TOP + index * row
        length = max(1.0, (width - label_width - 60) * value / top)
        body.append(
            f'<text x="{label_width - 4}" y="{y + 11}" font-size="10" text-anchor="end">{escape(label[:32])}</text>'
            f'<rect x="{label_width}" y="{y + 2}" width="{length:.1f}" height="{row - 4}" fill="{COLORS[0]}"/>'
            f'<text x="{label_width + length + 4:.1f}" y="{y + 11}" font-size="10">{_fmt(value)}</text>'
        )
    body.append(f'<text x="{label_width}" y="{height - 10}" font-size="11">{escape(value_label)}</text>')
    return _svg(plot_id, title, "".join(body), width, height)


def matrix(plot_id: str, title: str, cells: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """A confusion matrix: rows are actual classes, columns predicted."""
    size, origin = 80, 90
    n = len(cells)
    total = max(1, max(max(row) for row in cells))
    body = []
    for i in range(n):
        for j in range(n):
            value = cells[i][j]
            shade = int(235 - 170 * value / total)
            x, y = origin + j * size, 30 + i * size
            text = "#fff" if shade < 150 else "#000"
            body.append(
                f'<rect x="{x}" y="{y}" width="{size}" height="{size}" fill="rgb({shade},{shade + 10 if shade < 245 else 255},255)" stroke="#fff"/>'
                f'<text x="{x + size / 2}" y="{y + size / 2 + 5}" font-size="16" text-anchor="middle" fill="{text}">{value}</text>'
            )
        body.append(
            f'<text x="{origin - 6}" y="{30 + i * size + size / 2 + 4}" font-size="11" text-anchor="end">actual {escape(labels[i])}</text>'
            f'<text x="{origin + i * size + size / 2}" y="22" font-size="11" text-anchor="middle">predicted {escape(labels[i])}</text>'
        )
    width, height = origin + n * size + 20, 30 + n * size + 20
    return _svg(plot_id, title, "".join(body), width, height)


def dag(steps: Mapping[str, tuple[str, str, tuple[str, ...], str]]) -> str:
    """The step graph: ``name -> (type, status, depends_on, detail)`` in a dependency order; each
    step a box coloured by status, placed in the column of its depth."""
    depth: dict[str, int] = {}
    for name, (_, _, needs, _) in steps.items():
        depth[name] = 1 + max((depth.get(n, 0) for n in needs if n in steps), default=-1)
    columns: dict[int, list[str]] = {}
    for name in steps:
        columns.setdefault(depth[name], []).append(name)
    box_w, box_h, gap_x, gap_y = 170, 58, 50, 18
    place = {}
    for col, names in columns.items():
        for row, name in enumerate(names):
            place[name] = (12 + col * (box_w + gap_x), 12 + row * (box_h + gap_y))
    width = 24 + len(columns) * (box_w + gap_x) - gap_x
    height = 24 + max(len(n) for n in columns.values()) * (box_h + gap_y) - gap_y
    body = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#777"/></marker></defs>'
    ]
    for name, (_, _, needs, _) in steps.items():
        for need in needs:
            if need in place:
                x1, y1 = place[need][0] + box_w, place[need][1] + box_h / 2
                x2, y2 = place[name][0], place[name][1] + box_h / 2
                body.append(
                    f'<path d="M {x1} {y1} C {x1 + 25} {y1}, {x2 - 25} {y2}, {x2} {y2}" fill="none" '
                    'stroke="#777" marker-end="url(#arrow)"/>'
                )
    for name, (type_, status, _, detail) in steps.items():
        x, y = place[name]
        color = STATUS_COLORS.get(status, "#616161")
        body.append(
            f'<g class="step" data-step="{escape(name)}" data-status="{escape(status)}">'
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="#fff" stroke="{color}" stroke-width="2.5"/>'
            f'<text x="{x + 8}" y="{y + 17}" font-size="12" font-weight="bold">{escape(name[:22])}</text>'
            f'<text x="{x + 8}" y="{y + 33}" font-size="10" fill="#555">{escape(type_)}</text>'
            f'<text x="{x + 8}" y="{y + 48}" font-size="10" fill="{color}">{escape(status)} {escape(detail)}</text>'
            "</g>"
        )
    return _svg("dag", "pipeline steps", "".join(body), width, height)
