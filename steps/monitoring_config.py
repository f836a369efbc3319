"""The ``monitoring_config`` of a Model Monitor data-quality constraints file when nothing overrides
it: the defaults in the Model Monitor guide ("Schema for Constraints", table "Monitoring
Constraints"). Preprocess writes them into its baseline's constraints.json and the local monitor
(pipelines/monitoring/data_quality.py) falls back on them, so both read this one table."""

from __future__ import annotations

import copy
from typing import Any

DEFAULT_MONITORING_CONFIG: dict[str, Any] = {
    "evaluate_constraints": "Enabled",
    "emit_metrics": "Enabled",
    "datatype_check_threshold": 0.1,
    "domain_content_threshold": 0.1,
    "distribution_constraints": {
        "perform_comparison": "Enabled",
        "comparison_threshold": 0.1,
        "comparison_method": "Robust",
    },
}


def default_monitoring_config() -> dict[str, Any]:
    """A copy of the defaults, for a document to hold and change."""
    return copy.deepcopy(DEFAULT_MONITORING_CONFIG)
