"""Model Monitor's analyzer as pure functions: data-quality and model-quality statistics,
suggested constraints and constraint violations, in Model Monitor's file formats."""

from pipelines.monitoring.common import BaselineError, load_json, to_json
from pipelines.monitoring.data_quality import (
    CHECK_TYPES,
    DataQualityProfile,
    check_data_quality,
    headerless_names,
    parse_constraints,
    parse_statistics,
    profile,
    suggest_constraints,
)
from pipelines.monitoring.model_quality import (
    check_model_quality,
    model_quality_statistics,
    parse_model_quality_constraints,
    suggest_model_quality_constraints,
)

__all__ = [
    "CHECK_TYPES",
    "BaselineError",
    "DataQualityProfile",
    "check_data_quality",
    "check_model_quality",
    "headerless_names",
    "load_json",
    "model_quality_statistics",
    "parse_constraints",
    "parse_model_quality_constraints",
    "parse_statistics",
    "profile",
    "suggest_constraints",
    "suggest_model_quality_constraints",
    "to_json",
]
