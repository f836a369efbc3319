"""Hyperparameter tuning jobs locally: SageMaker's strategies on optuna, trials in parallel processes.

``Bayesian`` uses optuna's TPE sampler, ``Random`` its random sampler (both seeded by
``RandomSeed``), ``Grid`` every combination of the Categorical and Integer ranges in order. Ranges
keep their scaling types. Up to ``MaxParallelTrainingJobs`` trials run at once, each a training
job (its own process). The answer is DescribeHyperParameterTuningJob's, plus
``TrainingJobSummaries`` sorted best first, as the pipeline property of that name is.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from pipelines.local.jobs import StepFailure, arn, now

STRATEGIES = ("Bayesian", "Random", "Grid")
SCALING_TYPES = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
RANGE_KINDS = ("IntegerParameterRanges", "ContinuousParameterRanges", "CategoricalParameterRanges")


def tuning_problems(config: Any) -> list[str]:
    """What a local run cannot do with this HyperParameterTuningJobConfig (unevaluated)."""
    if not isinstance(config, dict):
        return ["HyperParameterTuningJobConfig is missing"]
    problems = []
    strategy = config.get("Strategy", "Bayesian")
    if strategy not in STRATEGIES:
        problems.append(
            f"tuning strategy {strategy!r} is not supported locally; use one of {', '.join(STRATEGIES)}"
        )
    objective = config.get("HyperParameterTuningJobObjective")
    if strategy != "Grid" and not (isinstance(objective, dict) and objective.get("MetricName")):
        problems.append("HyperParameterTuningJobObjective with a MetricName is required")
    elif isinstance(objective, dict) and objective.get("Type", "Maximize") not in ("Maximize", "Minimize"):
        problems.append(f"objective Type {objective.get('Type')!r} is not Maximize or Minimize")
    ranges = config.get("ParameterRanges", {})
    for kind in RANGE_KINDS:
        for item in ranges.get(kind, []):
            scaling = item.get("ScalingType", "Auto")
            if kind != "CategoricalParameterRanges" and scaling not in SCALING_TYPES:
                problems.append(
                    f"range {item.get('Name')!r}: ScalingType {scaling!r} is not one of "
                    f"{', '.join(SCALING_TYPES)}"
                )
            if strategy == "Grid" and kind == "ContinuousParameterRanges":
                problems.append(
                    f"range {item.get('Name')!r}: Grid search takes Integer and Categorical ranges only"
                )
    if config.get("TrainingJobEarlyStoppingType", "Off") not in ("Off", "Auto"):
        problems.append("TrainingJobEarlyStoppingType must be Off or Auto")
    return problems


class _Space:
    """The parameter ranges as optuna distributions, and back to SageMaker's string values."""

    def __init__(self, ranges: Mapping[str, list]):
        import optuna

        self.distributions: dict[str, Any] = {}
        self.reverse: dict[str, tuple[float, float]] = {}
        for item in ranges.get("IntegerParameterRanges", []):
            low, high = int(item["MinValue"]), int(item["MaxValue"])
            self._check(item, low, high)
            log = item.get("ScalingType") == "Logarithmic"
            self.distributions[item["Name"]] = optuna.distributions.IntDistribution(low, high, log=log)
        for item in ranges.get("ContinuousParameterRanges", []):
            low, high = float(item["MinValue"]), float(item["MaxValue"])
            self._check(item, low, high)
            scaling = item.get("ScalingType", "Auto")
            if scaling == "ReverseLogarithmic":
                if high >= 1:
                    raise StepFailure(f"range {item['Name']!r}: ReverseLogarithmic needs MaxValue < 1")
                # Sample 1 - x on a log scale: dense near 1, as SageMaker's reverse-log scaling is.
                self.reverse[item["Name"]] = (low, high)
                low, high = 1 - high, 1 - low
            self.distributions[item["Name"]] = optuna.distributions.FloatDistribution(
                low, high, log=scaling in ("Logarithmic", "ReverseLogarithmic")
            )
        for item in ranges.get("CategoricalParameterRanges", []):
            values = list(item.get("Values", []))
            if not values:
                raise StepFailure(f"range {item['Name']!r}: Values is empty")
            self.distributions[item["Name"]] = optuna.distributions.CategoricalDistribution(values)

    @staticmethod
    def _check(item: Mapping, low: float, high: float) -> None:
        if low > high:
            raise StepFailure(f"range {item['Name']!r}: MinValue {low} is above MaxValue {high}")
        if item.get("ScalingType") == "Logarithmic" and low <= 0:
            raise StepFailure(f"range {item['Name']!r}: Logarithmic scaling needs MinValue > 0")

    def render(self, params: Mapping[str, Any]) -> dict[str, str]:
        values = {}
        for name, value in params.items():
            if name in self.reverse:
                # 1 - (1 - x) can round past x (1 - 0.7 is 0.30000000000000004): keep to the range.
                low, high = self.reverse[name]
                value = min(max(1 - value, low), high)
            values[name] = repr(float(value)) if isinstance(value, float) else str(value)
        return values


def grid(ranges: Mapping[str, list]) -> list[dict[str, str]]:
    """Every combination of the Integer and Categorical ranges, in a fixed order."""
    axes: list[tuple[str, list[str]]] = []
    for item in ranges.get("IntegerParameterRanges", []):
        axes.append((item["Name"], [str(v) for v in range(int(item["MinValue"]), int(item["MaxValue"]) + 1)]))
    for item in ranges.get("CategoricalParameterRanges", []):
        axes.append((item["Name"], [str(v) for v in item["Values"]]))
    names = [name for name, _ in axes]
    return [
        dict(zip(names, combo, strict=True)) for combo in itertools.product(*(values for _, values in axes))
    ]


def run_tuning(
    name: str,
    arguments: Mapping[str, Any],
    train: Callable[[str, dict], dict],
    objective_of: Callable[[dict, str], float | None],
) -> dict:
    """Run the tuning job ``name`` (CreateHyperParameterTuningJob arguments, resolved).

    ``train(job_name, training_arguments)`` runs one trial and returns its DescribeTrainingJob
    answer or raises StepFailure; ``objective_of(description, metric)`` reads the objective from it.
    """
    import optuna

    started = now()
    config = arguments["HyperParameterTuningJobConfig"]
    definition = arguments["TrainingJobDefinition"]
    limits = config.get("ResourceLimits", {})
    strategy = config.get("Strategy", "Bayesian")
    objective = config.get("HyperParameterTuningJobObjective", {})
    metric = objective.get("MetricName")
    maximize = objective.get("Type", "Maximize") == "Maximize"
    seed = int(config.get("RandomSeed", 0))
    ranges = config.get("ParameterRanges", {})
    space = _Space(ranges)
    if strategy == "Grid":
        combos = grid(ranges)
        max_jobs = min(len(combos), int(limits.get("MaxNumberOfTrainingJobs", len(combos))))
    else:
        max_jobs = int(limits["MaxNumberOfTrainingJobs"])
    parallel = int(limits.get("MaxParallelTrainingJobs", 1))
    if max_jobs < 1 or parallel < 1:
        raise StepFailure(
            f"MaxNumberOfTrainingJobs ({max_jobs}) and MaxParallelTrainingJobs ({parallel}) "
            "must be at least 1"
        )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if strategy == "Random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        # Few trials: start the model early; constant_liar keeps parallel asks apart.
        sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=max(2, min(10, max_jobs // 3)), constant_liar=True
        )
    study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
    static = dict(definition.get("StaticHyperParameters", {}))
    if metric:
        static.setdefault("_tuning_objective_metric", metric)

    summaries: list[dict] = []
    running: dict[Future, tuple[int, Any, dict[str, str], str]] = {}
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        launched = 0
        while launched < max_jobs or running:
            while launched < max_jobs and len(running) < parallel:
                trial = None
                if strategy == "Grid":
                    tuned = combos[launched]
                else:
                    trial = study.ask(space.distributions)
                    tuned = space.render(trial.params)
                job = trial_job_name(name, launched + 1, tuned)
                training = _trial_arguments(definition, static, tuned)
                running[pool.submit(train, job, training)] = (launched, trial, tuned, job)
                launched += 1
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                index, trial, tuned, job = running.pop(future)
                summary = {
                    "TrainingJobName": job,
                    "TrainingJobArn": arn("training-job", job),
                    "TunedHyperParameters": tuned,
                    "CreationTime": now().isoformat(),
                }
                try:
                    description = future.result()
                except StepFailure as failure:
                    summary.update(
                        TrainingJobStatus="Failed", FailureReason=failure.reason, ObjectiveStatus="Failed"
                    )
                    if trial is not None:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    value = objective_of(description, metric) if metric else None
                    summary.update(
                        TrainingJobStatus="Completed",
                        TrainingStartTime=description.get("TrainingStartTime"),
                        TrainingEndTime=description.get("TrainingEndTime"),
                    )
                    if metric and (value is None or not math.isfinite(value)):
                        # A NaN would break the ranking (it compares neither above nor below).
                        problem = "no" if value is None else f"a non-finite ({value})"
                        summary.update(
                            ObjectiveStatus="Failed",
                            FailureReason=f"the job reported {problem} {metric} metric",
                        )
                        if trial is not None:
                            study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    else:
                        summary["ObjectiveStatus"] = "Succeeded"
                        if metric:
                            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                                "Type": "Maximize" if maximize else "Minimize",
                                "MetricName": metric,
                                "Value": value,
                            }
                        if trial is not None:
                            study.tell(trial, value)
                summary["_index"] = index
                summaries.append(summary)

    ranked = rank(summaries, maximize)
    succeeded = [s for s in ranked if s.get("ObjectiveStatus") == "Succeeded"]
    if not succeeded:
        reasons = "; ".join(f"{s['TrainingJobName']}: {s.get('FailureReason')}" for s in ranked[:3])
        raise StepFailure(f"no training job of tuning job {name} succeeded: {reasons}")
    counters = {
        "Completed": sum(s["TrainingJobStatus"] == "Completed" for s in ranked),
        "Failed": sum(s["TrainingJobStatus"] == "Failed" for s in ranked),
        "InProgress": 0,
        "Stopped": 0,
        "RetryableError": 0,
        "NonRetryableError": sum(s["TrainingJobStatus"] == "Failed" for s in ranked),
    }
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobArn": arn("hyper-parameter-tuning-job", name),
        "HyperParameterTuningJobStatus": "Completed",
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": definition,
        "CreationTime": started.isoformat(),
        "HyperParameterTuningEndTime": now().isoformat(),
        "TrainingJobStatusCounters": counters,
        "ObjectiveStatusCounters": {
            "Succeeded": len(succeeded),
            "Pending": 0,
            "Failed": len(ranked) - len(succeeded),
        },
        "BestTrainingJob": succeeded[0],
        "TrainingJobSummaries": ranked,
    }


def rank(summaries: list[dict], maximize: bool) -> list[dict]:
    """Best first (by objective, then launch order); failed trials last, in launch order."""

    def key(summary: dict) -> tuple:
        metric = summary.get("FinalHyperParameterTuningJobObjectiveMetric")
        if summary.get("ObjectiveStatus") != "Succeeded" or metric is None:
            return (1, math.inf, summary["_index"])
        value = metric["Value"]
        return (0, -value if maximize else value, summary["_index"])

    ordered = sorted(summaries, key=key)
    return [{k: v for k, v in s.items() if k != "_index"} for s in ordered]


def trial_job_name(tuning_job: str, number: int, tuned: Mapping[str, str]) -> str:
    """``<tuning job>-<NNN>-<8 hex>``, SageMaker's naming of a tuning job's training jobs."""
    digest = hashlib.sha256(json.dumps(dict(tuned), sort_keys=True).encode()).hexdigest()[:8]
    return f"{tuning_job}-{number:03d}-{digest}"


def _trial_arguments(
    definition: Mapping[str, Any], static: Mapping[str, str], tuned: Mapping[str, str]
) -> dict:
    arguments = {
        key: value
        for key, value in definition.items()
        if key not in ("StaticHyperParameters", "DefinitionName", "TuningObjective", "HyperParameterRanges")
    }
    arguments["HyperParameters"] = {**static, **tuned}
    return arguments
