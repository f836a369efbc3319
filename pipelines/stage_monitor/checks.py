"""The checks a monitoring run makes, over ``pipelines.monitoring`` (Model Monitor's analyzer):
the baseline files parsed and checked, the captured rows profiled, violations found."""

from __future__ import annotations

import pandas as pd

from pipelines.monitoring import check_data_quality, parse_constraints, parse_statistics, profile


def data_quality(
    frame: pd.DataFrame,
    statistics: dict,
    constraints: dict,
    statistics_source: str = "statistics.json",
    constraints_source: str = "constraints.json",
) -> tuple[dict, dict]:
    """(statistics.json of ``frame``, constraint_violations.json against the baseline). A baseline
    that is not Model Monitor's data-quality format is a BaselineError naming the file and field."""
    baseline_statistics = parse_statistics(statistics, statistics_source)
    baseline_constraints = parse_constraints(constraints, constraints_source)
    current = profile(frame)
    return current.statistics(), check_data_quality(current, baseline_constraints, baseline_statistics)
