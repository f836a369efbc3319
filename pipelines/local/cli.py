"""``local-pipeline``: run a pipeline definition JSON on this machine and inspect its executions.

    local-pipeline run --definition-file pipeline.json --pipeline-name NAME [--parameters ...]
    local-pipeline list-executions [--pipeline-name NAME]
    local-pipeline describe-execution ID
    local-pipeline list-steps ID
    local-pipeline retry ID
    local-pipeline upload PATH s3://bucket/key
    local-pipeline report ID [--output PATH]

Everything lives under the local home (``$MLOPS_LOCAL_HOME``). Answers are JSON shaped like
SageMaker's; ``run`` and ``retry`` exit 1 when the execution fails.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines import _cli
from pipelines.errors import TemplateError, UsageError
from pipelines.local.engine import ExecutionOutcome, LocalRunner
from pipelines.local.progress import reporter_for
from pipelines.local.store import ObjectStore, parse_uri
from pipelines.report.cli import add_report_arguments
from pipelines.report.cli import run_local as run_report
from pipelines.tracking.hooks import tracked

#: How pipelines/local/jobs.py words an input the local store lacks, and what the user can do.
MISSING_INPUT = "no object at "
STAGING_HINT = (
    "a definition written by get-pipeline-definition finds nothing staged: "
    "`run-pipeline --local --no-start --definition-file F` writes it and stages its code and sample data, "
    "--upload PATH=S3URI stages your own"
)


class ExecutionFailed(TemplateError):
    """The execution ran and ended Failed; the summary above says where and why."""

    exit_code = 1


def parse_uploads(items: Sequence[str]) -> list[tuple[Path, str]]:
    """``--upload PATH=s3://bucket/key`` pairs, checked: the path exists, the URI is valid."""
    pairs = []
    for item in items:
        path, equals, uri = item.rpartition("=")
        if not equals or not path or not uri.startswith("s3://"):
            raise UsageError(f"--upload {item!r} is not PATH=s3://bucket/key")
        parse_uri(uri)
        if not Path(path).exists():
            raise UsageError(f"--upload {item!r}: {path!r} does not exist")
        pairs.append((Path(path), uri))
    return pairs


def upload(store: ObjectStore, source: Path, uri: str) -> int:
    """A file to the object ``uri`` (or, when ``uri`` ends in '/', under it); a directory under ``uri``."""
    if source.is_dir():
        return store.put_tree(source, uri)
    if uri.endswith("/"):
        uri += source.name
    store.put_file(source, uri)
    return 1


def stage(store: ObjectStore, uploads: Sequence[tuple[Path, str]]) -> None:
    """Put each (path, uri) of ``uploads`` in the store, saying what went where."""
    for path, uri in uploads:
        count = upload(store, path, uri)
        print(f"staged {path} at {uri} ({count} object{'s' if count != 1 else ''})")


#: Where a run's sample tables go, beside (never under) the prefix the definition reads by default.
STAGED_INPUTS = "local-inputs"


def stage_samples(
    store: ObjectStore,
    samples: Sequence[tuple[Path, str]],
    definition: str,
    given: Mapping[str, Any],
    *,
    per_content: bool,
) -> dict[str, str]:
    """Stage a pipeline's sample tables so that a run reads exactly them, never an earlier table.

    ``samples`` are (file, URI) with the URI under the prefix the definition reads by default.
    With ``per_content``, and a String parameter defaulting to that prefix (or object) that the
    user did not set, the file goes to ``<parent>/local-inputs/<digest>/`` instead, and the
    parameter values to run with are returned: a new table is a new location, as a trigger
    passes one on SageMaker, so the step cache retrains on it. Otherwise the objects already under
    the prefix are removed first, so the prefix holds this table alone.
    """
    declared = {
        p["Name"]: p.get("DefaultValue")
        for p in json.loads(definition).get("Parameters", [])
        if p.get("Type") == "String"
    }
    values: dict[str, str] = {}
    for path, uri in samples:
        prefix, _, name = uri.rpartition("/")
        parent = prefix.rpartition("/")[0]
        readers = [
            key
            for key, default in declared.items()
            if default in (prefix, prefix + "/", uri) and key not in given
        ]
        if per_content and readers and parent.count("/") >= 3:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            location = f"{parent}/{STAGED_INPUTS}/{digest}/"
            count = upload(store, path, location + name)
            for key in readers:
                values[key] = location + name if declared[key] == uri else location
            reading = ", ".join(f"{key}={values[key]}" for key in readers)
            print(f"staged {path} at {location}{name} ({_objects(count)}); this run reads {reading}")
            continue
        removed = [key for key, _ in store.list(prefix + "/") if key != parse_uri(uri).key]
        store.delete(prefix + "/")
        count = upload(store, path, uri)
        note = f"; removed {_objects(len(removed))} an earlier run staged there" if removed else ""
        print(f"staged {path} at {uri} ({_objects(count)}){note}")
    return values


def _objects(count: int) -> str:
    return f"{count} object{'s' if count != 1 else ''}"


def run_locally(
    runner: LocalRunner,
    definition: str,
    *,
    pipeline_name: str,
    parameters: Mapping[str, Any],
    uploads: Sequence[tuple[Path, str]] = (),
    use_cache: bool = True,
    source: str = "the definition",
) -> ExecutionOutcome:
    """Check the definition, stage the uploads, run; ExecutionFailed if the execution fails."""
    runner.check(definition, source, parameters)  # nothing staged for a definition that cannot run
    stage(runner.store, uploads)
    outcome = runner.start(
        definition, pipeline_name=pipeline_name, parameters=parameters, source=source, use_cache=use_cache
    )
    return _ended(outcome)


class ExecutionStopped(TemplateError):
    """The execution was interrupted (Ctrl-C) and recorded as Stopped; ``retry`` resumes it."""

    exit_code = 130


def _ended(outcome: ExecutionOutcome) -> ExecutionOutcome:
    if outcome.status == "Stopped":
        raise ExecutionStopped(f"execution {outcome.execution_id} {outcome.status}: {outcome.failure_reason}")
    if outcome.status != "Succeeded":
        raise ExecutionFailed(f"execution {outcome.execution_id} {outcome.status}: {outcome.failure_reason}")
    return outcome


def add_parameters_option(parser) -> None:
    parser.add_argument(
        "--parameters",
        nargs="+",
        default=["{}"],
        metavar="NAME=VALUE",
        help="pipeline parameter values for this run: Name=Value pairs or one JSON object",
    )


def add_local_options(parser) -> None:
    """The options of a local run, shared by ``local-pipeline run`` and ``run-pipeline --local``."""
    parser.add_argument(
        "--upload",
        action="append",
        default=[],
        metavar="PATH=S3URI",
        help="put a local file or directory in the local object store first (repeatable)",
    )
    parser.add_argument("--no-cache", action="store_true", help="run every step, ignoring CacheConfig")


def _main(argv: Sequence[str] | None) -> int:
    parser = _cli.ArgumentParser(prog="local-pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_cli.ArgumentParser)
    run = commands.add_parser("run", help="run a definition JSON")
    run.add_argument("--definition-file", type=Path, required=True)
    run.add_argument("--pipeline-name", required=True, help="name the executions are filed under")
    add_parameters_option(run)
    add_local_options(run)
    listing = commands.add_parser("list-executions", help="executions, newest first")
    listing.add_argument("--pipeline-name")
    for name, text in (
        ("describe-execution", "one execution (DescribePipelineExecution)"),
        ("list-steps", "an execution's steps (ListPipelineExecutionSteps)"),
        ("retry", "re-run the steps of a failed or interrupted execution that did not succeed"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("execution", help="execution id or ARN")
    put = commands.add_parser("upload", help="put a file or directory in the local object store")
    put.add_argument("path", type=Path)
    put.add_argument("uri")
    add_report_arguments(commands.add_parser("report", help="an execution's HTML report; prints its path"))
    args = parser.parse_args(argv)

    if args.command == "report":
        return run_report(args)
    if args.command == "run":
        try:
            definition = args.definition_file.read_text(encoding="utf-8")
        except OSError as err:
            raise UsageError(f"--definition-file {str(args.definition_file)!r}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"--definition-file {str(args.definition_file)!r} is not UTF-8 text") from None
        runner = LocalRunner(reporter=tracked(reporter_for(sys.stdout)))
        try:
            run_locally(
                runner,
                definition,
                pipeline_name=args.pipeline_name,
                parameters=_cli.parameter_options(args.parameters),
                uploads=parse_uploads(args.upload),
                use_cache=not args.no_cache,
                source=str(args.definition_file),
            )
        except ExecutionFailed as err:
            # As on SageMaker the job fails on its missing input; the hint says how to stage it.
            if MISSING_INPUT not in str(err):
                raise
            raise ExecutionFailed(f"{err}; {STAGING_HINT}") from None
        return 0
    if args.command == "retry":
        runner = LocalRunner(reporter=tracked(reporter_for(sys.stdout)))
        _ended(runner.retry(args.execution))
        return 0
    runner = LocalRunner()
    if args.command == "upload":
        parse_uri(args.uri)
        if not args.path.exists():
            raise UsageError(f"{str(args.path)!r} does not exist")
        count = upload(runner.store, args.path, args.uri)
        print(f"{count} object{'s' if count != 1 else ''} at {args.uri}")
        return 0
    answers = {
        "list-executions": lambda: runner.records.list_executions_answer(args.pipeline_name),
        "describe-execution": lambda: runner.records.describe_execution(args.execution),
        "list-steps": lambda: runner.records.list_execution_steps(args.execution),
    }
    print(json.dumps(answers[args.command](), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return _cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
