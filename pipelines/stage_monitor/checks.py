"""The checks a monitoring run makes, over ``pipelines.monitoring`` (Model Monitor's analyzer):
the baseline files parsed and checked, the captured rows profiled, violations found."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from pipelines.monitoring import check_data_quality, parse_constraints, parse_statistics, profile


def data_quality(
    data: pd.DataFrame | Iterable[pd.DataFrame],
    statistics: dict,
    constraints: dict,
    statistics_source: str = "statistics.json",
    constraints_source: str = "constraints.json",
) -> tuple[dict, dict]:
    """(statistics.json of ``data``, constraint_violations.json against the baseline). ``data`` may
    come in chunks, profiled one at a time. A baseline that is not Model Monitor's data-quality
    format is a BaselineError naming the file and field."""
    baseline_statistics = parse_statistics(statistics, statistics_source)
    baseline_constraints = parse_constraints(constraints, constraints_source)
    current = profile(data)
    return current.statistics(), check_data_quality(current, baseline_constraints, baseline_statistics)
