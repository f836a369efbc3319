"""A Model Registry with SageMaker's semantics behind one interface: in SageMaker or in a local file.

``open_registry("local")`` or ``open_registry("aws", region=...)`` gives a ``ModelRegistry``;
``pipelines.registry.base`` documents its operations.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import AwsError, ConfigError, did_you_mean
from pipelines.registry.base import (
    APPROVAL_STATUSES,
    APPROVED,
    PENDING,
    REJECTED,
    ApprovalChange,
    ModelPackage,
    ModelPackageGroup,
    ModelRegistry,
    RegistryConflict,
)
from pipelines.registry.local import LocalModelRegistry

BACKENDS = ("local", "aws")

__all__ = [
    "APPROVAL_STATUSES",
    "APPROVED",
    "BACKENDS",
    "PENDING",
    "REJECTED",
    "ApprovalChange",
    "AwsModelRegistry",
    "LocalModelRegistry",
    "ModelPackage",
    "ModelPackageGroup",
    "ModelRegistry",
    "RegistryConflict",
    "open_registry",
]


def open_registry(
    backend: str = "local", *, region: str | None = None, path: Path | None = None
) -> ModelRegistry:
    """The registry of ``backend``: ``local`` (the SQLite file at ``path`` or under ``local_home()``)
    or ``aws`` (SageMaker in ``region``, else the region boto3 finds in the environment)."""
    if backend == "local":
        return LocalModelRegistry(path)
    if backend == "aws":
        from pipelines.registry.aws import AwsModelRegistry

        return AwsModelRegistry(sagemaker_client(region))
    raise ConfigError(
        f"registry backend {backend!r} is not one of {', '.join(BACKENDS)}.{did_you_mean(backend, BACKENDS)}"
    )


def sagemaker_client(region: str | None):
    """A SageMaker client with adaptive retries (client-side rate limiting when throttled)."""
    import boto3
    from botocore.exceptions import NoRegionError

    from pipelines.aws_calls import client_config

    try:
        return boto3.Session(region_name=region).client("sagemaker", config=client_config())
    except NoRegionError:
        raise AwsError("no AWS region for the registry; pass --region or set AWS_REGION") from None


def __getattr__(name: str):
    # The AWS backend imports botocore; loaded on first use so the local one stays light.
    if name == "AwsModelRegistry":
        from pipelines.registry.aws import AwsModelRegistry

        return AwsModelRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
