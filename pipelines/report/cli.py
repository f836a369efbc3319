"""``execution-report``: an execution's HTML report, from the local records or from SageMaker.

    execution-report EXECUTION [--output PATH]                         # local (as local-pipeline report)
    execution-report ARN --backend aws --output PATH [--region R] [--tracking-server-arn ARN]

The page is one self-contained file; its path is printed. With ``--tracking-server-arn`` the
execution is also logged to that SageMaker managed MLflow tracking server.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines import _cli
from pipelines import aws_names as names
from pipelines.errors import ConfigError, UsageError


def add_report_arguments(parser) -> None:
    parser.add_argument("execution", help="execution id or ARN")
    parser.add_argument(
        "--output", type=Path, help="where to write the page (default: the local home's reports/)"
    )


def _main(argv: Sequence[str] | None) -> int:
    parser = _cli.ArgumentParser(prog="execution-report", description=__doc__.splitlines()[0])
    add_report_arguments(parser)
    parser.add_argument("--backend", choices=("local", "aws"), default="local")
    parser.add_argument("--region", help="AWS region for --backend aws")
    parser.add_argument("--tracking-server-arn", help="also log the execution to this MLflow tracking server")
    args = parser.parse_args(argv)
    if args.backend == "local":
        if args.region or args.tracking_server_arn:
            raise UsageError("--region and --tracking-server-arn apply to --backend aws only")
        return run_local(args)
    if not args.execution.startswith("arn:"):
        raise UsageError(f"--backend aws needs the execution's ARN, got {args.execution!r}")
    if args.output is None:
        raise UsageError("--backend aws needs --output PATH for the page")
    if args.tracking_server_arn and not names.MLFLOW_TRACKING_SERVER_ARN.match(args.tracking_server_arn):
        raise ConfigError(
            f"--tracking-server-arn {args.tracking_server_arn!r} is not a SageMaker MLflow tracking server "
            "ARN (arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)"
        )
    from pipelines.report.build import aws_report

    print(
        aws_report(
            args.execution, args.output, region=args.region, tracking_server_arn=args.tracking_server_arn
        )
    )
    return 0


def run_local(args) -> int:
    from pipelines.report.build import local_report

    print(local_report(args.execution, output=args.output))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return _cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
