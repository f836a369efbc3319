"""A deterministic KLL quantile sketch, the summary Model Monitor stores in ``distribution.kll``.

Model Monitor's analyzer is built on Deequ, whose KLL sketch keeps a few thousand values per
feature whatever the row count, so a baseline over millions of rows stays small and two datasets
can be compared from their statistics files alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Deequ's KLL defaults (sketch size and shrinking factor), the ``parameters`` Model Monitor writes.
DEFAULT_K = 2048
DEFAULT_C = 0.64
#: "By default, the distributions are materialized in 10 buckets. This cannot be changed."
#: (AWS, "Schema for Statistics (statistics.json file)").
BUCKETS = 10


class KllSketch:
    """Compactors by level: an item kept at level ``h`` stands for ``2**h`` values.

    Compaction sorts a full level and promotes every other item, alternating which half is kept so
    the same input always gives the same sketch (no random coin, unlike the original algorithm).
    """

    def __init__(self, k: int = DEFAULT_K, c: float = DEFAULT_C):
        self.k = int(k)
        self.c = float(c)
        self.levels: list[np.ndarray] = [np.empty(0, dtype="float64")]
        self._toggle = 0

    @classmethod
    def from_data(cls, data: Sequence[Sequence[float]], k: float, c: float) -> KllSketch:
        sketch = cls(int(k), float(c))
        sketch.levels = [np.asarray(level, dtype="float64") for level in data] or [np.empty(0)]
        return sketch

    def _capacity(self, level: int) -> int:
        depth = len(self.levels) - level - 1
        return max(2, math.ceil(self.k * self.c**depth))

    def update(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        self.levels[0] = np.concatenate([self.levels[0], values.astype("float64", copy=False)])
        self._compress()

    def merge(self, other: KllSketch) -> None:
        while len(self.levels) < len(other.levels):
            self.levels.append(np.empty(0, dtype="float64"))
        for level, items in enumerate(other.levels):
            self.levels[level] = np.concatenate([self.levels[level], items])
        self._compress()

    def _compress(self) -> None:
        level = 0
        while level < len(self.levels):
            items = self.levels[level]
            if items.size > self._capacity(level):
                if level + 1 == len(self.levels):
                    self.levels.append(np.empty(0, dtype="float64"))
                items = np.sort(items)
                # An odd item stays behind, so the total weight is kept exactly.
                kept, items = (items[:1], items[1:]) if items.size % 2 else (items[:0], items)
                promoted = items[self._toggle :: 2]
                self._toggle ^= 1
                self.levels[level] = kept
                self.levels[level + 1] = np.concatenate([self.levels[level + 1], promoted])
                level = 0  # a new top level lowers every capacity: look again from the bottom
                continue
            level += 1

    def weighted(self) -> tuple[np.ndarray, np.ndarray]:
        """Items in ascending order and their weights."""
        items = np.concatenate(self.levels) if self.levels else np.empty(0)
        weights = np.concatenate([np.full(len(v), 2.0**h) for h, v in enumerate(self.levels)])
        order = np.argsort(items, kind="stable")
        return items[order], weights[order]

    def cdf(self, points: np.ndarray) -> np.ndarray:
        """Share of the values at or below each point."""
        items, weights = self.weighted()
        total = weights.sum()
        if total == 0:
            return np.zeros(len(points))
        cumulative = np.concatenate([[0.0], np.cumsum(weights)])
        return cumulative[np.searchsorted(items, points, side="right")] / total

    def buckets(self, low: float, high: float) -> list[dict]:
        """Model Monitor's ten equal-width buckets between the minimum and the maximum."""
        items, weights = self.weighted()
        if items.size == 0:
            return []
        edges = np.linspace(low, high, BUCKETS + 1)
        counts, _ = np.histogram(items, bins=edges, weights=weights) if high > low else (None, None)
        if counts is None:  # a constant column: every value in the first bucket
            counts = np.zeros(BUCKETS)
            counts[0] = weights.sum()
        return [
            {"lower_bound": float(edges[i]), "upper_bound": float(edges[i + 1]), "count": float(counts[i])}
            for i in range(BUCKETS)
        ]

    def to_json(self) -> dict:
        return {
            "parameters": {"c": self.c, "k": float(self.k)},
            "data": [[float(v) for v in np.sort(level)] for level in self.levels],
        }


def linf_distance(cdf_points: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """The largest gap between two CDFs evaluated at the same points."""
    if cdf_points.size == 0:
        return 0.0
    return float(np.max(np.abs(first - second)))


def robust(distance: float, n: float, m: float) -> float:
    """Deequ's ``linf_robust``: the simple distance less the two-sample Kolmogorov-Smirnov margin
    for the sample sizes (awslabs/deequ ``analyzers/Distance.scala``, ``selectMetrics``)."""
    if n <= 0 or m <= 0:
        return distance
    return max(0.0, distance - 1.8 * math.sqrt((n + m) / (n * m)))


def numerical_distance(first: KllSketch, second: KllSketch, method: str) -> float:
    """L-infinity distance between two sketches' CDFs over the union of their items."""
    a_items, a_weights = first.weighted()
    b_items, b_weights = second.weighted()
    points = np.union1d(a_items, b_items)
    distance = linf_distance(points, first.cdf(points), second.cdf(points))
    if method == "robust":
        return robust(distance, a_weights.sum(), b_weights.sum())
    return distance


def categorical_distance(first: dict[str, float], second: dict[str, float], method: str) -> float:
    """L-infinity distance between two value-frequency tables (Deequ ``categoricalDistance``)."""
    n, m = sum(first.values()), sum(second.values())
    if n == 0 or m == 0:
        return 0.0
    keys = set(first) | set(second)
    distance = max(abs(first.get(key, 0) / n - second.get(key, 0) / m) for key in keys)
    if method == "robust":
        return robust(distance, n, m)
    return distance
