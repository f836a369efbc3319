"""The execution report of a local execution: what the page shows, and the bad cases."""

import re

import execution_fixture
import pytest

from pipelines.errors import NotFoundError
from pipelines.local import cli as local_cli
from pipelines.report.build import local_report
from pipelines.report.insights import iteration_metrics


@pytest.fixture
def built(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path))
    return execution_fixture.build(tmp_path)


def plots(html: str) -> set[str]:
    return set(re.findall(r'data-plot="([^"]+)"', html))


def test_the_report_shows_every_step_with_status_duration_and_the_sections(built):
    html = local_report(built.execution_id, home=built.home).read_text()
    steps = dict(re.findall(r'data-step="([^"]+)" data-status="([^"]+)"', html))
    assert steps == {
        "Preprocess": "Succeeded",
        "Train": "Succeeded",
        "Tune": "Succeeded",
        "Evaluate": "Succeeded",
        "CheckAuc": "Succeeded",
        "RegisterModel": "Succeeded",
        "MetricBelowThreshold": "NotStarted",
    }
    assert {"dag", "tuning", "roc", "pr", "confusion", "calibration", "importance"} <= plots(html)
    assert "16.0 s" in html  # Tune ran from :04 to :20
    assert "GreaterThanOrEqualTo" in html and ">0.6<" in html  # the gate's threshold
    for trial in ("fixture000001-Tune-001", "fixture000001-Tune-003"):
        assert trial in html
    assert "calls" in html and "tenure" in html  # importance and baseline named from the schema
    assert 'class="gap"' not in html
    assert len(html.encode()) < 5 * 1024 * 1024
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_a_step_whose_outputs_were_deleted_is_named_and_the_rest_still_renders(built):
    for _, path in built.store.list(built.outputs["evaluation"] + "/"):
        path.unlink()
    built.store.path(built.outputs["model"]).unlink()
    html = local_report(built.execution_id, home=built.home).read_text()
    assert "Evaluate: output &#x27;evaluation&#x27; is missing at" in html
    assert "No evaluation report" in html
    assert {"dag", "tuning"} <= plots(html)
    assert "roc" not in plots(html)
    assert "tenure" in html  # the baseline is still there


def test_an_execution_still_running_is_shown_as_running(built, tmp_path):
    running = execution_fixture.build(tmp_path, "fixture000002", status="Executing")
    with running.records.hold(running.execution_id):
        html = local_report(running.execution_id, home=tmp_path).read_text()
    assert re.search(r'id="status"[^>]*>Running<', html)
    assert 'data-step="Evaluate" data-status="Executing"' in html
    assert "still running" in html


def test_an_unknown_execution_is_one_line_naming_the_known_ones(built):
    with pytest.raises(NotFoundError, match="no local execution 'nope'.*fixture000001"):
        local_report("nope", home=built.home)


def test_local_pipeline_report_prints_the_path_and_exits_4_for_an_unknown_id(built, capsys):
    assert local_cli.main(["report", built.execution_id]) == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith(f"reports/{built.execution_id}.html")
    assert local_cli.main(["report", "unknown-id"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("Error: no local execution 'unknown-id'") and "Traceback" not in err


def test_iteration_metrics_read_the_container_log_format_with_tabs_or_011():
    text = (
        "[0]#011train-auc:0.5#011validation-auc:0.4\n"
        "[1]\ttrain-auc:0.6\tvalidation-auc:0.45\n"
        "[best]#011train-auc:0.6\n"
    )
    assert iteration_metrics(text) == {
        "train:auc": [(0, 0.5), (1, 0.6)],
        "validation:auc": [(0, 0.4), (1, 0.45)],
    }


def test_a_regression_evaluation_is_plotted_as_predicted_vs_actual_and_residuals(built):
    import numpy as np

    from pipelines.report import page
    from pipelines.report.execution import local_execution
    from pipelines.report.insights import gather
    from pipelines.report.objects import LocalObjects

    view = local_execution(built.records, built.arn)
    found = gather(view, LocalObjects(built.store))
    found.problem_type = "regression"
    found.evaluation = {"regression_metrics": {"rmse": {"value": 4.2, "standard_deviation": 0.3}}}
    found.labels = np.array([10.0, 20.0, 30.0])
    found.predictions = np.array([12.0, 19.0, 33.0])
    html = page.render(view, found)
    assert {"predicted-actual", "residuals"} <= plots(html)
    assert not {"roc", "pr", "calibration", "confusion"} & plots(html)
    assert ">rmse<" in html and ">4.2<" in html
