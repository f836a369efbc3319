"""What every AWS call of the project shares: the client configuration, and one-line errors.

botocore is imported inside the functions, so importing this module costs nothing where only the
local backends run.
"""

from __future__ import annotations

from pipelines.errors import AwsError

USER_AGENT = "sagemaker-mlops-template"


def client_config(**overrides):
    """Adaptive retries (client-side rate limiting when throttled) and the project's user agent;
    ``overrides`` are further ``botocore.config.Config`` settings, e.g. ``read_timeout``."""
    from botocore.config import Config

    return Config(retries={"mode": "adaptive", "max_attempts": 10}, user_agent_extra=USER_AGENT, **overrides)


def aws_error(err: Exception, doing: str, region_hint: str = "set AWS_REGION") -> AwsError:
    """``err`` from boto3 as one line saying what was being done and what AWS answered."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(err, NoCredentialsError):
        return AwsError(f"{doing}: no AWS credentials found; configure a profile or run in CodeBuild/Studio")
    if isinstance(err, NoRegionError):
        return AwsError(f"{doing}: no region; {region_hint}")
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return AwsError(f"{doing}: {error.get('Code', 'Error')}: {error.get('Message', str(err))}")
    return AwsError(f"{doing}: {err}")
