"""Promotion of approved model versions through the stages: one implementation for every backend.

Per stage: the gate before it, deploy, wait until serving, smoke test, record. What runs where is
recorded on the model packages themselves (CustomerMetadataProperties), so the registry answers
"where is version N" and "what runs in stage S" whichever backend deployed it:

    stage.<S>.deployed-at      when the version started serving in S
    stage.<S>.retired-at       when another version (or nothing) replaced it there
    stage.<S>.tests-passed-at  when its smoke tests passed in S (what a tests-passed gate reads)
    stage.<S>.approved-by      who approved it for S at a manual-approval gate (and .approved-at)
    stage.<S>.rolled-back-at   when a rollback (or its failed smoke tests) took it out of S; a later
                               rollback skips it until it is deployed there again
"""

from __future__ import annotations

import abc
import csv
import io
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipelines.errors import ConfigError, TemplateError, UsageError
from pipelines.promotion.config import PromotionConfig, StageConfig
from pipelines.registry.base import (
    APPROVED,
    REJECTED,
    ModelPackage,
    ModelRegistry,
    as_utc,
    parse_package_arn,
)

#: CustomerMetadataProperties RegisterModel writes (pipelines/churn/builders.py; a test ties them).
PROBLEM_TYPE = "ProblemType"
DATASET_SPEC_SHA256 = "DatasetSpecSha256"
#: Written beside evaluation.json by steps/evaluate.py (SAMPLE_FILENAME there; a test ties them).
SAMPLE_FILENAME = "sample-requests.json"


class PromotionError(TemplateError):
    """A stage could not be promoted: a gate is closed, a deploy or a smoke test failed."""

    exit_code = 1


class Deployer(abc.ABC):
    """Where endpoints run: the stage's AWS account, or a local namespace standing in for it."""

    @abc.abstractmethod
    def deploy(self, stage: StageConfig, package: ModelPackage) -> str:
        """Serve ``package`` in ``stage`` and return once it serves (its URL or ARN). On failure
        raise PromotionError with the reason; what served before keeps serving."""

    @abc.abstractmethod
    def undeploy(self, stage: StageConfig) -> None:
        """Stop serving in ``stage`` (idempotent)."""

    @abc.abstractmethod
    def invoke(self, stage: StageConfig, body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
        """One request to the stage's endpoint: (HTTP status, body)."""

    @abc.abstractmethod
    def read(self, uri: str) -> bytes:
        """An artifact of the dev account (an S3 object), e.g. the smoke-test sample."""


@dataclass
class SmokeReport:
    rows: int
    p50_ms: float
    max_ms: float
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def key(stage: str, what: str) -> str:
    return f"stage.{stage}.{what}"


def _time(meta: Mapping[str, str], name: str) -> datetime | None:
    value = meta.get(name)
    if not value:
        return None
    try:
        return as_utc(value)
    except ValueError:
        raise PromotionError(f"registry record {name}={value!r} is not an ISO 8601 time") from None


@dataclass(frozen=True)
class StageRecord:
    """What the registry records for one version in one stage, parsed once."""

    deployed: datetime | None = None
    retired: datetime | None = None
    tests_passed: datetime | None = None
    approved_by: str | None = None
    rolled_back: datetime | None = None

    @classmethod
    def parse(cls, meta: Mapping[str, str], stage: str) -> StageRecord:
        return cls(
            deployed=_time(meta, key(stage, "deployed-at")),
            retired=_time(meta, key(stage, "retired-at")),
            tests_passed=_time(meta, key(stage, "tests-passed-at")),
            approved_by=meta.get(key(stage, "approved-by")) or None,
            rolled_back=_time(meta, key(stage, "rolled-back-at")),
        )

    @property
    def serving(self) -> bool:
        return self.deployed is not None and (self.retired is None or self.deployed > self.retired)

    @property
    def tested_since_deployed(self) -> bool:
        """Its smoke tests passed in this deployment, not only in an earlier one."""
        if self.deployed is None or self.tests_passed is None:
            return False
        return self.tests_passed >= self.deployed

    @property
    def rolled_back_since_deployed(self) -> bool:
        return self.rolled_back is not None and (self.deployed is None or self.rolled_back > self.deployed)


class History:
    """Every version of a group with its records per stage: one registry read per command (on AWS,
    one DescribeModelPackage per version), from which what-runs-where is derived."""

    def __init__(self, packages: list[ModelPackage], stages: list[str]):
        self.packages = {package.version: package for package in packages}
        self._records = {
            (package.version, stage): StageRecord.parse(package.customer_metadata, stage)
            for package in packages
            for stage in stages
        }

    def record(self, version: int, stage: str) -> StageRecord:
        return self._records.get((version, stage), StageRecord())

    def serving(self, stage: str) -> ModelPackage | None:
        """The version serving in ``stage``: the latest deployed there and not retired since."""
        serving = [
            (record.deployed, version)
            for (version, name), record in self._records.items()
            if name == stage and record.serving
        ]
        return self.packages[max(serving)[1]] if serving else None

    def previous(self, stage: str, exclude: int | None) -> ModelPackage | None:
        """The Approved version most recently retired from ``stage``, skipping versions a rollback
        took out (so two rollbacks go two versions back, not back and forth)."""
        candidates = [
            (record.retired, version)
            for (version, name), record in self._records.items()
            if name == stage
            and version != exclude
            and record.retired is not None
            and not record.rolled_back_since_deployed
            and self.packages[version].approval_status == APPROVED
        ]
        return self.packages[max(candidates)[1]] if candidates else None


class Promotion:
    """The promotion flow over a registry and a deployer; ``say`` reports progress lines."""

    def __init__(
        self,
        config: PromotionConfig,
        registry: ModelRegistry,
        deployer: Deployer,
        say: Callable[[str], None] = print,
        confirm: Callable[[str], bool] | None = None,
    ):
        self.config = config
        self.registry = registry
        self.deployer = deployer
        self.say = say
        self.confirm = confirm  # asks a person at a manual gate (None: never ask)
        self.group = config.model_package_group

    # ---- selection

    def select(self, version: int | str | None = None) -> ModelPackage:
        """The latest Approved version, or the one pinned by number or ARN; Pending or Rejected
        versions are refused."""
        if version is None:
            package = self.registry.latest_approved(self.group)
            if package is None:
                raise PromotionError(
                    f"no Approved version in {self.group}; approve one with "
                    f"`model-registry approve {self.group} <version>`"
                )
            return package
        if isinstance(version, str) and version.startswith("arn:"):
            group, number = parse_package_arn(version)
            if group.lower() != self.group.lower():  # ARNs carry the name in lower case
                raise ConfigError(f"{version} is in group {group!r}, not {self.group!r}")
            version = number
        package = self.registry.get_version(self.group, int(version))
        if package.approval_status != APPROVED:
            raise PromotionError(
                f"{package.name} is {package.approval_status}, not Approved: only approved versions are "
                f"promoted (model-registry approve {self.group} {package.version})"
            )
        return package

    # ---- what runs where

    def history(self) -> History:
        """The group's versions and their stage records, read now."""
        return History(self.registry.list_versions(self.group), [s.name for s in self.config.stages])

    def serving(self, stage: str) -> ModelPackage | None:
        """The version serving in ``stage``, from the registry's records."""
        return self.history().serving(stage)

    def where(self, version: int) -> dict[str, dict[str, str]]:
        """Stage -> what the registry records for ``version`` there (deployed-at, retired-at...)."""
        package = self.registry.get_version(self.group, version)
        history = self.history()
        found: dict[str, dict[str, str]] = {}
        for stage in self.config.stages:
            prefix = f"stage.{stage.name}."
            entries = {
                k[len(prefix) :]: v for k, v in package.customer_metadata.items() if k.startswith(prefix)
            }
            if entries:
                current = history.serving(stage.name)
                entries["serving"] = "yes" if current and current.version == version else "no"
                found[stage.name] = entries
        return found

    def status(self) -> dict[str, int | None]:
        history = self.history()
        return {
            stage.name: getattr(history.serving(stage.name), "version", None) for stage in self.config.stages
        }

    # ---- gates

    def approve_gate(self, stage_name: str, version: int, by: str, reason: str = "") -> None:
        """Record a person's approval of ``version`` for a manual-approval stage."""
        stage = self.config.stage(stage_name)
        if stage.gate != "manual-approval":
            raise UsageError(
                f"stage {stage.name} has a {stage.gate} gate, not manual-approval: nothing to approve"
            )
        package = self.select(version)
        meta = {key(stage.name, "approved-by"): by, key(stage.name, "approved-at"): _now()}
        if reason:
            meta[key(stage.name, "approval-reason")] = reason
        self.registry.update_metadata(self.group, package.version, meta)
        self.say(f"{package.name} approved for {stage.name} by {by}")

    def _check_gate(
        self, stage: StageConfig, package: ModelPackage, history: History, approved_by: str | None = None
    ) -> None:
        """The chain holds: past the first stage, a version must have passed the smoke tests of the
        stage before (whatever this stage's gate); a manual-approval gate also needs a person."""
        previous = self.config.previous(stage)
        if stage.gate != "automatic" and previous is not None:
            if history.record(package.version, previous.name).tests_passed is None:
                raise PromotionError(
                    f"gate before {stage.name}: {package.name} has not passed the smoke tests in "
                    f"{previous.name}; promote it there first: "
                    f"`promote deploy --stage {previous.name} --version {package.version}`"
                )
        approved = history.record(package.version, stage.name).approved_by is not None
        if stage.gate == "manual-approval" and not approved:
            if approved_by:  # a person approved it elsewhere, e.g. CodePipeline's approval action
                self.approve_gate(stage.name, package.version, by=approved_by)
                return
            question = f"Approve {package.name} for {stage.name} ({stage.account_id})?"
            if self.confirm is not None and self.confirm(question):
                self.approve_gate(stage.name, package.version, by=current_user())
                return
            raise PromotionError(
                f"gate before {stage.name}: {package.name} needs a manual approval: run "
                f"`promote approve --stage {stage.name} --version {package.version}`"
            )

    # ---- deploy, test, record

    def promote(
        self,
        stage_name: str,
        version: int | str | None = None,
        approved_by: str | None = None,
        force: bool = False,
    ) -> SmokeReport:
        """Gate, deploy, wait, smoke test, record; PromotionError on any failure. ``approved_by``
        records who passed a manual-approval gate outside this tool (ignored at other gates).
        A version whose problem type or dataset spec differs from the serving one's is refused
        unless ``force``.

        A version that already serves in the stage and passed its smoke tests there is left as it
        is (nothing deployed, nothing recorded) unless ``force``: promoting is idempotent, so a
        deploy pipeline started twice for one version changes nothing the second time."""
        stage = self.config.stage(stage_name)
        package = self.select(version)
        history = self.history()
        current = history.serving(stage.name)
        tested = history.record(package.version, stage.name).tested_since_deployed
        if not force and current is not None and current.version == package.version and tested:
            self.say(
                f"{stage.name}: {package.name} already serves and passed its smoke tests there; "
                "nothing to do (--force deploys it again)"
            )
            return SmokeReport(0, 0.0, 0.0)
        if not force:
            self._check_compatible(stage, package, current)
        self._check_gate(stage, package, history, approved_by)
        return self._deploy(stage, package, "promote", before=current)

    def _check_compatible(
        self, stage: StageConfig, package: ModelPackage, current: ModelPackage | None
    ) -> None:
        """Callers of a stage's endpoint send the serving version's columns and read its kind of
        answer: a version of another problem type or dataset spec is refused unless forced."""
        if current is None or current.version == package.version:
            return
        for name, what in ((PROBLEM_TYPE, "problem type"), (DATASET_SPEC_SHA256, "dataset spec")):
            new, old = package.customer_metadata.get(name), current.customer_metadata.get(name)
            if new is not None and old is not None and new != old:
                shown = (new, old) if name == PROBLEM_TYPE else (f"sha256 {new[:12]}", f"sha256 {old[:12]}")
                raise PromotionError(
                    f"{stage.name}: {package.name} has {what} {shown[0]} but {current.name}, serving there, "
                    f"has {shown[1]}: its callers would send other columns or read another kind of "
                    f"answer; deploy it anyway with --force"
                )

    def rollback(self, stage_name: str) -> SmokeReport:
        """Redeploy the approved version that served in the stage before the current one."""
        stage = self.config.stage(stage_name)
        history = self.history()
        current = history.serving(stage.name)
        previous = history.previous(stage.name, exclude=current.version if current else None)
        if previous is None:
            raise PromotionError(
                f"no earlier approved version has served in {stage.name}: nothing to roll back to"
            )
        self.say(f"rolling {stage.name} back to {previous.name}")
        # It passed this stage's gate when it first served here.
        return self._deploy(stage, previous, "rollback", before=current)

    def reject(self, version: int, by: str, reason: str) -> list[str]:
        """Reject a version in the registry and take it out of every stage where it serves: the
        previous approved version goes back, or the endpoint stops when there is none."""
        package = self.registry.update_approval(self.group, version, REJECTED, by=by, reason=reason)
        self.say(f"{package.name} rejected")
        touched = []
        history = self.history()  # each stage's records change only when that stage is handled
        for stage in self.config.stages:
            current = history.serving(stage.name)
            if current is None or current.version != version:
                continue
            touched.append(stage.name)
            if history.previous(stage.name, exclude=version) is not None:
                self.rollback(stage.name)
            else:
                self.deployer.undeploy(stage)
                self.registry.update_metadata(self.group, version, {key(stage.name, "retired-at"): _now()})
                self.say(f"{stage.name}: nothing earlier to serve; endpoint stopped")
        return touched

    def undeploy(self, stage_name: str) -> ModelPackage | None:
        """Stop serving in a stage (its endpoint deleted or stopped) and record the retirement;
        the version that served, if any."""
        stage = self.config.stage(stage_name)
        current = self.serving(stage.name)
        self.deployer.undeploy(stage)
        if current is not None:
            self.registry.update_metadata(
                self.group, current.version, {key(stage.name, "retired-at"): _now()}
            )
        self.say(
            f"{stage.name}: endpoint {stage.endpoint.name} removed"
            + (f" ({current.name} retired)" if current else "")
        )
        return current

    def _deploy(
        self, stage: StageConfig, package: ModelPackage, why: str, before: ModelPackage | None
    ) -> SmokeReport:
        self.say(f"{stage.name}: deploying {package.name} ({why})")
        started = time.monotonic()
        where = self.deployer.deploy(stage, package)
        self.say(f"{stage.name}: serving at {where} after {time.monotonic() - started:.1f} s")
        stamp = _now()
        if before is not None and before.version != package.version:
            retired = {key(stage.name, "retired-at"): stamp}
            if why == "rollback":
                retired[key(stage.name, "rolled-back-at")] = stamp
            self.registry.update_metadata(self.group, before.version, retired)
        # The new deployment is newer than any retirement recorded for this version in this stage.
        self.registry.update_metadata(self.group, package.version, {key(stage.name, "deployed-at"): stamp})
        report = self.smoke_test(stage, package)
        self.say(
            f"{stage.name}: smoke tests {'passed' if report.passed else 'FAILED'}: {report.rows} rows, "
            f"latency p50 {report.p50_ms:.1f} ms, max {report.max_ms:.1f} ms"
        )
        if not report.passed:
            failed = f"{stage.name}: smoke tests of {package.name} failed: {'; '.join(report.problems[:3])}"
            raise PromotionError(f"{failed}; {self._after_failed_tests(stage, package, before)}")
        self.registry.update_metadata(
            self.group, package.version, {key(stage.name, "tests-passed-at"): _now()}
        )
        return report

    def _after_failed_tests(
        self, stage: StageConfig, package: ModelPackage, before: ModelPackage | None
    ) -> str:
        """Put back what served before a version that failed its smoke tests; say what serves now."""
        if before is None or before.version == package.version:
            return f"it serves in {stage.name} untested; `promote undeploy --stage {stage.name}` removes it"
        self.say(f"{stage.name}: rolling back to {before.name}")
        try:
            self.deployer.deploy(stage, before)
        except PromotionError as err:
            return f"putting {before.name} back failed too: {err}"
        stamp = _now()
        self.registry.update_metadata(
            self.group,
            package.version,
            {key(stage.name, "retired-at"): stamp, key(stage.name, "rolled-back-at"): stamp},
        )
        self.registry.update_metadata(self.group, before.version, {key(stage.name, "deployed-at"): stamp})
        return f"{before.name} serves {stage.name} again"

    def smoke_test(self, stage: StageConfig, package: ModelPackage) -> SmokeReport:
        """Replay the evaluation's sample rows: every answer 200, the recorded prediction within the
        tolerance, latency within the stage's limit; and one JSON request for the other content type."""
        sample = self.sample(package)
        rows = list(zip(sample["rows"], sample["predictions"], strict=True))[: stage.smoke_tests.rows]
        # Raw records go with their header row, which tells them from encoded rows in every case.
        header = f"{header_line(sample['columns'])}\n" if "columns" in sample else ""
        problems, latencies = [], []
        # One untimed request first: a cold start (a serverless endpoint's first call, a new
        # connection) is not what the latency limit is about.
        self.deployer.invoke(stage, (header + rows[0][0]).encode(), "text/csv", "text/csv")
        for index, (row, expected) in enumerate(rows):
            started = time.perf_counter()
            status, answer = self.deployer.invoke(stage, (header + row).encode(), "text/csv", "text/csv")
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                problems.append(f"row {index}: HTTP {status}: {answer[:200].decode(errors='replace')}")
                continue
            try:
                value = float(answer.decode().strip())
            except ValueError:
                problems.append(f"row {index}: answer {answer[:80]!r} is not one number")
                continue
            if not math.isclose(value, expected, abs_tol=stage.smoke_tests.tolerance):
                problems.append(f"row {index}: predicted {value}, the evaluated model gave {expected}")
        if rows:
            status, answer = self.deployer.invoke(
                stage, _json_request(sample, package), "application/json", "application/json"
            )
            try:
                predictions = json.loads(answer)["predictions"] if status == 200 else None
            except (ValueError, KeyError, TypeError):
                predictions = None
            if not (isinstance(predictions, list) and len(predictions) == 1):
                problems.append(
                    f'JSON request: HTTP {status}, answer {answer[:120]!r} is not {{"predictions": [x]}}'
                )
            elif not math.isclose(predictions[0], rows[0][1], abs_tol=stage.smoke_tests.tolerance):
                problems.append(
                    f"JSON request: predicted {predictions[0]}, the evaluated model gave {rows[0][1]}"
                )
        p50 = statistics.median(latencies) if latencies else 0.0
        worst = max(latencies) if latencies else 0.0
        if worst > stage.smoke_tests.max_latency_ms:
            problems.append(
                f"slowest request took {worst:.0f} ms, over the stage's "
                f"{stage.smoke_tests.max_latency_ms:.0f} ms"
            )
        return SmokeReport(len(rows), p50, worst, problems)

    def sample(self, package: ModelPackage) -> dict:
        """The smoke-test sample of ``package``: ``rows`` (CSV request bodies: raw records in the
        dataset spec's ``columns`` and as JSON ``records`` too, or, for a version trained without
        schema.json, encoded rows) and the ``predictions`` the evaluated model gave them."""
        try:
            statistics_uri = package.model_metrics["ModelQuality"]["Statistics"]["S3Uri"]
        except (TypeError, KeyError):
            raise PromotionError(
                f"{package.name} records no ModelQuality statistics, so there is no smoke-test "
                "sample beside them"
            ) from None
        uri = f"{statistics_uri.rsplit('/', 1)[0]}/{SAMPLE_FILENAME}"
        try:
            sample = json.loads(self.deployer.read(uri))
            if len(sample["rows"]) != len(sample["predictions"]) or not sample["rows"]:
                raise ValueError("rows and predictions differ in length or are empty")
            if "columns" in sample and not (
                isinstance(sample["columns"], list)
                and len(sample.get("records") or []) == len(sample["rows"])
            ):
                raise ValueError("columns or records do not go with the rows")
        except TemplateError as err:
            raise PromotionError(f"smoke-test sample of {package.name}: {err}") from None
        except (ValueError, KeyError, TypeError) as err:
            raise PromotionError(f"smoke-test sample {uri} is malformed: {err}") from None
        return sample


def header_line(columns: list[str]) -> str:
    """The CSV header row of raw records (no line end)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(columns)
    return out.getvalue()


def _json_request(sample: dict, package: ModelPackage) -> bytes:
    """The first sample row as a JSON request: a raw record, or an encoded row for an older sample."""
    if "records" in sample:
        return json.dumps({"instances": sample["records"][:1]}).encode()
    try:
        cells = [None if cell == "" else float(cell) for cell in sample["rows"][0].split(",")]
    except ValueError:
        raise PromotionError(f"smoke-test sample of {package.name}: row 0 is not numeric CSV") from None
    return json.dumps({"instances": [cells]}).encode()


def current_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
