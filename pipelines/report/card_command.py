"""``model-registry card GROUP VERSION``: write a version's model card (JSON and HTML), and with
``--backend aws`` create it in SageMaker (CreateModelCard) and attach it to the model package."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipelines.errors import AwsError
from pipelines.local_home import EXECUTIONS_DB, MODEL_CARDS, OBJECT_STORE
from pipelines.report import card, page
from pipelines.report.execution import ExecutionView, aws_execution, local_execution
from pipelines.report.insights import Insights, gather
from pipelines.report.objects import LocalObjects, S3Objects

CARDS_DIR = MODEL_CARDS
#: CreateModelCard's ModelCardName pattern (botocore: EntityName).
_CARD_NAME = re.compile(r"[^a-zA-Z0-9-]+")


def add_arguments(sub) -> None:
    sub.add_argument("group")
    sub.add_argument("version", type=int)
    sub.add_argument(
        "--output-dir", type=Path, help="where to write the card (default: the local home's model-cards/)"
    )


def card_name(group: str, version: int) -> str:
    return _CARD_NAME.sub("-", f"{group}-{version}")[:63].strip("-")


def _local_origin(package) -> tuple[ExecutionView | None, Insights | None, LocalObjects]:
    from pipelines.local.records import ExecutionRecords
    from pipelines.local.store import ObjectStore
    from pipelines.local_home import local_home

    home = local_home()
    objects = LocalObjects(ObjectStore(home / OBJECT_STORE))
    records = ExecutionRecords(home / EXECUTIONS_DB)
    for execution in records.list_executions():
        for record in records.steps(execution.arn).values():
            if (
                record.type == "RegisterModel"
                and (record.properties or {}).get("ModelPackageArn") == package.arn
            ):
                view = local_execution(records, execution.arn)
                return view, gather(view, objects, with_predictions=False), objects
    return None, None, objects


def _aws_origin(sm, s3, package_arn: str):
    from botocore.exceptions import BotoCoreError, ClientError

    objects = S3Objects(s3)
    try:
        described = sm.describe_model_package(ModelPackageName=package_arn)
    except (ClientError, BotoCoreError):
        return None, None, objects
    execution_arn = (described.get("MetadataProperties") or {}).get("GeneratedBy", "")
    if ":pipeline/" not in execution_arn:
        return None, None, objects
    view = aws_execution(sm, execution_arn)
    return view, gather(view, objects, with_predictions=False), objects


def run(registry, args, *, sm=None, s3=None) -> int:
    package = registry.get_version(args.group, args.version)
    try:
        history = registry.approval_history(args.group, args.version)
    except NotImplementedError:
        history = []
    if args.backend == "aws":
        if sm is None or s3 is None:
            import boto3

            from pipelines.aws_calls import client_config

            sm = sm or boto3.client("sagemaker", region_name=args.region, config=client_config())
            s3 = s3 or boto3.client("s3", region_name=args.region, config=client_config())
        view, found, objects = _aws_origin(sm, s3, package.arn)
    else:
        view, found, objects = _local_origin(package)
    content, gaps = card.build(package, objects, view, found, history)
    if view is None:
        gaps.insert(0, "the execution that registered this version is not known: no tuning or gate details")
    name = card_name(package.group, package.version)
    if args.output_dir is not None:
        directory = args.output_dir
    else:
        from pipelines.local_home import local_home

        directory = local_home() / CARDS_DIR
    json_path = directory / f"{name}.json"
    page.write(json_path, json.dumps(content, indent=2, sort_keys=True) + "\n")
    html_path = page.write(directory / f"{name}.html", card.render(name, content, gaps))
    for gap in gaps:
        print(f"gap: {gap}")
    print(f"model card: {json_path}")
    print(f"rendered: {html_path}")
    if args.backend == "aws":
        print(f"created: {create_in_sagemaker(sm, name, package.arn, content)}")
    return 0


def create_in_sagemaker(sm, name: str, package_arn: str, content: dict) -> str:
    """CreateModelCard (status Draft), then UpdateModelPackage with the package's own card, which is
    how a version shows its card in the registry (botocore: UpdateModelPackage ModelCard)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from pipelines.aws_calls import aws_error

    try:
        arn = sm.create_model_card(
            ModelCardName=name, Content=json.dumps(content, sort_keys=True), ModelCardStatus="Draft"
        )["ModelCardArn"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "ConflictException":
            raise aws_error(err, f"creating model card {name}") from None
        try:
            sm.update_model_card(ModelCardName=name, Content=json.dumps(content, sort_keys=True))
            arn = sm.describe_model_card(ModelCardName=name)["ModelCardArn"]
        except (ClientError, BotoCoreError) as again:
            raise aws_error(again, f"updating model card {name}") from None
    except BotoCoreError as err:
        raise AwsError(f"creating model card {name}: {err}") from None
    try:
        sm.update_model_package(
            ModelPackageArn=package_arn,
            ModelCard={
                "ModelCardContent": json.dumps(card.package_card(content), sort_keys=True),
                "ModelCardStatus": "Draft",
            },
        )
    except (ClientError, BotoCoreError) as err:
        raise aws_error(err, f"attaching model card {name} to {package_arn}") from None
    return arn
