"""The data-quality baseline a version carries, and the stage's thresholds written into it."""

from __future__ import annotations

from pipelines.errors import TemplateError
from pipelines.promotion.config import MonitoringSettings
from pipelines.registry.base import ModelPackage


class MonitorError(TemplateError):
    """A monitoring run could not run: no capture, no baseline, a malformed file."""

    exit_code = 1


def baseline_uris(package: ModelPackage) -> tuple[str, str]:
    """The data-quality baseline a version was registered with: ModelMetrics.ModelDataQuality's
    Statistics and Constraints (what the pipeline's RegisterModel step records)."""
    quality = (package.model_metrics or {}).get("ModelDataQuality") or {}
    uris = []
    for name in ("Statistics", "Constraints"):
        uri = (quality.get(name) or {}).get("S3Uri")
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise MonitorError(
                f"{package.name} has no ModelMetrics.ModelDataQuality.{name}.S3Uri: it was registered "
                "without a data-quality baseline; register a version built by the pipeline"
            )
        uris.append(uri)
    return uris[0], uris[1]


def stage_constraints(constraints: dict, settings: MonitoringSettings) -> dict:
    """The baseline constraints with the stage's thresholds in ``monitoring_config``: Model Monitor
    reads its thresholds from there, so a stage's stricter or looser drift limits go in the file."""
    drift = settings.drift
    config = dict(constraints.get("monitoring_config") or {})
    distribution = dict(config.get("distribution_constraints") or {})
    distribution.update(
        perform_comparison="Enabled",
        comparison_threshold=drift.comparison_threshold,
        comparison_method=drift.comparison_method,
    )
    config.update(
        datatype_check_threshold=drift.datatype_check_threshold,
        domain_content_threshold=drift.domain_content_threshold,
        distribution_constraints=distribution,
    )
    return {**constraints, "monitoring_config": config}
