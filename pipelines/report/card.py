"""A model card for a registered version, in SageMaker Model Card's JSON schema, and its HTML page.

Filled from the version itself (artifact, image, metrics, promotion records), its evaluation report
and data baseline, and the execution that registered it (dataset schema, tuning, gate). The schema
is the SageMaker SDK's (``sagemaker.core.shapes.model_card_shapes.ModelCardContent``), kept in
``model_card_schema.json`` with unknown fields refused; a test ties the copy to the SDK.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError
from pipelines.report import svg
from pipelines.report.execution import ExecutionView
from pipelines.report.insights import Insights, baseline_rows, tuning_of
from pipelines.report.objects import ObjectMissing, Objects

SCHEMA_PATH = Path(__file__).with_name("model_card_schema.json")
_PROBLEM_NAMES = {"binary_classification": "Binary Classification", "regression": "Regression"}
_FACETS = {"auc": "AUC", "rmse": "RMSE", "mae": "MAE", "accuracy": "Accuracy"}
STAGE_PREFIX = "stage."


def sdk_schema() -> dict:
    """The model card content schema of the installed SageMaker SDK, every object closed."""
    from sagemaker.core.shapes.model_card_shapes import ModelCardContent

    schema = ModelCardContent.model_json_schema()

    def close(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def schema_problems(content: dict) -> list[str]:
    """Every way ``content`` breaks the model card schema, as 'path: message' lines."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(content), key=lambda e: list(map(str, e.absolute_path))):
        # Optional fields are "X or null": the useful reason is inside the non-null branch.
        while error.context:
            useful = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
            error = max(useful or error.context, key=lambda e: len(e.absolute_path))
        problems.append(f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}")
    return problems


def _text(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def build(
    package, objects: Objects, view: ExecutionView | None, found: Insights | None, history=()
) -> tuple[dict, list[str]]:
    """(card content, gaps) for a registered version. ``package`` is a registry ModelPackage;
    ``view``/``found`` the registering execution and what it produced, when known."""
    gaps: list[str] = []
    metrics = package.model_metrics or {}
    evaluation = _json_at(
        objects,
        ((metrics.get("ModelQuality") or {}).get("Statistics") or {}).get("S3Uri"),
        "evaluation report",
        gaps,
    )
    statistics = _json_at(
        objects,
        ((metrics.get("ModelDataQuality") or {}).get("Statistics") or {}).get("S3Uri"),
        "data baseline",
        gaps,
    )
    problem = package.customer_metadata.get("ProblemType") or (found.problem_type if found else None)
    gate_metric = package.customer_metadata.get("GateMetric")
    feature_names = found.feature_names if found else None

    overview = {
        "model_description": _text(
            package.description
            or f"XGBoost model {package.group} version {package.version}, registered by the model-build pipeline.",
            1024,
        ),
        "model_creator": _text(
            f"pipeline {view.pipeline_name}, execution {view.execution_id}"
            if view
            else "the model-build pipeline",
            1024,
        ),
        "model_artifact": [package.model_data_url] if package.model_data_url else [],
        "algorithm_type": "XGBoost",
    }
    if problem in _PROBLEM_NAMES:
        overview["problem_type"] = _PROBLEM_NAMES[problem]

    features = (
        ", ".join(feature_names[:30]) + (" …" if feature_names and len(feature_names) > 30 else "")
        if feature_names
        else "see the dataset spec"
    )
    intended = {
        "purpose_of_model": _text(
            f"Predict the label of the table described by the dataset spec ({problem or 'unknown problem type'}).",
            2048,
        ),
        "intended_uses": _text(
            "Batch or real-time scoring of rows with the same columns and encodings as the training table "
            f"(encoded features: {features}).",
            2048,
        ),
        "factors_affecting_model_efficiency": "Rows whose feature distribution drifts from the data baseline; categories unseen in training are encoded as all-zero.",
        "risk_rating": "Unknown",
        "explanations_for_risk_rating": "Not assessed by the pipeline; set by the model's reviewer.",
    }

    training: dict[str, Any] = {}
    tunings = (
        [tuning_of(s) for s in view.of_type("Tuning") if s.properties.get("TrainingJobSummaries")]
        if view
        else []
    )
    if tunings:
        tuning = tunings[0]
        best = next((t for t in tuning.trials if t.name == tuning.best), None)
        metric = tuning.metric.split(":")[-1]
        training["objective_function"] = {
            "function": tuning.direction if tuning.direction in ("Maximize", "Minimize") else "Maximize",
            "facet": _FACETS.get(metric, metric)[:63],
            "condition": _text(f"{tuning.metric} on the validation split", 63),
        }
        training["training_observations"] = _text(
            f"{len(tuning.trials)} tuning trials searched {', '.join(tuning.searched)}; best {tuning.best} "
            f"with {tuning.metric} = {best.objective if best else '?'}.",
            1024,
        )
        details: dict[str, Any] = {
            "training_environment": {"container_image": [package.image_uri]} if package.image_uri else {}
        }
        step = next(s for s in view.steps.values() if s.name == tuning.step)
        definition = step.properties.get("TrainingJobDefinition") or {}
        datasets = [
            c["DataSource"]["S3DataSource"]["S3Uri"]
            for c in definition.get("InputDataConfig", [])
            if c.get("ChannelName") in ("train", "validation")
        ]
        if datasets:
            details["training_datasets"] = datasets[:15]
        if best:
            details["training_arn"] = f"{view.arn.split(':pipeline/')[0]}:training-job/{best.name.lower()}"[
                :1024
            ]
            static = {
                k: v
                for k, v in (definition.get("StaticHyperParameters") or {}).items()
                if not k.startswith("sagemaker_")
            }
            details["hyper_parameters"] = [
                {"name": k, "value": _text(str(v), 255)}
                for k, v in sorted({**static, **best.hyperparameters}.items())
            ]
            if best.objective is not None:
                details["training_metrics"] = [{"name": tuning.metric, "value": float(best.objective)}]
        training["training_job_details"] = details
    else:
        gaps.append("no tuning summary: the registering execution is not known or did not tune")

    evaluation_details = []
    if evaluation is not None and problem:
        section = evaluation.get(f"{problem}_metrics") or {}
        metric_data: list[dict] = [
            {
                "name": name,
                "type": "number",
                "value": float(value["value"]),
                "notes": f"bootstrap std {value.get('standard_deviation')}",
            }
            for name, value in section.items()
            if isinstance(value, dict) and isinstance(value.get("value"), int | float)
        ]
        matrix = section.get("confusion_matrix")
        if isinstance(matrix, dict):
            metric_data.append(
                {
                    "name": "confusion matrix (threshold 0.5)",
                    "type": "matrix",
                    "value": [[int(matrix.get(r, {}).get(c, 0)) for c in ("0", "1")] for r in ("0", "1")],
                    "x_axis_name": ["predicted 0", "predicted 1"],
                    "y_axis_name": ["actual 0", "actual 1"],
                }
            )
        roc = section.get("receiver_operating_characteristic_curve") or {}
        if roc.get("false_positive_rates"):
            metric_data.append(
                {
                    "name": "ROC curve",
                    "type": "linear_graph",
                    "value": [
                        [float(x), float(y)]
                        for x, y in zip(roc["false_positive_rates"], roc["true_positive_rates"], strict=False)
                    ],
                    "x_axis_name": "false positive rate",
                    "y_axis_name": "true positive rate",
                }
            )
        observation = "Scored on the held-out test split."
        if found and found.gates:
            gate = found.gates[0]
            condition = gate.conditions[0] if gate.conditions else {}
            observation += (
                f" Gate {gate.step}: {condition.get('LeftValue')} {condition.get('Type', '')} {condition.get('RightValue')}"
                f" -> {str(gate.outcome).lower()}."
            )
        entry = {
            "name": "test split",
            "evaluation_observation": _text(observation, 2096),
            "metric_groups": [{"name": f"{problem}_metrics"[:63], "metric_data": metric_data}],
            "metadata": {
                "evaluation_report": (metrics.get("ModelQuality") or {})
                .get("Statistics", {})
                .get("S3Uri", "")
            },
        }
        if gate_metric:
            entry["metadata"]["gate_metric"] = gate_metric
        evaluation_details.append(entry)

    custom = {k: str(v) for k, v in package.customer_metadata.items() if not k.startswith(STAGE_PREFIX)}
    custom["approval_status"] = package.approval_status
    for index, change in enumerate(history, 1):
        custom[f"approval.{index}"] = _text(
            f"{change.time.isoformat()} {change.from_status or '-'} -> {change.to_status} by {change.by}"
            + (f": {change.reason}" if change.reason else ""),
            1024,
        )
    promotion = {k: str(v) for k, v in package.customer_metadata.items() if k.startswith(STAGE_PREFIX)}
    custom.update(promotion)
    if statistics is not None:
        rows = baseline_rows(statistics, feature_names)
        custom["baseline_features"] = str(len(rows))
        custom["baseline_rows"] = str((statistics.get("dataset") or {}).get("item_count", ""))
    additional = {
        "ethical_considerations": "The pipeline does not measure bias; review the features for protected attributes before use.",
        "caveats_and_recommendations": _text(
            "Metrics come from one held-out split; standard deviations from a bootstrap of its rows. "
            + (
                "Promotion: " + "; ".join(f"{k}={v}" for k, v in sorted(promotion.items()))
                if promotion
                else "Not promoted to any stage yet."
            ),
            2048,
        ),
        "custom_details": custom,
    }
    content = {
        "model_overview": overview,
        "intended_uses": intended,
        "training_details": training,
        "evaluation_details": evaluation_details,
        "additional_information": additional,
    }
    problems = schema_problems(content)
    if problems:  # a bug in this module, not the user's input: say exactly where
        raise ConfigError(f"the model card breaks the model card schema: {'; '.join(problems[:5])}")
    return content, gaps


def _json_at(objects: Objects, uri: str | None, what: str, gaps: list[str]) -> dict | None:
    if not uri:
        gaps.append(f"no {what}: the version records none")
        return None
    try:
        return json.loads(objects.get(uri))
    except ObjectMissing as err:
        gaps.append(f"no {what}: {err}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        gaps.append(f"no {what}: {uri} is not JSON")
    return None


def package_card(content: dict) -> dict:
    """The model package's own card (UpdateModelPackage ModelCard): the same content, with the
    overview reduced to model_creator and model_artifact, as that simplified schema requires."""
    overview = {
        k: v for k, v in content["model_overview"].items() if k in ("model_creator", "model_artifact")
    }
    return {**content, "model_overview": overview}


def render(name: str, content: dict, gaps: list[str]) -> str:
    def section(title: str, fields: dict) -> str:
        rows = "".join(
            f"<tr><th>{escape(k.replace('_', ' '))}</th><td>{escape(v if isinstance(v, str) else json.dumps(v))}</td></tr>"
            for k, v in fields.items()
            if not isinstance(v, dict) or k != "training_job_details"
        )
        return f"<h2>{escape(title)}</h2><table>{rows}</table>"

    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>Model card {escape(name)}</title><style>"
        "body{font-family:system-ui,Helvetica,Arial,sans-serif;margin:24px;max-width:1000px;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
        "th{background:#f4f4f4;width:220px}.gap{background:#fff4e5;border-left:4px solid #ef6c00;padding:6px 10px;margin:6px 0}"
        ".plots{display:flex;gap:16px;flex-wrap:wrap}</style></head><body>",
        f"<h1>Model card: {escape(name)}</h1>",
    ]
    parts += [f'<div class="gap">{escape(g)}</div>' for g in gaps]
    parts.append(section("Model overview", content["model_overview"]))
    parts.append(section("Intended uses", content["intended_uses"]))
    training = content.get("training_details") or {}
    parts.append(
        section("Training details", {k: v for k, v in training.items() if k != "training_job_details"})
    )
    job = training.get("training_job_details") or {}
    if job.get("hyper_parameters"):
        parts.append(
            "<h3>Hyperparameters</h3><table>"
            + "".join(
                f"<tr><th>{escape(h['name'])}</th><td>{escape(str(h.get('value')))}</td></tr>"
                for h in job["hyper_parameters"]
            )
            + "</table>"
        )
    parts.append("<h2>Evaluation details</h2>")
    if not content["evaluation_details"]:
        parts.append(
            '<div class="gap" id="no-evaluation">No evaluation: this version records no evaluation report, or it could not be read.</div>'
        )
    for entry in content["evaluation_details"]:
        parts.append(f"<p>{escape(entry.get('evaluation_observation', ''))}</p>")
        for group in entry.get("metric_groups", []):
            numbers = [m for m in group["metric_data"] if m["type"] == "number"]
            parts.append(
                "<table>"
                + "".join(f"<tr><th>{escape(m['name'])}</th><td>{m['value']:.6g}</td></tr>" for m in numbers)
                + "</table>"
            )
            plots = []
            for metric in group["metric_data"]:
                if metric["type"] == "matrix":
                    plots.append(svg.matrix("confusion", metric["name"], metric["value"], ["0", "1"]))
                elif metric["type"] == "linear_graph":
                    plots.append(
                        svg.line_chart(
                            "roc",
                            metric["name"],
                            [(metric["name"], [tuple(p) for p in metric["value"]])],
                            metric.get("x_axis_name", ""),
                            metric.get("y_axis_name", ""),
                            unit_square=True,
                            diagonal=True,
                        )
                    )
            parts.append('<div class="plots">' + "".join(plots) + "</div>")
    parts.append(
        section(
            "Additional information",
            {k: v for k, v in content["additional_information"].items() if k != "custom_details"},
        )
    )
    custom = content["additional_information"].get("custom_details") or {}
    parts.append(
        "<h3>Details</h3><table>"
        + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in sorted(custom.items()))
        + "</table>"
    )
    parts.append("</body></html>")
    return "".join(parts)
