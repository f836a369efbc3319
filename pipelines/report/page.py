"""The execution report: one self-contained HTML page (inline CSS and SVG, no script, no network)."""

from __future__ import annotations

import os
import tempfile
from html import escape
from pathlib import Path

import numpy as np

from pipelines.report import svg
from pipelines.report.execution import NOT_STARTED, RUNNING_STATUSES, ExecutionView
from pipelines.report.insights import Insights, curves

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;color:#fff;font-size:12px}
.gap{background:#fff4e5;border-left:4px solid #ef6c00;padding:6px 10px;margin:6px 0;font-size:13px}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plots figure{margin:0}.plots figcaption{font-size:12px;color:#555}
.meta{color:#555;font-size:13px}.best{font-weight:bold}
svg.plot{max-width:100%;height:auto}
"""


def _num(value, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, int | np.integer):
        return str(value)
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return escape(str(value))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{cell}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(plot: str, caption: str) -> str:
    return f"<figure>{plot}<figcaption>{escape(caption)}</figcaption></figure>"


def _gap(text: str) -> str:
    return f'<div class="gap">{escape(text)}</div>'


def render(view: ExecutionView, found: Insights) -> str:
    running = view.status in RUNNING_STATUSES
    color = svg.STATUS_COLORS.get(view.status, "#616161")
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(view.pipeline_name)} {escape(view.execution_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(view.pipeline_name)} execution {escape(view.execution_id)} "
        f'<span class="badge" id="status" style="background:{color}">{escape("Running" if running else view.status)}</span></h1>',
        f'<div class="meta">{escape(view.arn)} &middot; started {escape(str(view.created or ""))} &middot; '
        f"{'running for' if running else 'took'} {_seconds(view.seconds)} &middot; {escape(view.source)}</div>",
    ]
    if running:
        parts.append(_gap("The execution is still running: this page shows the steps as they stand now."))
    if view.failure_reason:
        parts.append(f'<p id="failure"><b>Failure:</b> {escape(view.failure_reason)}</p>')
    for gap in found.gaps:
        parts.append(_gap(gap))
    parts.append(_steps_section(view))
    parts.append(_gate_section(found))
    parts.append(_tuning_section(view, found))
    parts.append(_evaluation_section(found))
    parts.append(_importance_section(found))
    parts.append(_baseline_section(found))
    if view.parameters:
        parts.append("<h2>Parameters</h2>")
        parts.append(
            _table(
                ["name", "value"], [[escape(k), escape(str(v))] for k, v in sorted(view.parameters.items())]
            )
        )
    parts.append("</body></html>")
    return "".join(parts)


def _steps_section(view: ExecutionView) -> str:
    graph = {}
    rows = []
    for step in view.steps.values():
        cached = "yes" if step.cache_source else ""
        detail = _seconds(step.seconds) + (" cached" if cached else "")
        graph[step.name] = (step.type, step.status, step.depends_on, detail)
        rows.append(
            [
                escape(step.name),
                escape(step.type),
                escape(step.status),
                _seconds(step.seconds),
                escape(f"from {step.cache_source.rsplit('/', 1)[-1]}" if step.cache_source else ""),
                str(step.attempts or ""),
                escape(step.failure_reason or ""),
            ]
        )
    return (
        "<h2>Steps</h2>"
        + svg.dag(graph)
        + _table(
            ["step", "type", "status", "duration", "cache hit", "attempts", "failure reason"], rows, {3, 5}
        )
    )


def _gate_section(found: Insights) -> str:
    if not found.gates:
        return "<h2>Gate</h2>" + _gap("No condition step ran in this execution.")
    rows = []
    for gate in found.gates:
        for condition in gate.conditions or [{}]:
            rows.append(
                [
                    escape(gate.step),
                    _num(condition.get("LeftValue"), 6),
                    escape(str(condition.get("Type", ""))),
                    _num(condition.get("RightValue"), 6),
                    escape("" if gate.outcome is None else str(gate.outcome).lower()),
                ]
            )
    return "<h2>Gate</h2>" + _table(
        ["condition step", "value", "comparison", "threshold", "outcome"], rows, {1, 3}
    )


def _tuning_section(view: ExecutionView, found: Insights) -> str:
    parts = []
    for tuning in found.tunings:
        parts.append(f"<h2>Tuning: {escape(tuning.step)}</h2>")
        scored = [(i + 1, t.objective) for i, t in enumerate(tuning.trials) if t.objective is not None]
        if scored:
            running_best = []
            best = None
            for x, value in scored:
                better = best is None or (value > best if tuning.direction == "Maximize" else value < best)
                best = value if better else best
                running_best.append((x, best))
            parts.append(
                '<div class="plots">'
                + _figure(
                    svg.line_chart(
                        "tuning",
                        "objective per trial",
                        [(tuning.metric, scored), ("best so far", running_best)],
                        "trial",
                        tuning.metric,
                        markers=True,
                    ),
                    f"{tuning.metric} per trial ({tuning.direction.lower()})",
                )
                + "</div>"
            )
        names = tuning.searched or sorted({k for t in tuning.trials for k in t.hyperparameters})
        rows = []
        for index, trial in enumerate(tuning.trials):
            cells = [str(index + 1), escape(trial.name), escape(trial.status), _num(trial.objective, 6)]
            cells += [_num(trial.hyperparameters.get(name), 4) for name in names]
            rows.append(cells)
        parts.append(
            _table(
                ["#", "training job", "status", tuning.metric, *names], rows, set(range(3, 4 + len(names)))
            )
        )
        if tuning.best:
            parts.append(f'<p class="best">best: {escape(tuning.best)}</p>')
    for step in view.of_type("Training"):
        series = found.training_curves.get(step.name)
        if series:
            parts.append(f"<h2>Training curves: {escape(step.name)}</h2>")
            parts.append(
                '<div class="plots">'
                + _figure(
                    svg.line_chart(
                        f"training-{step.name}",
                        "per-round metrics",
                        list(series.items()),
                        "round",
                        "metric",
                    ),
                    "per-round metrics from the job's log",
                )
                + "</div>"
            )
    return "".join(parts)


def _evaluation_section(found: Insights) -> str:
    parts = ["<h2>Evaluation</h2>"]
    if found.evaluation is None:
        return "".join(parts) + _gap(
            "No evaluation report: the evaluation step did not run or its output is missing."
        )
    metrics = found.evaluation.get(f"{found.problem_type}_metrics") or {}
    rows = [
        [escape(name), _num(value.get("value"), 6), _num(value.get("standard_deviation"), 4)]
        for name, value in metrics.items()
        if isinstance(value, dict) and "value" in value
    ]
    parts.append(f'<p class="meta">{escape(found.evaluation_uri or "")}</p>')
    parts.append(_table(["metric", "value", "bootstrap std"], rows, {1, 2}))
    plots = []
    if found.problem_type == "binary_classification":
        matrix = metrics.get("confusion_matrix")
        if isinstance(matrix, dict):
            cells = [[int(matrix.get(r, {}).get(c, 0)) for c in ("0", "1")] for r in ("0", "1")]
            plots.append(
                _figure(
                    svg.matrix("confusion", "confusion matrix", cells, ["0", "1"]),
                    "confusion matrix at threshold 0.5",
                )
            )
        if found.labels is not None and found.predictions is not None and len(np.unique(found.labels)) == 2:
            c = curves(found.labels, found.predictions)
            plots.insert(
                0,
                _figure(
                    svg.line_chart(
                        "roc",
                        "ROC",
                        [("ROC", c["roc"])],
                        "false positive rate",
                        "true positive rate",
                        unit_square=True,
                        diagonal=True,
                    ),
                    "ROC curve",
                ),
            )
            plots.insert(
                1,
                _figure(
                    svg.line_chart(
                        "pr", "precision-recall", [("PR", c["pr"])], "recall", "precision", unit_square=True
                    ),
                    "precision-recall curve",
                ),
            )
            calibration = [(p, o) for p, o, _ in c["calibration"]]
            plots.append(
                _figure(
                    svg.line_chart(
                        "calibration",
                        "calibration",
                        [("model", calibration)],
                        "mean predicted probability",
                        "fraction positive",
                        unit_square=True,
                        diagonal=True,
                        markers=True,
                    ),
                    "calibration (10 bins)",
                )
            )
        else:
            roc = metrics.get("receiver_operating_characteristic_curve") or {}
            points = list(
                zip(roc.get("false_positive_rates", []), roc.get("true_positive_rates", []), strict=False)
            )
            if points:
                plots.insert(
                    0,
                    _figure(
                        svg.line_chart(
                            "roc",
                            "ROC",
                            [("ROC", points)],
                            "false positive rate",
                            "true positive rate",
                            unit_square=True,
                            diagonal=True,
                        ),
                        "ROC curve (from evaluation.json)",
                    ),
                )
            parts.append(
                _gap(
                    "Precision-recall and calibration need the model's predictions on the test split, which could not be computed."
                )
            )
    elif found.problem_type == "regression":
        if found.labels is not None and found.predictions is not None:
            pairs = list(zip(found.labels.tolist(), found.predictions.tolist(), strict=True))
            plots.append(
                _figure(
                    svg.scatter(
                        "predicted-actual", "predicted vs actual", pairs, "actual", "predicted", identity=True
                    ),
                    "predicted vs actual",
                )
            )
            residuals = [(p, a - p) for a, p in pairs]
            plots.append(
                _figure(
                    svg.scatter(
                        "residuals", "residuals", residuals, "predicted", "actual - predicted", zero_line=True
                    ),
                    "residuals",
                )
            )
        else:
            parts.append(
                _gap(
                    "Predicted-vs-actual and residual plots need the model's predictions on the test split, which could not be computed."
                )
            )
    parts.append('<div class="plots">' + "".join(plots) + "</div>")
    return "".join(parts)


def _importance_section(found: Insights) -> str:
    if not found.importance:
        return "<h2>Feature importance</h2>" + _gap(
            "No feature importance: the evaluated model could not be read."
        )
    return "<h2>Feature importance</h2>" + svg.bars(
        "importance", "feature importance", found.importance, "total gain (XGBoost)"
    )


def _baseline_section(found: Insights) -> str:
    if not found.baseline:
        return "<h2>Data baseline</h2>" + _gap("No data baseline (statistics.json) was found.")
    rows = [
        [
            escape(r["name"]),
            escape(str(r["type"])),
            _num(r["present"]),
            _num(r["missing"]),
            _num(r["mean"]),
            _num(r["std"]),
            _num(r["min"]),
            _num(r["max"]),
        ]
        for r in found.baseline
    ]
    return "<h2>Data baseline (training split, per feature)</h2>" + _table(
        ["feature", "type", "present", "missing", "mean", "std", "min", "max"], rows, {2, 3, 4, 5, 6, 7}
    )


def write(path: Path, text: str) -> Path:
    """Write the page atomically: a reader sees the old page or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".tmp-", suffix=".html", delete=False, encoding="utf-8"
    )
    try:
        with handle:
            handle.write(text)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


__all__ = ["render", "write", "NOT_STARTED"]
