"""The Model Registry in SageMaker itself, through a boto3 ``sagemaker`` client.

Each operation is one or a few SageMaker calls; SageMaker's own failures become one-line
``AwsError``s naming the operation, AWS's error code and its message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

from pipelines.aws_calls import aws_error
from pipelines.errors import AwsError, ConfigError, NotFoundError
from pipelines.registry.base import (
    APPROVED,
    PENDING,
    ApprovalChange,
    ModelPackage,
    ModelPackageGroup,
    ModelRegistry,
    Registration,
    RegistryConflict,
    as_utc,
    group_not_found,
    merged_metadata,
    package_not_found,
)

# SageMaker reports a missing resource as ResourceNotFound or, for the registry, a
# ValidationException whose message says so; moto words the latter differently.
_NOT_FOUND_WORDS = ("does not exist", "not found", "could not find")
# The wordings SageMaker has used for a create that collides with an existing name.
_REGION_HINT = "pass --region or set AWS_REGION"
_EXISTS_WORDS = ("already exists", "cannot create already existing", "must be unique within")


class AwsModelRegistry(ModelRegistry):
    """The registry of the account and region ``sagemaker_client`` talks to.

    Versions are numbered by SageMaker. SageMaker keeps only the current approval status, the
    last change's time, identity and description, so ``approval_history`` returns that one change.
    """

    def __init__(self, sagemaker_client):
        self._sm = sagemaker_client
        # Group ARNs never change, and the package ARNs are derived from them.
        self._group_arns: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"AwsModelRegistry(region={self._sm.meta.region_name!r})"

    # ---- groups

    def _create_group(self, name: str, description: str) -> ModelPackageGroup:
        params = {"ModelPackageGroupName": name}
        if description:
            params["ModelPackageGroupDescription"] = description
        self._call("CreateModelPackageGroup", params, conflict=True)
        return self.get_group(name)

    def _get_group(self, name: str) -> ModelPackageGroup:
        answer = self._call(
            "DescribeModelPackageGroup",
            {"ModelPackageGroupName": name},
            not_found=lambda: group_not_found(name, self._group_names_for_hint()),
        )
        group = ModelPackageGroup(
            name=answer["ModelPackageGroupName"],
            arn=answer["ModelPackageGroupArn"],
            description=answer.get("ModelPackageGroupDescription", ""),
            created=as_utc(answer["CreationTime"]),
        )
        self._group_arns[name] = group.arn
        return group

    def list_groups(self) -> list[ModelPackageGroup]:
        summaries = self._pages("ListModelPackageGroups", {}, "ModelPackageGroupSummaryList")
        groups = [
            ModelPackageGroup(
                name=s["ModelPackageGroupName"],
                arn=s["ModelPackageGroupArn"],
                description=s.get("ModelPackageGroupDescription", ""),
                created=as_utc(s["CreationTime"]),
            )
            for s in summaries
        ]
        return sorted(groups, key=lambda g: g.name)

    # ---- versions

    def _register(self, group: str, registration: Registration, by: str) -> ModelPackage:
        # ``by`` is not sent: SageMaker records the caller's identity itself.
        self._group_arn(group)  # a missing group is a NotFoundError, not a failed create
        answer = self._call(
            "CreateModelPackage",
            registration_request(group, registration),
        )
        return self._describe(answer["ModelPackageArn"])

    def _get_version(self, group: str, version: int) -> ModelPackage:
        return self._describe(self._package_arn(group, version), group, version)

    def _get_by_arn(self, arn: str) -> ModelPackage:
        return self._describe(arn)

    def _list_versions(self, group: str, approval_status: str | None) -> list[ModelPackage]:
        """One DescribeModelPackage call per version listed."""
        summaries = self._summaries(group, approval_status)
        return [self._describe(s["ModelPackageArn"]) for s in summaries]

    def _latest_approved(self, group: str) -> ModelPackage | None:
        summaries = self._summaries(group, APPROVED)
        return self._describe(summaries[-1]["ModelPackageArn"]) if summaries else None

    # ---- approval and metadata

    def _update_approval(self, group: str, version: int, status: str, by: str, reason: str) -> ModelPackage:
        """``by`` is not sent: UpdateModelPackage has no field for it, and SageMaker records the
        caller's IAM identity as LastModifiedBy. ``reason`` becomes the ApprovalDescription, sent
        even when empty so that an earlier change's reason does not linger.
        """
        arn = self._package_arn(group, version)
        self._call(
            "UpdateModelPackage",
            {"ModelPackageArn": arn, "ModelApprovalStatus": status, "ApprovalDescription": reason},
            not_found=lambda: package_not_found(group, version, self._versions(group)),
        )
        return self._describe(arn, group, version)

    def _approval_history(self, group: str, version: int) -> list[ApprovalChange]:
        """What SageMaker keeps: the current status as a single change.

        Its time and author are LastModifiedTime / LastModifiedBy (CreationTime / CreatedBy when
        the status never changed), its reason the ApprovalDescription; the previous status is not
        kept (``from_status`` is None). The full trail is in CloudTrail and the EventBridge
        "SageMaker Model Package State Change" events.
        """
        answer = self._describe_answer(self._package_arn(group, version), group, version)
        modified = "LastModifiedTime" in answer
        return [
            ApprovalChange(
                time=as_utc(answer["LastModifiedTime"] if modified else answer["CreationTime"]),
                by=_identity(answer.get("LastModifiedBy") if modified else answer.get("CreatedBy")),
                from_status=None,
                to_status=answer.get("ModelApprovalStatus", PENDING),
                reason=answer.get("ApprovalDescription", ""),
            )
        ]

    def _update_metadata(
        self, group: str, version: int, customer_metadata: Mapping[str, str]
    ) -> ModelPackage:
        """Sends the merged map (current plus new), which gives a merge whether SageMaker adds the
        keys it is sent or replaces the map with them. The approval status is not sent; whether
        SageMaker still emits a "Model Package State Change" event for a metadata update is not
        documented, so the project's deploy trigger and promotion both guard against it.
        """
        current = self._get_version(group, version)
        merged = merged_metadata(current, customer_metadata)
        if merged == current.customer_metadata:
            return current
        self._call(
            "UpdateModelPackage",
            {"ModelPackageArn": current.arn, "CustomerMetadataProperties": merged},
            not_found=lambda: package_not_found(group, version, self._versions(group)),
        )
        return self._describe(current.arn, group, version)

    # ---- SageMaker calls

    def _group_arn(self, group: str) -> str:
        if group not in self._group_arns:
            self.get_group(group)
        return self._group_arns[group]

    def _package_arn(self, group: str, version: int) -> str:
        prefix = self._group_arn(group).split(":model-package-group/")[0]
        # SageMaker lower-cases the group name in a package ARN (moto does the same).
        return f"{prefix}:model-package/{group.lower()}/{version}"

    def _summaries(self, group: str, approval_status: str | None) -> list[dict]:
        """The group's ModelPackageSummaries, ascending by version (arguments already checked)."""
        self._group_arn(group)  # an unknown group lists as empty on AWS; it is a NotFoundError here
        params = {"ModelPackageGroupName": group, "ModelPackageType": "Versioned"}
        if approval_status is not None:
            params["ModelApprovalStatus"] = approval_status
        summaries = self._pages("ListModelPackages", params, "ModelPackageSummaryList")
        return sorted(summaries, key=lambda s: s["ModelPackageVersion"])

    def _versions(self, group: str) -> list[int]:
        return [s["ModelPackageVersion"] for s in self._summaries(group, None)]

    def _describe(self, arn: str, group: str | None = None, version: int | None = None) -> ModelPackage:
        return ModelPackage.from_describe(self._describe_answer(arn, group, version))

    def _describe_answer(self, arn: str, group: str | None, version: int | None) -> dict:
        def missing() -> NotFoundError:
            if group is None:
                return NotFoundError(f"Model package {arn} does not exist")
            return package_not_found(group, version, self._versions(group))

        answer = self._call("DescribeModelPackage", {"ModelPackageName": arn}, not_found=missing)
        if "ModelPackageGroupName" not in answer:
            raise ConfigError(f"{arn} is an unversioned model package, not a version in a group")
        return answer

    def _group_names_for_hint(self) -> list[str] | None:
        try:
            return [g.name for g in self.list_groups()]
        except AwsError:
            return None  # the not-found error is still worth reporting without the hint

    def _call(
        self,
        operation: str,
        params: dict,
        *,
        not_found: Callable[[], NotFoundError] | None = None,
        conflict: bool = False,
    ) -> dict:
        try:
            return getattr(self._sm, xform_name(operation))(**params)
        except ClientError as err:
            raise self._translate(err, operation, not_found, conflict) from None
        except BotoCoreError as err:
            raise aws_error(err, operation, _REGION_HINT) from None

    def _pages(self, operation: str, params: dict, key: str) -> list[dict]:
        items: list[dict] = []
        try:
            for page in self._sm.get_paginator(xform_name(operation)).paginate(**params):
                items.extend(page.get(key, []))
        except ClientError as err:
            raise self._translate(err, operation, None, False) from None
        except BotoCoreError as err:
            raise aws_error(err, operation, _REGION_HINT) from None
        return items

    @staticmethod
    def _translate(err: ClientError, operation: str, not_found, conflict: bool):
        error = err.response.get("Error", {})
        code, message = error.get("Code", "Unknown"), error.get("Message", str(err))
        lowered = message.lower()
        if not_found is not None and (
            code == "ResourceNotFound"
            or (code == "ValidationException" and any(w in lowered for w in _NOT_FOUND_WORDS))
        ):
            return not_found()
        if (
            conflict
            and code in ("ValidationException", "ResourceInUse")
            and any(w in lowered for w in _EXISTS_WORDS)
        ):
            return RegistryConflict(f"{message} ({code}); ensure_group reuses an existing group")
        return aws_error(err, operation, _REGION_HINT)


def registration_request(group: str, registration: Registration) -> dict:
    """The CreateModelPackage request registering one version; empty optional fields are left out."""
    r = registration
    container = {"Image": r.image_uri, "ModelDataUrl": r.model_data_url}
    if r.environment:
        container["Environment"] = dict(r.environment)
    request = {
        "ModelPackageGroupName": group,
        "InferenceSpecification": {
            "Containers": [container],
            "SupportedContentTypes": list(r.content_types),
            "SupportedResponseMIMETypes": list(r.response_types),
        },
        "ModelApprovalStatus": r.approval_status,
    }
    if r.description:
        request["ModelPackageDescription"] = r.description
    if r.model_metrics:
        request["ModelMetrics"] = dict(r.model_metrics)
    if r.customer_metadata:
        request["CustomerMetadataProperties"] = dict(r.customer_metadata)
    return request


def _identity(user_context: Mapping | None) -> str:
    """Who a SageMaker UserContext names: the IAM identity, else the Studio user profile."""
    context = user_context or {}
    return (
        context.get("IamIdentity", {}).get("Arn")
        or context.get("UserProfileName")
        or context.get("UserProfileArn")
        or "unknown"
    )
