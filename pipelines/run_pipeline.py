"""``run-pipeline``: upload the step code, upsert the pipeline idempotently, tag it, start it.

Everything that can be checked locally (JSON options, the module, its arguments, the role ARN,
the tags) is checked before the first AWS call. An unchanged definition is not re-sent, so
SageMaker keeps the pipeline's step cache, and with --start-if-changed it is not started either.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from pipelines import _cli
from pipelines import aws_names as names
from pipelines.aws_calls import aws_error, client_config
from pipelines.errors import AwsError, ConfigError, UsageError, unknown_names
from pipelines.local.cli import (
    add_local_options,
    add_parameters_option,
    parse_uploads,
    run_locally,
    stage,
    stage_samples,
)
from pipelines.local.definition import typed_value

#: Tags that make SageMaker Studio show the pipeline inside its project.
PROJECT_NAME_TAG = "sagemaker:project-name"
PROJECT_ID_TAG = "sagemaker:project-id"

TERMINAL_STATUSES = {"Succeeded", "Failed", "Stopped"}


@dataclass(frozen=True)
class UpsertResult:
    action: str  # "created", "updated" or "unchanged"
    pipeline_arn: str
    definition_changed: bool = True


@dataclass(frozen=True)
class SampleInput:
    """Where a run on an empty input location takes its data from instead."""

    input_url: str  # the location that was found empty
    sample_url: str  # where the bundled sample table was staged for this execution
    uploaded: bool  # False when the same bytes were already there


def should_start(no_start: bool, start_if_changed: bool, result: UpsertResult) -> tuple[bool, str]:
    """Whether to start an execution after the upsert, and the line that says why not.

    SageMaker's step cache keys on a step's arguments, not on the data behind its input URIs: an
    unchanged definition started on the same input reuses every cached step and registers the
    same model again. So the build starts only what changed, or what it is asked to.
    """
    if no_start:
        return False, "not started (--no-start)"
    if start_if_changed and not result.definition_changed:
        return False, (
            "definition unchanged: no execution started (on the same data it would register the same "
            "model again; new data starts the pipeline through the data triggers); to start one anyway, "
            "drop --start-if-changed"
        )
    return True, ""


def parse_tags(text: str, project_name: str | None, project_id: str | None) -> list[dict]:
    """``--tags`` (a JSON list of {"Key","Value"} or an object) plus the Studio project tags."""
    raw = _cli.parse_json(text, "--tags", (list, dict), '\'[{"Key": "team", "Value": "churn"}]\'')
    pairs = list(raw.items()) if isinstance(raw, dict) else raw
    tags: dict[str, str] = {}
    problems = []
    for i, item in enumerate(pairs):
        if isinstance(item, tuple):
            key, value = item
        elif isinstance(item, dict) and set(item) == {"Key", "Value"}:
            key, value = item["Key"], item["Value"]
        else:
            problems.append(f'item {i} is not {{"Key": ..., "Value": ...}}: {json.dumps(item)}')
            continue
        if not isinstance(key, str) or not key or not isinstance(value, str):
            problems.append(f"item {i}: Key must be a non-empty string and Value a string")
        elif key in tags:
            problems.append(f"key {key!r} is given twice")
        else:
            tags[key] = value
    if problems:
        raise UsageError(f"--tags: {'; '.join(problems)}")
    for key, value in ((PROJECT_NAME_TAG, project_name), (PROJECT_ID_TAG, project_id)):
        if value:
            tags.setdefault(key, value)
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def parse_parameters(given: str | dict, definition: str) -> list[dict]:
    """``--parameters`` (a JSON object, or Name=Value pairs as text) checked against the definition's
    parameters and their types.

    A value SageMaker would only refuse hours into an execution (an Integer given 4.5, an
    approval status misspelt) is refused here, before anything is started.
    """
    if isinstance(given, str):
        given = _cli.parse_json(given, "--parameters", dict, "'{\"MaxTuningJobs\": 4}'")
    document = json.loads(definition)
    declared = {p["Name"]: p["Type"] for p in document.get("Parameters", [])}
    problem = unknown_names("--parameters", "pipeline parameter(s)", given, declared)
    if problem:
        raise UsageError(problem)
    approval = _approval_parameters(document)
    problems, values = [], {}
    for name, value in given.items():
        kind = declared[name]
        typed = typed_value(value, kind, from_text=isinstance(value, str))
        if typed is None:
            problems.append(f"{name}={json.dumps(value)} is not a{'n' if kind == 'Integer' else ''} {kind}")
        elif name in approval and typed not in names.APPROVAL_STATUSES:
            problems.append(f"{name}={value!r} is not one of {', '.join(names.APPROVAL_STATUSES)}")
        else:
            values[name] = typed
    if problems:
        raise UsageError(f"--parameters: {'; '.join(problems)}")
    return [{"Name": name, "Value": _render(value)} for name, value in values.items()]


def _render(value) -> str:
    # SageMaker takes every parameter value as a string; booleans as the JSON words.
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _approval_parameters(document: dict) -> set[str]:
    """Parameters a RegisterModel step uses as its approval status, anywhere in the definition."""
    found = set()

    def visit(steps):
        for step in steps:
            args = step.get("Arguments", {})
            status = args.get("ModelApprovalStatus") if step.get("Type") == "RegisterModel" else None
            if isinstance(status, dict) and str(status.get("Get", "")).startswith("Parameters."):
                found.add(status["Get"].removeprefix("Parameters."))
            visit(args.get("IfSteps", []) + args.get("ElseSteps", []))

    visit(document.get("Steps", []))
    return found


def same_definition(deployed: str, new: str) -> bool:
    """Definitions are compared as JSON values, so formatting differences do not count."""
    try:
        return json.loads(deployed) == json.loads(new)
    except json.JSONDecodeError:
        return False


def upsert_pipeline(sm, name: str, definition: str, role_arn: str, description: str, tags: list[dict]):
    """Create the pipeline, update it if its definition, role or description changed, or leave it."""
    try:
        current = sm.describe_pipeline(PipelineName=name)
    except ClientError as err:
        if not _is_not_found(err):
            raise
        arn = sm.create_pipeline(
            PipelineName=name,
            PipelineDefinition=definition,
            PipelineDescription=description,
            RoleArn=role_arn,
            Tags=tags,
        )["PipelineArn"]
        return UpsertResult("created", arn)

    arn = current["PipelineArn"]
    definition_unchanged = same_definition(current.get("PipelineDefinition", ""), definition)
    unchanged = (
        definition_unchanged
        and current.get("RoleArn") == role_arn
        and (current.get("PipelineDescription") or "") == description
    )
    if not unchanged:
        sm.update_pipeline(
            PipelineName=name,
            PipelineDefinition=definition,
            PipelineDescription=description,
            RoleArn=role_arn,
        )
    present = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn).get("Tags", [])}
    missing = [t for t in tags if present.get(t["Key"]) != t["Value"]]
    if missing:
        sm.add_tags(ResourceArn=arn, Tags=missing)
    return UpsertResult(
        "unchanged" if unchanged else "updated", arn, definition_changed=not definition_unchanged
    )


def split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def stage_sample_if_empty(
    s3, input_url: str, sample: Path, bucket: str, key_prefix: str, kms_key_id: str | None
) -> SampleInput | None:
    """When nothing is at ``input_url`` (an object or prefix), stage the sample table beside the
    pipeline's code, outside the input location: a later upload of real data is never mixed with
    it, and no data trigger fires on it. None when the input location holds data."""
    input_bucket, input_key = split_s3_url(input_url)
    if s3.list_objects_v2(Bucket=input_bucket, Prefix=input_key, MaxKeys=1).get("KeyCount", 0):
        return None
    key = f"{key_prefix}/sample/{sample.name}"
    body = sample.read_bytes()
    digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
    try:
        present = s3.head_object(Bucket=bucket, Key=key).get("ETag", "").strip('"') == digest
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        present = False
    if not present:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
        s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    return SampleInput(input_url, f"s3://{bucket}/{key}", uploaded=not present)


def _input_url(definition: str, parameter: str, given: list[dict]) -> str | None:
    """The value an execution gets for ``parameter``: as given, or the definition's default."""
    for item in given:
        if item["Name"] == parameter:
            return item["Value"]
    for declared in json.loads(definition).get("Parameters", []):
        if declared["Name"] == parameter:
            return declared.get("DefaultValue")
    return None


def _is_not_found(err) -> bool:
    # SageMaker answers ResourceNotFound; some endpoints (and moto) a ValidationException.
    error = err.response.get("Error", {})
    return error.get("Code") == "ResourceNotFound" or (
        error.get("Code") == "ValidationException" and "could not find" in error.get("Message", "").lower()
    )


def wait_for_execution(
    sm,
    execution_arn: str,
    poll_seconds: float = 30.0,
    timeout_seconds: float = 4 * 3600,
    report: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Poll an execution until it ends; report each status change; return the last description."""
    deadline = time.monotonic() + timeout_seconds
    last = None
    while True:
        description = sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        status = description["PipelineExecutionStatus"]
        if status != last:
            report(f"execution status: {status}")
            last = status
        if status in TERMINAL_STATUSES:
            return description
        if time.monotonic() > deadline:
            raise AwsError(
                f"execution {execution_arn} still {status} after {timeout_seconds:.0f} s; it keeps running"
            )
        sleep(poll_seconds)


def aws_clients(region: str | None):
    """A SageMaker and an S3 client with adaptive retries (client-side rate limiting on throttling)."""
    import boto3

    config = client_config()
    session = boto3.Session(region_name=region)
    return session.client("sagemaker", config=config), session.client("s3", config=config)


def _main(argv: Sequence[str] | None) -> int:
    parser = _cli.ArgumentParser(prog="run-pipeline", description=__doc__.splitlines()[0])
    _cli.add_module_options(parser)
    parser.add_argument("--role-arn", help="IAM role the pipeline runs as (required unless --local)")
    parser.add_argument(
        "--tags", default="[]", help='JSON list of {"Key": ..., "Value": ...} for the pipeline'
    )
    parser.add_argument("--description", default=None, help="pipeline description shown in Studio")
    parser.add_argument(
        "--project-name",
        default=os.environ.get("SAGEMAKER_PROJECT_NAME"),
        help="SageMaker project name tag (default: $SAGEMAKER_PROJECT_NAME)",
    )
    parser.add_argument(
        "--project-id",
        default=os.environ.get("SAGEMAKER_PROJECT_ID"),
        help="SageMaker project id tag (default: $SAGEMAKER_PROJECT_ID)",
    )
    add_parameters_option(parser)
    parser.add_argument(
        "--definition-file", type=Path, help="also write the definition sent to SageMaker to this file"
    )
    parser.add_argument("--no-start", action="store_true", help="upsert only; do not start an execution")
    parser.add_argument(
        "--start-if-changed",
        action="store_true",
        help="start an execution only when the upsert created the pipeline or changed its definition",
    )
    parser.add_argument(
        "--sample-if-empty",
        action="store_true",
        help="when nothing is at the input location, run this execution on the module's bundled sample "
        "table (staged under <pipeline>/sample/) and say so",
    )
    parser.add_argument(
        "--wait", action="store_true", help="block until the execution ends; fail if it fails"
    )
    local = parser.add_argument_group("local run (no AWS account, no Docker)")
    local.add_argument(
        "--local",
        action="store_true",
        help="run the definition on this machine with the local runner instead of SageMaker",
    )
    add_local_options(local)
    args = parser.parse_args(argv)
    _cli.configure_logging(args.verbose)

    # ---- everything checkable without AWS, all before the first call
    kwargs = _cli.parse_json(args.kwargs, "--kwargs", dict, '\'{"region": "us-east-1"}\'')
    if args.local:
        return _run_local(args, kwargs)
    if args.upload or args.no_cache:
        raise UsageError("--upload and --no-cache apply to local runs only: add --local")
    if args.role_arn is None:
        raise UsageError("--role-arn is required to run on SageMaker (or pass --local)")
    if not names.ROLE_ARN.match(args.role_arn):
        raise ConfigError(
            f"--role-arn {args.role_arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
        )
    tags = parse_tags(args.tags, args.project_name, args.project_id)
    if args.wait and args.no_start:
        raise UsageError("--wait and --no-start contradict each other: drop one")
    module = _cli.load_pipeline_module(args.module_name)
    if args.sample_if_empty and not hasattr(module, "get_sample_input"):
        raise UsageError(
            f"--sample-if-empty: {args.module_name} has no get_sample_input(**kwargs) naming a sample table"
        )
    _cli.check_kwargs(module.get_pipeline, kwargs)
    kwargs.setdefault("role", args.role_arn)
    pipeline = module.get_pipeline(**kwargs)
    definition = pipeline.definition()
    name = pipeline.name
    execution_parameters = parse_parameters(_cli.parameter_options(args.parameters), definition)
    code = module.get_code_upload(**kwargs) if hasattr(module, "get_code_upload") else None
    tracking_server = (
        module.get_tracking_server_arn(**kwargs) if hasattr(module, "get_tracking_server_arn") else None
    )
    description = args.description or f"Model-build pipeline {name} ({args.module_name})"

    if args.definition_file:
        _cli.write_atomically(args.definition_file, definition, "--definition-file")

    # The region the pipeline was built for (from --kwargs or the environment), not boto3's guess.
    region = pipeline.sagemaker_session.boto_region_name
    doing = "uploading the step code"
    try:
        sm, s3 = aws_clients(region)
        if code is not None:
            results = code.upload(s3)
            fresh = sum(r.uploaded for r in results)
            print(f"code: {fresh} object(s) uploaded, {len(results) - fresh} already in place")
        doing = f"upserting pipeline {name}"
        result = upsert_pipeline(sm, name, definition, args.role_arn, description, tags)
        if result.action == "unchanged":
            print(
                f"pipeline {name}: definition unchanged, not updated (step cache kept): {result.pipeline_arn}"
            )
        else:
            print(f"pipeline {name}: {result.action}: {result.pipeline_arn}")
        start_now, why_not = should_start(args.no_start, args.start_if_changed, result)
        if not start_now:
            print(f"pipeline {name}: {why_not}")
            return 0
        if args.sample_if_empty:
            doing = "looking for data at the input location"
            execution_parameters = _sample_if_empty(
                s3, module, kwargs, definition, execution_parameters, code, name
            )
        doing = f"starting pipeline {name}"
        start = {"PipelineName": name, "PipelineParameters": execution_parameters}
        commit = os.environ.get("CODEBUILD_RESOLVED_SOURCE_VERSION")
        if commit:
            start["PipelineExecutionDescription"] = f"commit {commit}"
        execution_arn = sm.start_pipeline_execution(**start)["PipelineExecutionArn"]
        print(f"execution started: {execution_arn}")
        if not args.wait:
            if tracking_server:
                print(
                    f"not logged to MLflow tracking server {tracking_server} by this command (in the "
                    "project template, its execution-ended rule logs it once it ends; otherwise add --wait, "
                    f"or run execution-report {execution_arn} --backend aws --output PATH "
                    "--tracking-server-arn ARN then)"
                )
            return 0
        doing = f"waiting for {execution_arn}"
        final = wait_for_execution(sm, execution_arn)
    except (BotoCoreError, ClientError) as err:
        raise aws_error(err, doing, region_hint="pass region in --kwargs or set AWS_REGION") from None

    if tracking_server:
        _track(execution_arn, tracking_server, sm, s3, region)

    if final["PipelineExecutionStatus"] != "Succeeded":
        reason = final.get("FailureReason", "no reason given; see the failed step in Studio")
        raise AwsError(f"execution {execution_arn} ended {final['PipelineExecutionStatus']}: {reason}")
    return 0


def _track(execution_arn: str, tracking_server: str, sm, s3, region: str) -> None:
    """Log the ended execution to the MLflow tracking server, from outside the jobs; a failure is
    one warning and the command's outcome stays the execution's."""
    import boto3

    from pipelines.report.build import aws_track

    logs = boto3.Session(region_name=region).client("logs", config=client_config())
    warn = lambda text: print(text, file=sys.stderr)  # noqa: E731
    if aws_track(execution_arn, tracking_server, sm=sm, s3=s3, logs=logs, warn=warn):
        print(f"execution logged to MLflow tracking server {tracking_server}")


def _sample_if_empty(s3, module, kwargs: dict, definition: str, parameters: list[dict], code, name: str):
    """The execution's parameters, with the input pointed at the staged sample if its location is empty."""
    parameter = getattr(module, "INPUT_PARAMETER", "InputDataUrl")
    input_url = _input_url(definition, parameter, parameters)
    sample = module.get_sample_input(**kwargs)
    if not (isinstance(input_url, str) and input_url.startswith("s3://")) or sample is None:
        raise ConfigError(
            f"--sample-if-empty: pipeline {name} needs an s3:// {parameter} and a sample table "
            f"(found {parameter}={input_url!r}, sample={sample})"
        )
    bucket = code.bucket if code is not None else split_s3_url(input_url)[0]
    key_prefix = code.key_prefix if code is not None else name
    staged = stage_sample_if_empty(
        s3, input_url, sample, bucket, key_prefix, code.kms_key_id if code is not None else None
    )
    if staged is None:
        return parameters
    print(
        f"input {input_url} is empty: this execution runs on the bundled sample table {sample.name}, "
        f"{'staged' if staged.uploaded else 'already staged'} at {staged.sample_url}; "
        f"put your own data at {input_url} to train on it"
    )
    return [p for p in parameters if p["Name"] != parameter] + [
        {"Name": parameter, "Value": staged.sample_url}
    ]


#: What a local run builds the definition with when --kwargs does not say: no account is involved,
#: so these only shape the names in the definition (and the image URIs, by region).
LOCAL_DEFAULTS = {
    "region": "us-east-1",
    "role": "arn:aws:iam::000000000000:role/LocalPipelineExecution",
    "default_bucket": "sagemaker-local",
}


def _run_local(args, kwargs: dict) -> int:
    """``--local``: build the same definition, put its code and sample data in the local object
    store, and execute it with the local runner."""
    from pipelines.local.engine import LocalRunner
    from pipelines.local.progress import reporter_for
    from pipelines.tracking.hooks import tracked

    if args.wait and args.no_start:
        raise UsageError("--wait and --no-start contradict each other: drop one")
    if args.start_if_changed or args.sample_if_empty:
        raise UsageError(
            "--start-if-changed and --sample-if-empty apply to SageMaker runs only: drop --local"
        )
    uploads = parse_uploads(args.upload)
    parameters = _cli.parameter_options(args.parameters)
    module = _cli.load_pipeline_module(args.module_name)
    _cli.check_kwargs(module.get_pipeline, kwargs)
    if args.role_arn is not None:
        kwargs.setdefault("role", args.role_arn)
    for key, value in LOCAL_DEFAULTS.items():
        from_environment = key == "region" and (
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )
        if kwargs.get(key) is None and not from_environment:
            kwargs[key] = value
    pipeline = module.get_pipeline(**kwargs)
    definition = pipeline.definition()
    if args.definition_file:
        _cli.write_atomically(args.definition_file, definition, "--definition-file")
    runner = LocalRunner(reporter=tracked(reporter_for(sys.stdout), report=True))
    source = f"{args.module_name} definition"
    runner.check(definition, source, parameters)  # nothing is staged for a run that cannot start
    staged = []
    if hasattr(module, "get_local_inputs"):
        try:
            staged = [(path, uri) for uri, path in module.get_local_inputs(**kwargs).items()]
        except ConfigError:
            if not uploads:  # with --upload, the user stages the inputs
                raise
    if hasattr(module, "get_code_upload"):
        code = module.get_code_upload(**kwargs)
        for bundle in code.bundles:
            for name, body in bundle.objects().items():
                runner.store.put_bytes(
                    f"s3://{code.bucket}/{bundle.key_prefix(code.key_prefix)}/{name}", body
                )
    if args.no_start:
        # Where the definition reads by default, alone there, so that a later run of it finds them.
        stage_samples(runner.store, staged, definition, parameters, per_content=False)
        stage(runner.store, uploads)
        print(
            f"pipeline {pipeline.name}: definition checked, its code and inputs staged locally; not started"
        )
        return 0
    # Each table at a location of its own, which this run reads: never another run's table.
    parameters = {
        **parameters,
        **stage_samples(runner.store, staged, definition, parameters, per_content=True),
    }
    run_locally(
        runner,
        definition,
        pipeline_name=pipeline.name,
        parameters=parameters,
        uploads=uploads,
        use_cache=not args.no_cache,
        source=source,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return _cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
