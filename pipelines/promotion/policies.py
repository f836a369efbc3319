"""What the staging and prod accounts must be allowed in the dev (tooling) account, and no more.

A model version is registered in the dev account; promoting it to another account creates a SageMaker
Model there from the model package ARN. In the dev account:

* the stage's deploy role (through CloudFormation) describes the model package and creates a Model
  from it (``DescribeModelPackage``, ``CreateModel`` on the group's packages): the model package
  group's resource policy. Versions are chosen and recorded by the dev account itself, so the other
  accounts never list or update them;
* the stage's model execution role reads the model artifact (``<pipeline>/tuning/...``, where the
  tuning jobs write models) and the serving code the model's environment points at
  (``<pipeline>/code/...``): the artifact bucket's policy, ``s3:GetObject`` on those two prefixes
  only, never the training data;
* and decrypts them with the customer KMS key, through S3 only: the key policy (``kms:Decrypt``).

The project template (``seed_code/``) writes these statements; its tests compare them with these
functions, so the template and the promotion code cannot drift apart. Principals are the account
roots: each account's own IAM decides which of its roles may use what its root is granted (the
bootstrap template grants it to the model execution role only).
"""

from __future__ import annotations

from collections.abc import Sequence

#: Prefixes under ``<pipeline name>/`` in the artifact bucket that a deployed model reads: the tuning
#: jobs' model artifacts and the content-addressed serving code (pipelines/churn/pipeline.py writes
#: both; a test ties them to the definition).
MODEL_PREFIXES = ("tuning", "code")

MODEL_PACKAGE_ACTIONS = ("sagemaker:CreateModel", "sagemaker:DescribeModelPackage")
BUCKET_ACTIONS = ("s3:GetObject",)
KMS_ACTIONS = ("kms:Decrypt",)


def _roots(account_ids: Sequence[str], partition: str = "aws") -> list[str]:
    if not account_ids:
        raise ValueError("at least one account id is needed")
    return [f"arn:{partition}:iam::{account}:root" for account in sorted(set(account_ids))]


def model_package_group_policy(group_arn: str, account_ids: Sequence[str]) -> dict:
    """The resource policy of the model package group (``ModelPackageGroupPolicy``)."""
    partition, _, region, account, resource = group_arn.split(":", 5)[1:]
    group = resource.split("/", 1)[1]
    # Model package ARNs carry the group's name in lower case, and IAM compares ARNs case-sensitively.
    packages = f"arn:{partition}:sagemaker:{region}:{account}:model-package/{group.lower()}/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PromotionCreatesModelsFromVersions",
                "Effect": "Allow",
                "Principal": {"AWS": _roots(account_ids, partition)},
                "Action": list(MODEL_PACKAGE_ACTIONS),
                "Resource": packages,
            }
        ],
    }


def artifact_bucket_statements(
    bucket: str, pipeline_name: str, account_ids: Sequence[str], partition: str = "aws"
) -> list[dict]:
    """Bucket policy statements: the accounts read the models and the serving code, nothing else."""
    return [
        {
            "Sid": "PromotionReadsModels",
            "Effect": "Allow",
            "Principal": {"AWS": _roots(account_ids, partition)},
            "Action": list(BUCKET_ACTIONS),
            "Resource": [
                f"arn:{partition}:s3:::{bucket}/{pipeline_name}/{prefix}/*" for prefix in MODEL_PREFIXES
            ],
        }
    ]


def kms_key_statements(region: str, account_ids: Sequence[str], partition: str = "aws") -> list[dict]:
    """Key policy statements: the accounts decrypt what they read from the bucket, through S3 only."""
    return [
        {
            "Sid": "PromotionDecryptsModelsThroughS3",
            "Effect": "Allow",
            "Principal": {"AWS": _roots(account_ids, partition)},
            "Action": list(KMS_ACTIONS),
            "Resource": "*",  # in a key policy, "*" is this key
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        }
    ]
