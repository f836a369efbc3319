"""``model-registry``: list, describe, approve and reject model versions, in the local registry or SageMaker.

Lists print aligned text (``--json`` for JSON); describe and history print JSON shaped like the
SageMaker API. Errors are one ``Error:`` line; exit codes: 2 bad input, 3 AWS failure, 4 not found.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence

from pipelines import _cli
from pipelines.errors import UsageError
from pipelines.registry import APPROVAL_STATUSES, APPROVED, BACKENDS, REJECTED, ModelRegistry, open_registry
from pipelines.registry.evidence import evidence_of, object_reader
from pipelines.report import card_command


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.ArgumentParser(
        prog="model-registry",
        description="List, describe, approve and reject model versions, in the local registry or SageMaker.",
        epilog="Exit codes: 0 done, 2 bad input, 3 AWS failure, 4 no such group or version.",
    )
    _add_backend_options(parser, after_command=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        _add_backend_options(sub, after_command=True)
        return sub

    sub = command("list-groups", "list the model package groups")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sub = command("list-versions", "list a group's versions, oldest first")
    sub.add_argument("group")
    sub.add_argument("--status", choices=APPROVAL_STATUSES, help="only versions with this approval status")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sub = command(
        "describe", "print one version as DescribeModelPackage JSON, plus the Evaluation it was gated on"
    )
    _add_version_arguments(sub)

    for name, help_ in (
        ("approve", "approve one version (deploys pick the latest Approved one)"),
        ("reject", "reject one version (deploys skip it)"),
    ):
        sub = command(name, help_)
        _add_version_arguments(sub)
        sub.add_argument("--reason", default="", help="why; kept as the approval description")
        sub.add_argument("--by", default=None, help="who decides (default: your OS user name)")

    sub = command("history", "print a version's approval changes as JSON")
    _add_version_arguments(sub)
    card_command.add_arguments(
        command("card", "write a version's model card (JSON, HTML); aws: CreateModelCard")
    )
    return parser


def _add_backend_options(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    # Accepted before and after the command; after it, SUPPRESS keeps the value given before it.
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=argparse.SUPPRESS if after_command else "local",
        help="local: the SQLite registry under $MLOPS_LOCAL_HOME; aws: SageMaker (default: local)",
    )
    parser.add_argument(
        "--region",
        default=argparse.SUPPRESS if after_command else None,
        help="AWS region for --backend aws (default: the one boto3 finds, e.g. $AWS_REGION)",
    )


def _add_version_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("group", help="model package group name")
    parser.add_argument("version", type=int, help="version number (1, 2, ...)")


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.region and args.backend != "aws":
        raise UsageError(
            f"--region {args.region} applies to --backend aws only; add --backend aws or drop it"
        )
    registry = open_registry(args.backend, region=args.region)
    args.read = object_reader(args.backend, args.region)
    return _COMMANDS[args.command](registry, args)


def _list_groups(registry: ModelRegistry, args) -> int:
    groups = registry.list_groups()
    if args.json:
        _print_json([g.to_describe() for g in groups])
    elif not groups:
        print("No model package groups.")
    else:
        _print_table(
            ("NAME", "CREATED", "DESCRIPTION"),
            [(g.name, g.created.isoformat(timespec="seconds"), g.description) for g in groups],
        )
    return 0


def _list_versions(registry: ModelRegistry, args) -> int:
    packages = registry.list_versions(args.group, approval_status=args.status)
    evidence = [evidence_of(p, args.read) for p in packages]
    if args.json:
        _print_json(
            [{**p.to_describe(), "Evaluation": e.to_dict()} for p, e in zip(packages, evidence, strict=True)]
        )
    elif not packages:
        print(f"No versions in {args.group}" + (f" with status {args.status}." if args.status else "."))
    else:
        _print_table(
            ("VERSION", "STATUS", "CREATED", "GATE", "METRICS", "MODEL DATA"),
            [
                (
                    str(p.version),
                    p.approval_status,
                    p.created.isoformat(timespec="seconds"),
                    e.gate_text(),
                    e.metrics_text(),
                    p.model_data_url,
                )
                for p, e in zip(packages, evidence, strict=True)
            ],
        )
    return 0


def _describe(registry: ModelRegistry, args) -> int:
    package = registry.get_version(args.group, args.version)
    # Not part of DescribeModelPackage's answer: read from the evaluation.json its ModelMetrics name.
    _print_json({**package.to_describe(), "Evaluation": evidence_of(package, args.read).to_dict()})
    return 0


def _decide(registry: ModelRegistry, args) -> int:
    status = APPROVED if args.command == "approve" else REJECTED
    by = args.by if args.by is not None else _os_user()
    before = registry.get_version(args.group, args.version)
    evidence = evidence_of(before, args.read)
    after = registry.update_approval(args.group, args.version, status, by=by, reason=args.reason)
    print(f"{after.name}: {before.approval_status} -> {after.approval_status} (by {by}) {after.arn}")
    print(f"  gate: {evidence.gate_text()}; evaluation: {evidence.metrics_text()}")
    print(f"  model: {after.model_data_url}")
    return 0


def _history(registry: ModelRegistry, args) -> int:
    _print_json([change.to_dict() for change in registry.approval_history(args.group, args.version)])
    return 0


_COMMANDS = {
    "card": lambda registry, args: card_command.run(registry, args),
    "list-groups": _list_groups,
    "list-versions": _list_versions,
    "describe": _describe,
    "approve": _decide,
    "reject": _decide,
    "history": _history,
}


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # No LOGNAME/USER and no password-file entry, as in some containers.
        raise UsageError("cannot tell who you are from the OS; pass --by NAME") from None


def _print_table(headers: Sequence[str], rows: list[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _print_json(value) -> None:
    print(json.dumps(value, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    return _cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
