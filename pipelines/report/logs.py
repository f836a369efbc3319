"""Read access to training job logs: the local job log files or CloudWatch Logs, behind one interface."""

from __future__ import annotations

import abc
from pathlib import Path

#: Where SageMaker writes training job logs, one stream per instance named ``<job>/algo-<n>-<epoch>``
#: (AWS docs, "Log Amazon SageMaker AI events with Amazon CloudWatch").
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: A training log is read up to this size; the per-round lines of a long job still fit many times over.
MAX_LOG_BYTES = 8 * 1024 * 1024


class LogMissing(Exception):
    """No readable log for a job; ``reason`` says why in a few words."""

    def __init__(self, job: str, reason: str):
        super().__init__(f"{job}: {reason}")
        self.job = job
        self.reason = reason


class JobLogs(abc.ABC):
    @abc.abstractmethod
    def training_log(self, job_name: str, log_path: Path | str | None) -> str:
        """The text of a training job's log (its first instance's); LogMissing if there is none.
        ``log_path`` is where a local runner kept it, None on AWS."""


class LocalJobLogs(JobLogs):
    def training_log(self, job_name: str, log_path: Path | str | None) -> str:
        if not log_path:
            raise LogMissing(job_name, "no log recorded")
        path = Path(log_path)
        try:
            with path.open("rb") as handle:
                return handle.read(MAX_LOG_BYTES).decode(errors="replace")
        except FileNotFoundError:
            raise LogMissing(job_name, f"log {path} is missing (deleted?)") from None
        except OSError as err:
            raise LogMissing(job_name, f"log {path}: {err.strerror or err}") from None


class CloudWatchJobLogs(JobLogs):
    """``logs`` is a boto3 CloudWatch Logs client."""

    def __init__(self, logs, group: str = TRAINING_LOG_GROUP):
        self.logs = logs
        self.group = group

    def training_log(self, job_name: str, log_path: Path | str | None = None) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            streams = self.logs.describe_log_streams(
                logGroupName=self.group, logStreamNamePrefix=f"{job_name}/"
            ).get("logStreams", [])
            if not streams:
                raise LogMissing(
                    job_name, f"no log stream {job_name}/... in {self.group} (expired or deleted?)"
                )
            # algo-1 sorts first: in a distributed job the first host is the one that reports metrics.
            stream = sorted(s["logStreamName"] for s in streams)[0]
            return self._read(stream)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "error")
            raise LogMissing(job_name, f"{self.group}: {code}") from None
        except BotoCoreError as err:
            raise LogMissing(job_name, f"{self.group}: {err}") from None

    def _read(self, stream: str) -> str:
        lines, size, token = [], 0, None
        while size < MAX_LOG_BYTES:
            page = self.logs.get_log_events(
                logGroupName=self.group,
                logStreamName=stream,
                startFromHead=True,
                **({"nextToken": token} if token else {}),
            )
            for event in page.get("events", []):
                lines.append(event.get("message", ""))
                size += len(lines[-1])
            # GetLogEvents answers the token it was given once the end of the stream is reached.
            following = page.get("nextForwardToken")
            if not page.get("events") or not following or following == token:
                break
            token = following
        return "\n".join(lines)
