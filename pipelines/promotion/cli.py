"""``promote``: promote approved model versions through the stages, roll back, and say what runs where.

    promote select [--version N | --version ARN]               the version a deploy would take: its ARN
    promote deploy --stage dev [--version N | --version ARN]   gate, deploy, smoke test, record
    promote approve --stage prod --version N [--reason ...]    the manual gate before a stage
    promote rollback --stage prod                              the previous approved version back
    promote undeploy --stage dev                               stop serving in a stage
    promote reject --version N --reason ...                    reject, and roll back where it serves
    promote where --version N                                  the stages a version has served in
    promote sample [--version N] [--rows K] [--header]         raw records to try an endpoint with
    promote status                                             what runs in every stage

Stages come from ``deploy/promotion.json`` and ``deploy/stages/<stage>.json`` (``--config``).
``--backend local`` (the default) makes each stage a local account with its own loopback endpoint
and uses the local registry; ``--backend aws`` uses SageMaker's Model Registry in this account and
deploys into each stage's account through its deploy role (what ``codebuild/buildspec-deploy.yml``
runs, one stage per call).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines import _cli
from pipelines.errors import UsageError
from pipelines.promotion.config import load_promotion
from pipelines.promotion.flow import Promotion, current_user, header_line

DEFAULT_CONFIG = Path("deploy/promotion.json")
BACKENDS = ("local", "aws")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _whole(option: str, text: str, what: str, low: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is {what}") from None
    if number < 1:
        raise UsageError(f"{option} {number}: {low}")
    return number


def _version(text: str) -> int | str | None:
    """A version number, a model package ARN, or None for ``latest`` (the latest Approved)."""
    if text.startswith("arn:"):
        return text
    if text == "latest":
        return None
    return _whole(
        "--version", text, "neither a version number nor a model package ARN", "versions start at 1"
    )


def _positive(text: str) -> int:
    return _whole("--rows", text, "not a whole number", "give at least 1")


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _main(argv: Sequence[str] | None) -> int:
    parser = _cli.ArgumentParser(prog="promote", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="promotion.json (default: %(default)s)"
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="local", help="where stages run (default: %(default)s)"
    )
    parser.add_argument("--region", help="the registry's region with --backend aws (default: boto3's)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_cli.ArgumentParser)
    select = commands.add_parser("select", help="print the ARN of the version a deploy would take")
    select.add_argument(
        "--version", type=_version, help="version number, ARN, or latest (default: the latest Approved)"
    )
    deploy = commands.add_parser("deploy", help="promote a version to a stage")
    deploy.add_argument("--stage", required=True)
    deploy.add_argument(
        "--version", type=_version, help="version number, ARN, or latest (default: the latest Approved)"
    )
    deploy.add_argument(
        "--force",
        action="store_true",
        help="deploy even if the version already serves in the stage, or its problem type or "
        "dataset spec differs from the serving version's",
    )
    deploy.add_argument(
        "--approved-by",
        help="who passed the stage's manual-approval gate elsewhere (e.g. a CodePipeline approval)",
    )
    approve = commands.add_parser("approve", help="pass the manual gate before a stage")
    approve.add_argument("--stage", required=True)
    approve.add_argument("--version", type=_version, required=True)
    approve.add_argument("--by", default=None, help="who approves (default: your user name)")
    approve.add_argument("--reason", default="")
    rollback = commands.add_parser("rollback", help="redeploy the version that served before")
    rollback.add_argument("--stage", required=True)
    undeploy = commands.add_parser("undeploy", help="stop serving in a stage (its endpoint goes)")
    undeploy.add_argument("--stage", required=True)
    reject = commands.add_parser("reject", help="reject a version and take it out of every stage")
    reject.add_argument("--version", type=_version, required=True)
    reject.add_argument("--reason", required=True)
    reject.add_argument("--by", default=None)
    where = commands.add_parser("where", help="where a version has served")
    where.add_argument("--version", type=_version, required=True)
    commands.add_parser("status", help="what runs in every stage")
    sample = commands.add_parser(
        "sample", help="print request rows (CSV raw records, no label) from a version's test split"
    )
    sample.add_argument(
        "--version", type=_version, help="version number, ARN, or latest (default: the latest Approved)"
    )
    sample.add_argument("--rows", type=_positive, default=1, help="how many rows (default: %(default)s)")
    sample.add_argument("--header", action="store_true", help="print the header row of the columns first")
    args = parser.parse_args(argv)

    from pipelines.registry import open_registry

    config = load_promotion(args.config)
    if args.backend == "aws":
        from pipelines.promotion.aws import AwsDeployer

        registry, deployer = open_registry("aws", region=args.region), AwsDeployer()
    else:
        from pipelines.promotion.local import LocalDeployer

        registry, deployer = open_registry("local"), LocalDeployer()
    say = print if args.command != "select" else _stderr
    promotion = Promotion(config, registry, deployer, say=say, confirm=_ask)
    if args.command == "select":
        print(promotion.select(args.version).arn)
    elif args.command == "deploy":
        promotion.promote(args.stage, args.version, approved_by=args.approved_by, force=args.force)
    elif args.command == "approve":
        version = promotion.select(args.version).version
        promotion.approve_gate(args.stage, version, by=args.by or current_user(), reason=args.reason)
    elif args.command == "rollback":
        promotion.rollback(args.stage)
    elif args.command == "undeploy":
        promotion.undeploy(args.stage)
    elif args.command == "reject":
        if not isinstance(args.version, int):
            raise UsageError("reject --version takes a version number, not latest or an ARN")
        promotion.reject(args.version, by=args.by or current_user(), reason=args.reason)
    elif args.command == "where":
        if not isinstance(args.version, int):
            raise UsageError("where --version takes a version number, not latest or an ARN")
        print(json.dumps(promotion.where(args.version), indent=2))
    elif args.command == "sample":
        package = promotion.select(args.version)
        found = promotion.sample(package)
        if args.header and "columns" in found:
            print(header_line(found["columns"]))
        elif args.header:
            raise UsageError(
                f"{package.name} was trained without schema.json: its sample rows are encoded rows, "
                "which have no header row"
            )
        for row in found["rows"][: args.rows]:
            print(row)
    else:
        print(json.dumps(promotion.status(), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return _cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
