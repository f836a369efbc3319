"""Build an execution's report page, locally or from AWS, and say where it went."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from pipelines.local_home import EXECUTIONS_DB, OBJECT_STORE
from pipelines.report import page
from pipelines.report.execution import aws_execution, local_execution
from pipelines.report.insights import gather
from pipelines.report.logs import CloudWatchJobLogs
from pipelines.report.objects import LocalObjects, S3Objects

REPORTS_DIR = "reports"


def local_report(reference: str, home: Path | None = None, output: Path | None = None) -> Path:
    """The report of a local execution (id or ARN), written to ``output`` or
    ``$MLOPS_LOCAL_HOME/reports/<execution id>.html``."""
    from pipelines.local.records import ExecutionRecords
    from pipelines.local.store import ObjectStore
    from pipelines.local_home import local_home

    home = Path(home) if home is not None else local_home()
    records = ExecutionRecords(home / EXECUTIONS_DB)
    view = local_execution(records, reference)
    found = gather(view, LocalObjects(ObjectStore(home / OBJECT_STORE)))
    target = output or home / REPORTS_DIR / f"{view.execution_id}.html"
    return page.write(target, page.render(view, found))


def aws_report(
    execution_arn: str,
    output: Path,
    *,
    sm=None,
    s3=None,
    logs=None,
    region: str | None = None,
    tracking_server_arn: str | None = None,
) -> Path:
    """The report of a SageMaker pipeline execution, from its steps, job descriptions, training logs
    in CloudWatch Logs and S3 outputs; with ``tracking_server_arn``, the execution is also logged to
    that MLflow tracking server (a failure there is one warning on stderr)."""
    if sm is None or s3 is None or logs is None:
        import boto3

        from pipelines.aws_calls import client_config

        # The clients given decide the region of those made here, so that all read one region.
        given = next((c for c in (sm, s3, logs) if c is not None), None)
        session = boto3.Session(region_name=region or (given.meta.region_name if given else None))
        sm = sm or session.client("sagemaker", config=client_config())
        s3 = s3 or session.client("s3", config=client_config())
        logs = logs or session.client("logs", config=client_config())
    view = aws_execution(sm, execution_arn)
    job_logs = CloudWatchJobLogs(logs)
    found = gather(view, S3Objects(s3), logs=job_logs)
    if tracking_server_arn:
        from pipelines.tracking.mlflow_log import log_execution

        log_execution(
            tracking_server_arn,
            view,
            found,
            logs=job_logs,
            warn=lambda text: print(text, file=sys.stderr),
        )
    return page.write(output, page.render(view, found))


def aws_track(
    execution_arn: str, tracking_server_arn: str, *, sm, s3, logs, warn: Callable[[str], None]
) -> bool:
    """Log a finished SageMaker execution to an MLflow tracking server; True when logged. Reading
    the execution or logging it may fail: either is one warning through ``warn``, never an error,
    since tracking is never on the critical path."""
    from pipelines.errors import TemplateError
    from pipelines.tracking.mlflow_log import log_execution

    try:
        view = aws_execution(sm, execution_arn)
    except TemplateError as err:
        warn(f"warning: {err}; the execution is not tracked")
        return False
    job_logs = CloudWatchJobLogs(logs)
    found = gather(view, S3Objects(s3), logs=job_logs, with_predictions=False)
    return log_execution(tracking_server_arn, view, found, logs=job_logs, warn=warn)
