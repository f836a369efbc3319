"""The Model Registry interface, one documented method per operation with SageMaker's semantics,
and the records and checks its backends share."""

from __future__ import annotations

import abc
import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipelines.errors import ConfigError, NotFoundError, TemplateError, did_you_mean, join_problems
from pipelines.local_home import LOCAL_ACCOUNT, LOCAL_REGION

PENDING = "PendingManualApproval"
APPROVED = "Approved"
REJECTED = "Rejected"
#: SageMaker's ``ModelApprovalStatus`` values, in the order a model usually goes through them.
APPROVAL_STATUSES = (PENDING, APPROVED, REJECTED)

#: What the local backend puts in its ARNs where AWS has a region and an account.

# SageMaker's EntityName pattern for ModelPackageGroupName.
_GROUP_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_PACKAGE_ARN = re.compile(
    r"arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"model-package/(?P<group>[^/\s]+)/(?P<version>[1-9]\d{0,8})"
)
# Characters SageMaker allows in CustomerMetadataProperties besides letters, numbers and spaces.
_METADATA_PUNCTUATION = set("_.:/=+-@")
_MAX_METADATA_ENTRIES = 50


class RegistryConflict(TemplateError):
    """A resource of that name already exists; SageMaker answers ``ValidationException``."""

    aws_code = "ValidationException"


@dataclass(frozen=True)
class ModelPackageGroup:
    """One model package group: the versions of one model."""

    name: str
    arn: str
    description: str
    created: datetime

    def to_describe(self) -> dict:
        """This group shaped like DescribeModelPackageGroup's answer (times as ISO 8601 strings)."""
        return {
            "ModelPackageGroupName": self.name,
            "ModelPackageGroupArn": self.arn,
            "ModelPackageGroupDescription": self.description,
            "CreationTime": self.created.isoformat(),
            "ModelPackageGroupStatus": "Completed",
        }


@dataclass(frozen=True)
class ModelPackage:
    """One version of a model in a group, with what deploying it needs."""

    group: str
    version: int
    arn: str
    approval_status: str
    created: datetime
    model_data_url: str
    image_uri: str
    environment: dict[str, str] = field(default_factory=dict)
    content_types: tuple[str, ...] = ("text/csv",)
    response_types: tuple[str, ...] = ("text/csv",)
    model_metrics: dict | None = None
    customer_metadata: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def name(self) -> str:
        """``group/version``, how messages name this package."""
        return f"{self.group}/{self.version}"

    def to_describe(self) -> dict:
        """This package shaped like DescribeModelPackage's answer (times as ISO 8601 strings)."""
        return {
            "ModelPackageGroupName": self.group,
            "ModelPackageVersion": self.version,
            "ModelPackageArn": self.arn,
            "ModelPackageDescription": self.description,
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": self.approval_status,
            "CreationTime": self.created.isoformat(),
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": self.image_uri,
                        "ModelDataUrl": self.model_data_url,
                        "Environment": dict(self.environment),
                    }
                ],
                "SupportedContentTypes": list(self.content_types),
                "SupportedResponseMIMETypes": list(self.response_types),
            },
            "ModelMetrics": dict(self.model_metrics or {}),
            "CustomerMetadataProperties": dict(self.customer_metadata),
        }

    @classmethod
    def from_describe(cls, answer: Mapping) -> ModelPackage:
        """The package a DescribeModelPackage answer (or ``to_describe()``) describes."""
        spec = answer.get("InferenceSpecification", {})
        container = (spec.get("Containers") or [{}])[0]
        return cls(
            group=answer["ModelPackageGroupName"],
            version=int(answer["ModelPackageVersion"]),
            arn=answer["ModelPackageArn"],
            # A versioned package created without a status is PendingManualApproval on AWS.
            approval_status=answer.get("ModelApprovalStatus", PENDING),
            created=as_utc(answer["CreationTime"]),
            model_data_url=container.get("ModelDataUrl", ""),
            image_uri=container.get("Image", ""),
            environment=dict(container.get("Environment") or {}),
            content_types=tuple(spec.get("SupportedContentTypes") or ()),
            response_types=tuple(spec.get("SupportedResponseMIMETypes") or ()),
            model_metrics=answer.get("ModelMetrics") or None,
            customer_metadata=dict(answer.get("CustomerMetadataProperties") or {}),
            description=answer.get("ModelPackageDescription", ""),
        )


@dataclass(frozen=True)
class ApprovalChange:
    """One change of a package's approval status: when, by whom, from what to what, and why."""

    time: datetime
    by: str
    from_status: str | None
    to_status: str
    reason: str = ""

    def to_dict(self) -> dict:
        return {
            "Time": self.time.isoformat(),
            "By": self.by,
            "FromStatus": self.from_status,
            "ToStatus": self.to_status,
            "Reason": self.reason,
        }


@dataclass(frozen=True)
class Registration:
    """What ``ModelRegistry.register`` records for a new version, before it has a number."""

    model_data_url: str
    image_uri: str
    environment: Mapping[str, str] | None
    content_types: Sequence[str]
    response_types: Sequence[str]
    approval_status: str
    model_metrics: Mapping | None
    customer_metadata: Mapping[str, str] | None
    description: str


class ModelRegistry(abc.ABC):
    """A Model Registry with SageMaker's semantics, whichever backend keeps it.

    Groups hold versions numbered 1, 2, 3... in registration order; each version has an approval
    status among ``APPROVAL_STATUSES``. A missing group or version raises ``NotFoundError``, bad
    input ``ConfigError``, a name already taken ``RegistryConflict``; the AWS backend reports
    AWS's own failures as ``AwsError``.
    """

    # ---- groups

    def create_group(self, name: str, description: str = "") -> ModelPackageGroup:
        """Create a model package group (CreateModelPackageGroup).

        Not idempotent, like AWS: a group of that name already there raises ``RegistryConflict``.
        Use ``ensure_group`` to get the group whether or not it exists.
        """
        check_group_name(name)
        check_description(description)
        return self._create_group(name, description)

    @abc.abstractmethod
    def _create_group(self, name: str, description: str) -> ModelPackageGroup:
        """Create a group from checked arguments (the backend's own part)."""

    def ensure_group(self, name: str, description: str = "") -> ModelPackageGroup:
        """The group called ``name``, created (with ``description``) if it does not exist yet."""
        try:
            return self.get_group(name)
        except NotFoundError:
            pass
        try:
            return self.create_group(name, description)
        except RegistryConflict as conflict:
            # Another process created it between our look-up and our create.
            try:
                return self.get_group(name)
            except NotFoundError:
                raise conflict from None

    def get_group(self, name: str) -> ModelPackageGroup:
        """The group called ``name`` (DescribeModelPackageGroup); ``NotFoundError`` if none."""
        check_group_name(name)
        return self._get_group(name)

    @abc.abstractmethod
    def _get_group(self, name: str) -> ModelPackageGroup:
        """The group called ``name``, a checked name (the backend's own part)."""

    @abc.abstractmethod
    def list_groups(self) -> list[ModelPackageGroup]:
        """Every group, sorted by name (ListModelPackageGroups)."""

    # ---- versions

    def register(
        self,
        group: str,
        *,
        model_data_url: str,
        image_uri: str,
        environment: Mapping[str, str] | None = None,
        content_types: Sequence[str] = ("text/csv",),
        response_types: Sequence[str] = ("text/csv",),
        approval_status: str = PENDING,
        model_metrics: Mapping | None = None,
        customer_metadata: Mapping[str, str] | None = None,
        description: str = "",
        by: str = "pipeline",
    ) -> ModelPackage:
        """Register a new version of the model in ``group`` (CreateModelPackage).

        The version is the group's highest plus one, starting at 1. ``model_metrics`` is shaped
        like CreateModelPackage's ``ModelMetrics``. ``by`` names the registrant in the approval
        history where the backend keeps one. The group must exist (``NotFoundError``). Every
        problem with the arguments is reported at once, before the backend is asked.
        """
        registration = Registration(
            model_data_url=model_data_url,
            image_uri=image_uri,
            environment=environment,
            content_types=content_types,
            response_types=response_types,
            approval_status=approval_status,
            model_metrics=model_metrics,
            customer_metadata=customer_metadata,
            description=description,
        )
        check_registration(group, registration)
        check_by(by)
        return self._register(group, registration, by)

    @abc.abstractmethod
    def _register(self, group: str, registration: Registration, by: str) -> ModelPackage:
        """Store a checked registration as the group's next version (the backend's own part)."""

    def get_version(self, group: str, version: int) -> ModelPackage:
        """Version ``version`` of ``group`` (DescribeModelPackage); ``NotFoundError`` if none."""
        check_group_name(group)
        check_version(version)
        return self._get_version(group, version)

    @abc.abstractmethod
    def _get_version(self, group: str, version: int) -> ModelPackage:
        """A version, from checked arguments (the backend's own part)."""

    def get_by_arn(self, arn: str) -> ModelPackage:
        """The package with that ARN; ``ConfigError`` if it is not a model package ARN."""
        parse_package_arn(arn)
        return self._get_by_arn(arn)

    @abc.abstractmethod
    def _get_by_arn(self, arn: str) -> ModelPackage:
        """The package with a well-formed model package ARN (the backend's own part)."""

    def list_versions(self, group: str, approval_status: str | None = None) -> list[ModelPackage]:
        """The group's versions, ascending, optionally only those with ``approval_status``."""
        check_group_name(group)
        if approval_status is not None:
            check_status(approval_status, "approval status filter")
        return self._list_versions(group, approval_status)

    @abc.abstractmethod
    def _list_versions(self, group: str, approval_status: str | None) -> list[ModelPackage]:
        """The versions, from checked arguments (the backend's own part)."""

    def latest_approved(self, group: str) -> ModelPackage | None:
        """The highest version whose status is Approved, or None; Rejected and pending ones are skipped."""
        check_group_name(group)
        return self._latest_approved(group)

    def _latest_approved(self, group: str) -> ModelPackage | None:
        """A backend that can find it without listing every version overrides this."""
        approved = self._list_versions(group, APPROVED)
        return approved[-1] if approved else None

    # ---- approval and metadata

    def update_approval(
        self, group: str, version: int, status: str, *, by: str, reason: str = ""
    ) -> ModelPackage:
        """Set a version's approval status (UpdateModelPackage ModelApprovalStatus + ApprovalDescription).

        ``status`` must be one of ``APPROVAL_STATUSES`` (``ConfigError`` naming them otherwise);
        ``reason`` is kept as the approval description. Returns the updated package.
        """
        check_group_name(group)
        check_version(version)
        check_status(status)
        check_by(by)
        check_reason(reason)
        return self._update_approval(group, version, status, by, reason)

    @abc.abstractmethod
    def _update_approval(self, group: str, version: int, status: str, by: str, reason: str) -> ModelPackage:
        """Set the status, from checked arguments (the backend's own part)."""

    def approval_history(self, group: str, version: int) -> list[ApprovalChange]:
        """The version's approval changes, oldest first, as far as the backend keeps them."""
        check_group_name(group)
        check_version(version)
        return self._approval_history(group, version)

    @abc.abstractmethod
    def _approval_history(self, group: str, version: int) -> list[ApprovalChange]:
        """The changes, from checked arguments (the backend's own part)."""

    def update_metadata(self, group: str, version: int, customer_metadata: Mapping[str, str]) -> ModelPackage:
        """Merge ``customer_metadata`` into the version's CustomerMetadataProperties; returns the package.

        The map sent and the merged map are both checked against SageMaker's limits."""
        check_group_name(group)
        check_version(version)
        check_metadata(customer_metadata)
        return self._update_metadata(group, version, customer_metadata)

    @abc.abstractmethod
    def _update_metadata(
        self, group: str, version: int, customer_metadata: Mapping[str, str]
    ) -> ModelPackage:
        """Merge checked metadata; the backend checks the merged map with ``merged_metadata``."""


def merged_metadata(current: ModelPackage, customer_metadata: Mapping[str, str]) -> dict[str, str]:
    """``current``'s metadata with ``customer_metadata`` merged in, checked as a whole."""
    merged = {**current.customer_metadata, **customer_metadata}
    check_metadata(merged, f"customer metadata of {current.group}/{current.version} after the merge")
    return merged


# ---- ARNs


def group_arn(name: str, region: str = LOCAL_REGION, account: str = LOCAL_ACCOUNT) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:model-package-group/{name}"


def package_arn(group: str, version: int, region: str = LOCAL_REGION, account: str = LOCAL_ACCOUNT) -> str:
    # SageMaker lower-cases the group name in a model package's ARN (not in the group's own ARN).
    return f"arn:aws:sagemaker:{region}:{account}:model-package/{group.lower()}/{version}"


def parse_package_arn(arn: str) -> tuple[str, int]:
    """(group as written in the ARN, version) of a versioned model package ARN."""
    match = _PACKAGE_ARN.fullmatch(arn) if isinstance(arn, str) else None
    if match is None:
        raise ConfigError(
            f"{arn!r} is not a versioned model package ARN; expected "
            "arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>"
        )
    return match["group"], int(match["version"])


# ---- checks shared by the backends, so both refuse the same input with the same message


def check_group_name(name: str) -> None:
    if not isinstance(name, str) or len(name) > 63 or not _GROUP_NAME.fullmatch(name):
        raise ConfigError(
            f"model package group name {name!r} is invalid: use 1 to 63 letters, digits and "
            "hyphens, starting and ending with a letter or digit"
        )


def check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"model package version {version!r} is invalid: versions are integers from 1")


def check_status(status: str, where: str = "approval status") -> None:
    if status not in APPROVAL_STATUSES:
        hint = did_you_mean(status, APPROVAL_STATUSES) if isinstance(status, str) else ""
        raise ConfigError(f"{where} {status!r} is not one of {', '.join(APPROVAL_STATUSES)}.{hint}")


def check_by(by: str) -> None:
    if not isinstance(by, str) or not by.strip():
        raise ConfigError(f"'by' must name who makes the change, got {by!r}")


def check_reason(reason: str) -> None:
    if not isinstance(reason, str) or len(reason) > 1024:
        raise ConfigError("the reason must be a string of at most 1024 characters (SageMaker's limit)")


def check_description(description: str) -> None:
    problems = description_problems(description)
    if problems:
        raise ConfigError(problems[0])


def description_problems(description: str) -> list[str]:
    if not isinstance(description, str) or len(description) > 1024:
        return ["description must be a string of at most 1024 characters (SageMaker's limit)"]
    return []


def check_metadata(metadata: Mapping[str, str], where: str = "customer metadata") -> None:
    problems = metadata_problems(metadata, where)
    if problems:
        raise ConfigError(join_problems(problems))


def metadata_problems(metadata: Mapping[str, str], where: str = "customer metadata") -> list[str]:
    """What SageMaker would refuse in CustomerMetadataProperties, one problem per bad entry."""
    if not isinstance(metadata, Mapping):
        return [f"{where} must be a mapping of strings to strings, got {type(metadata).__name__}"]
    problems = []
    if len(metadata) > _MAX_METADATA_ENTRIES:
        problems.append(
            f"{where} has {len(metadata)} entries; SageMaker keeps at most {_MAX_METADATA_ENTRIES}"
        )
    for key, value in metadata.items():
        for kind, text, longest in (("key", key, 128), ("value", value, 256)):
            if not isinstance(text, str):
                problems.append(f"{where} {kind} {text!r} (of key {key!r}) must be a string")
            elif not 1 <= len(text) <= longest:
                problems.append(f"{where} {kind} of key {key!r} must be 1 to {longest} characters")
            elif not all(_metadata_char(ch) for ch in text):
                problems.append(
                    f"{where} {kind} {text!r} has characters SageMaker refuses; use letters, digits, "
                    "spaces and _ . : / = + - @"
                )
    return problems


def check_registration(group: str, registration: Registration) -> None:
    """Every problem with a registration, reported together in one ``ConfigError``."""
    check_group_name(group)
    r = registration
    model_data_url, image_uri, environment = r.model_data_url, r.image_uri, r.environment
    content_types, response_types, approval_status = r.content_types, r.response_types, r.approval_status
    model_metrics, customer_metadata, description = r.model_metrics, r.customer_metadata, r.description
    problems = []
    if not isinstance(model_data_url, str) or not re.fullmatch(r"(https|s3)://([^/]+)/?(.*)", model_data_url):
        problems.append(f"model_data_url {model_data_url!r} must be an s3:// or https:// URL")
    if not isinstance(image_uri, str) or not re.fullmatch(r"\S{1,255}", image_uri):
        problems.append(f"image_uri {image_uri!r} must be a container image URI (1 to 255 characters)")
    if environment is not None and not (
        isinstance(environment, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in environment.items())
    ):
        problems.append("environment must map strings to strings")
    for name, types in (("content_types", content_types), ("response_types", response_types)):
        if (
            isinstance(types, str)
            or not isinstance(types, Sequence)
            or not types
            or not all(isinstance(t, str) and t for t in types)
        ):
            problems.append(
                f"{name} must be a non-empty list of MIME types, e.g. ['text/csv'], got {types!r}"
            )
    if approval_status not in APPROVAL_STATUSES:
        problems.append(
            f"approval_status {approval_status!r} is not one of {', '.join(APPROVAL_STATUSES)}."
            f"{did_you_mean(str(approval_status), APPROVAL_STATUSES)}"
        )
    if model_metrics is not None:
        problems.extend(shape_problems(model_metrics, "ModelMetrics", "model_metrics"))
    if customer_metadata is not None:
        problems.extend(metadata_problems(customer_metadata, "customer_metadata"))
    problems.extend(description_problems(description))
    if problems:
        raise ConfigError(f"cannot register a version of {group!r}: {join_problems(problems)}")


def shape_problems(value, shape_name: str, where: str) -> list[str]:
    """What botocore's own SageMaker model finds wrong with ``value`` as a ``shape_name``."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(value, _sagemaker_model().shape_for(shape_name))
    if not report.has_errors():
        return []
    return [f"{where}: {line.replace(' in input', '')}" for line in report.generate_report().splitlines()]


@functools.lru_cache(maxsize=1)
def _sagemaker_model():
    # Loaded only when a registration carries model metrics: it takes a few tenths of a second.
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def _metadata_char(ch: str) -> bool:
    return ch in _METADATA_PUNCTUATION or unicodedata.category(ch)[0] in "LNZ"


# ---- not-found errors shaped like AWS's answers, plus the way out


def group_not_found(name: str, existing: Iterable[str] | None) -> NotFoundError:
    """``Model package group 'x' does not exist`` with the close match and the groups there are."""
    if existing is None:
        return NotFoundError(f"Model package group {name!r} does not exist")
    existing = sorted(existing)
    listed = ", ".join(existing[:20]) + (f" and {len(existing) - 20} more" if len(existing) > 20 else "")
    there = (
        f"Existing groups: {listed}"
        if existing
        else "No groups exist yet; the pipeline's register step creates one"
    )
    return NotFoundError(
        f"Model package group {name!r} does not exist.{did_you_mean(name, existing)} {there}"
    )


def package_not_found(group: str, version: int, versions: Iterable[int]) -> NotFoundError:
    """``Model package x/3 does not exist`` with the versions the group does have."""
    versions = sorted(versions)
    there = f"it has versions {_ranges(versions)}" if versions else "it has no versions yet"
    return NotFoundError(f"Model package {group}/{version} does not exist; {there}")


def _ranges(numbers: list[int]) -> str:
    """1, 2, 3, 5 -> '1-3, 5'."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def as_utc(value: datetime | str) -> datetime:
    """A timezone-aware UTC datetime from boto3's datetimes or our ISO 8601 strings."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
