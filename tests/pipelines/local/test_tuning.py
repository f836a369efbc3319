"""Tuning jobs: strategies, ranges, limits, parallel trials and ranking, with a fake trial callback
(no processes): each trial's objective is computed from the hyperparameters it was given."""

import math
import re
import threading
import time

import pytest

from pipelines.local.executors import objective_value
from pipelines.local.jobs import StepFailure
from pipelines.local.tuning import run_tuning, trial_job_name, tuning_problems

METRIC = "validation:auc"
CONTINUOUS_X = {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]}


def tuning_arguments(
    strategy="Random",
    *,
    jobs=6,
    parallel=1,
    ranges=None,
    objective="Maximize",
    metric=METRIC,
    seed=7,
    static=None,
):
    config = {
        "Strategy": strategy,
        "RandomSeed": seed,
        "ResourceLimits": {"MaxNumberOfTrainingJobs": jobs, "MaxParallelTrainingJobs": parallel},
        "ParameterRanges": CONTINUOUS_X if ranges is None else ranges,
    }
    if objective is not None:
        config["HyperParameterTuningJobObjective"] = {"Type": objective, "MetricName": metric}
    if jobs is None:
        del config["ResourceLimits"]["MaxNumberOfTrainingJobs"]
    return {
        "HyperParameterTuningJobConfig": config,
        "TrainingJobDefinition": {
            "StaticHyperParameters": static or {"objective": "binary:logistic"},
            "AlgorithmSpecification": {"TrainingImage": "image", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": "s3://bkt/out"},
        },
    }


class FakeTrainer:
    """The ``train`` callback: records every call, reports ``score(hyperparameters)`` as the metric,
    raises StepFailure where ``score`` returns None. With ``gather``, the first ``gather`` calls
    wait (up to 5 s) until that many run at once; ``gathered`` says whether they did."""

    def __init__(self, score=lambda hp: float(hp["x"]), delay=0.0, metric=METRIC, gather=0):
        self.score = score
        self.delay = delay
        self.metric = metric
        self.gather = gather
        self.gathered = False
        self.calls = []
        self.lock = threading.Condition()
        self.active = 0
        self.most_active = 0

    def __call__(self, job_name, arguments):
        with self.lock:
            self.calls.append((job_name, arguments))
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            if len(self.calls) <= self.gather:
                self.lock.notify_all()
                if self.lock.wait_for(lambda: self.most_active >= self.gather, timeout=5):
                    self.gathered = True
        try:
            if self.delay:
                time.sleep(self.delay)
            value = self.score(arguments["HyperParameters"])
            if value is None:
                raise StepFailure(f"AlgorithmError: {job_name} exited with status 1: boom")
            return {
                "TrainingJobName": job_name,
                "TrainingStartTime": "2024-01-01T00:00:00+00:00",
                "TrainingEndTime": "2024-01-01T00:01:00+00:00",
                "FinalMetricDataList": [
                    {"MetricName": "train:auc", "Value": -1.0},
                    {"MetricName": self.metric, "Value": value},
                ],
            }
        finally:
            with self.lock:
                self.active -= 1

    @property
    def hyperparameters(self):
        return [arguments["HyperParameters"] for _, arguments in self.calls]


def tune(arguments, trainer, name="tune-job"):
    return run_tuning(name, arguments, trainer, objective_value)


def objective_of(summary):
    return summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]


# --- ranking


@pytest.mark.parametrize("strategy", ["Random", "Bayesian"])
def test_maximize_ranks_the_highest_objective_first_and_makes_it_the_best_job(strategy):
    trainer = FakeTrainer()
    answer = tune(tuning_arguments(strategy, jobs=8), trainer)

    summaries = answer["TrainingJobSummaries"]
    values = [objective_of(s) for s in summaries]
    assert len(values) == 8
    assert values == sorted(values, reverse=True)
    assert answer["BestTrainingJob"] == summaries[0]
    assert objective_of(answer["BestTrainingJob"]) == max(float(hp["x"]) for hp in trainer.hyperparameters)
    best = answer["BestTrainingJob"]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"] == {
        "Type": "Maximize",
        "MetricName": METRIC,
        "Value": float(best["TunedHyperParameters"]["x"]),
    }
    assert answer["HyperParameterTuningJobStatus"] == "Completed"
    assert answer["ObjectiveStatusCounters"] == {"Succeeded": 8, "Pending": 0, "Failed": 0}


def test_minimize_ranks_the_lowest_objective_first_and_makes_it_the_best_job():
    trainer = FakeTrainer(score=lambda hp: (float(hp["x"]) - 0.3) ** 2)
    answer = tune(tuning_arguments(jobs=8, objective="Minimize"), trainer)

    summaries = answer["TrainingJobSummaries"]
    values = [objective_of(s) for s in summaries]
    assert values == sorted(values)
    assert answer["BestTrainingJob"] == summaries[0]
    assert answer["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Type"] == "Minimize"
    assert objective_of(summaries[0]) == min((float(hp["x"]) - 0.3) ** 2 for hp in trainer.hyperparameters)


def test_equal_objectives_keep_launch_order():
    trainer = FakeTrainer(score=lambda hp: 0.5)
    answer = tune(tuning_arguments(jobs=5), trainer)
    launched = [name for name, _ in trainer.calls]
    assert [s["TrainingJobName"] for s in answer["TrainingJobSummaries"]] == launched


def test_a_summary_carries_the_trial_name_arn_hyperparameters_and_times():
    trainer = FakeTrainer()
    answer = tune(tuning_arguments(jobs=3), trainer, name="my-tuning")
    by_name = {s["TrainingJobName"]: s for s in answer["TrainingJobSummaries"]}
    for job_name, arguments in trainer.calls:
        summary = by_name[job_name]
        assert summary["TrainingJobArn"].endswith(f":training-job/{job_name}")
        assert summary["TrainingJobStatus"] == "Completed"
        assert summary["ObjectiveStatus"] == "Succeeded"
        assert summary["TunedHyperParameters"] == {"x": arguments["HyperParameters"]["x"]}
        assert summary["TrainingStartTime"] == "2024-01-01T00:00:00+00:00"
        assert "_index" not in summary
    assert answer["HyperParameterTuningJobName"] == "my-tuning"
    assert answer["HyperParameterTuningJobArn"].endswith(":hyper-parameter-tuning-job/my-tuning")


def test_each_trial_gets_the_static_hyperparameters_the_objective_metric_and_its_tuned_values():
    trainer = FakeTrainer()
    tune(tuning_arguments(jobs=2, static={"objective": "binary:logistic", "num_round": "50"}), trainer)
    for _, arguments in trainer.calls:
        hyperparameters = arguments["HyperParameters"]
        assert hyperparameters["objective"] == "binary:logistic"
        assert hyperparameters["num_round"] == "50"
        assert hyperparameters["_tuning_objective_metric"] == METRIC
        assert set(hyperparameters) == {"objective", "num_round", "_tuning_objective_metric", "x"}
        assert "StaticHyperParameters" not in arguments
        assert arguments["OutputDataConfig"] == {"S3OutputPath": "s3://bkt/out"}


# --- failed trials


def test_failed_trials_rank_last_in_launch_order_and_are_counted():
    launches = []

    def score(hp):
        launches.append(hp["x"])
        return None if len(launches) % 2 == 0 else float(hp["x"])

    trainer = FakeTrainer(score=score)
    answer = tune(tuning_arguments(jobs=6), trainer)

    summaries = answer["TrainingJobSummaries"]
    statuses = [s["TrainingJobStatus"] for s in summaries]
    assert statuses == ["Completed"] * 3 + ["Failed"] * 3
    failed = summaries[3:]
    launched = [name for name, _ in trainer.calls]
    assert [s["TrainingJobName"] for s in failed] == [launched[1], launched[3], launched[5]]
    for summary in failed:
        assert summary["ObjectiveStatus"] == "Failed"
        assert "exited with status 1: boom" in summary["FailureReason"]
        assert "FinalHyperParameterTuningJobObjectiveMetric" not in summary
    assert answer["BestTrainingJob"]["TrainingJobStatus"] == "Completed"
    assert answer["TrainingJobStatusCounters"]["Completed"] == 3
    assert answer["TrainingJobStatusCounters"]["Failed"] == 3
    assert answer["ObjectiveStatusCounters"] == {"Succeeded": 3, "Pending": 0, "Failed": 3}


def test_a_minimized_objective_still_ranks_failed_trials_last():
    trainer = FakeTrainer(score=lambda hp: None if float(hp["x"]) < 0.5 else float(hp["x"]))
    answer = tune(tuning_arguments(jobs=10, objective="Minimize", seed=3), trainer)
    statuses = [s["TrainingJobStatus"] for s in answer["TrainingJobSummaries"]]
    assert "Failed" in statuses and "Completed" in statuses
    assert statuses == sorted(statuses, key=lambda status: status == "Failed")
    assert answer["BestTrainingJob"]["TrainingJobStatus"] == "Completed"


def test_a_trial_that_reports_no_objective_metric_counts_as_an_objective_failure():
    trainer = FakeTrainer(metric="validation:logloss")
    trainer_calls = 0

    def train(job_name, arguments):
        nonlocal trainer_calls
        trainer_calls += 1
        if trainer_calls == 1:
            return {"FinalMetricDataList": [{"MetricName": METRIC, "Value": 0.9}]}
        return trainer(job_name, arguments)

    answer = tune(tuning_arguments(jobs=3), train)
    summaries = answer["TrainingJobSummaries"]
    assert objective_of(summaries[0]) == 0.9
    for summary in summaries[1:]:
        assert summary["TrainingJobStatus"] == "Completed"
        assert summary["ObjectiveStatus"] == "Failed"
        assert METRIC in summary["FailureReason"]
    assert answer["ObjectiveStatusCounters"]["Failed"] == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_trial_reporting_a_non_finite_objective_is_never_the_best(bad):
    values = iter([0.5, bad, 0.7, 0.2])
    answer = tune(
        tuning_arguments(jobs=4),
        lambda name, arguments: {"FinalMetricDataList": [{"MetricName": METRIC, "Value": next(values)}]},
    )
    assert objective_of(answer["BestTrainingJob"]) == 0.7
    ranked = [
        s.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
        for s in answer["TrainingJobSummaries"]
    ]
    assert ranked[:3] == [0.7, 0.5, 0.2]
    assert answer["TrainingJobSummaries"][3]["ObjectiveStatus"] == "Failed"
    assert answer["ObjectiveStatusCounters"]["Failed"] == 1


def test_when_every_trial_fails_the_tuning_job_fails_naming_the_trials():
    trainer = FakeTrainer(score=lambda hp: None)
    with pytest.raises(StepFailure) as caught:
        tune(tuning_arguments(jobs=4), trainer, name="doomed")
    assert len(trainer.calls) == 4
    message = caught.value.reason
    assert "no training job of tuning job doomed succeeded" in message
    assert trainer.calls[0][0] in message and "boom" in message


def test_an_unexpected_error_in_a_trial_is_not_swallowed():
    def train(job_name, arguments):
        raise RuntimeError("bug in the runner")

    with pytest.raises(RuntimeError, match="bug in the runner"):
        tune(tuning_arguments(jobs=2), train)


# --- limits and parallelism


@pytest.mark.parametrize(("strategy", "jobs"), [("Random", 1), ("Random", 5), ("Bayesian", 7)])
def test_exactly_max_number_of_training_jobs_trials_run(strategy, jobs):
    trainer = FakeTrainer()
    answer = tune(tuning_arguments(strategy, jobs=jobs, parallel=2), trainer)
    assert len(trainer.calls) == jobs
    assert len(answer["TrainingJobSummaries"]) == jobs
    assert len({name for name, _ in trainer.calls}) == jobs


@pytest.mark.parametrize(("parallel", "jobs"), [(1, 4), (2, 6), (3, 7)])
def test_at_most_max_parallel_training_jobs_trials_run_at_once_and_they_overlap(parallel, jobs):
    trainer = FakeTrainer(delay=0.05, gather=parallel)
    tune(tuning_arguments("Bayesian", jobs=jobs, parallel=parallel), trainer)
    assert len(trainer.calls) == jobs
    assert trainer.gathered, f"{parallel} trials never ran at once"
    assert trainer.most_active == parallel


@pytest.mark.parametrize(("jobs", "parallel"), [(0, 1), (3, 0)])
def test_limits_below_one_are_refused(jobs, parallel):
    trainer = FakeTrainer()
    with pytest.raises(StepFailure, match="must be at least 1"):
        tune(tuning_arguments(jobs=jobs, parallel=parallel), trainer)
    assert trainer.calls == []


# --- ranges and scaling


MIXED_RANGES = {
    "IntegerParameterRanges": [
        {"Name": "depth", "MinValue": "2", "MaxValue": "9", "ScalingType": "Linear"},
        {"Name": "rounds", "MinValue": "10", "MaxValue": "1000", "ScalingType": "Logarithmic"},
    ],
    "ContinuousParameterRanges": [
        {"Name": "eta", "MinValue": "0.05", "MaxValue": "0.5", "ScalingType": "Auto"},
        {"Name": "alpha", "MinValue": "-2.5", "MaxValue": "3", "ScalingType": "Linear"},
    ],
    "CategoricalParameterRanges": [{"Name": "booster", "Values": ["gbtree", "dart"]}],
}


@pytest.mark.parametrize("strategy", ["Random", "Bayesian"])
def test_sampled_values_stay_within_their_ranges_and_integer_ranges_give_integers(strategy):
    trainer = FakeTrainer(score=lambda hp: float(hp["eta"]) * int(hp["depth"]))
    tune(tuning_arguments(strategy, jobs=30, parallel=3, ranges=MIXED_RANGES), trainer)
    assert len(trainer.hyperparameters) == 30
    for hp in trainer.hyperparameters:
        assert re.fullmatch(r"\d+", hp["depth"]) and 2 <= int(hp["depth"]) <= 9
        assert re.fullmatch(r"\d+", hp["rounds"]) and 10 <= int(hp["rounds"]) <= 1000
        assert 0.05 <= float(hp["eta"]) <= 0.5
        assert -2.5 <= float(hp["alpha"]) <= 3
        assert hp["booster"] in ("gbtree", "dart")
    assert len({hp["booster"] for hp in trainer.hyperparameters}) == 2


@pytest.mark.parametrize("strategy", ["Random", "Bayesian"])
def test_logarithmic_scaling_keeps_values_inside_min_and_max_and_favours_small_ones(strategy):
    ranges = {
        "ContinuousParameterRanges": [
            {"Name": "x", "MinValue": "1e-6", "MaxValue": "1", "ScalingType": "Logarithmic"}
        ],
        "IntegerParameterRanges": [
            {"Name": "n", "MinValue": "1", "MaxValue": "100000", "ScalingType": "Logarithmic"}
        ],
    }
    trainer = FakeTrainer()
    tune(tuning_arguments(strategy, jobs=60, ranges=ranges, seed=11), trainer)
    xs = [float(hp["x"]) for hp in trainer.hyperparameters]
    ns = [int(hp["n"]) for hp in trainer.hyperparameters]
    assert all(1e-6 <= x <= 1 for x in xs)
    assert all(1 <= n <= 100000 for n in ns)
    if strategy == "Random":  # unbiased draws: on a log scale, most fall far below the linear middle
        assert sum(x < 1e-2 for x in xs) >= len(xs) // 2
        assert sum(n < 1000 for n in ns) >= len(ns) // 2


@pytest.mark.parametrize(
    ("low", "high"),
    [("0.9", "0.9999"), ("0", "0.999999"), ("0.1", "0.3"), ("0.3", "0.3"), ("0.7", "0.7")],
)
@pytest.mark.parametrize("strategy", ["Random", "Bayesian"])
def test_reverse_logarithmic_values_stay_in_range_and_below_one(strategy, low, high):
    ranges = {
        "ContinuousParameterRanges": [
            {"Name": "x", "MinValue": low, "MaxValue": high, "ScalingType": "ReverseLogarithmic"}
        ]
    }
    trainer = FakeTrainer()
    tune(tuning_arguments(strategy, jobs=25, ranges=ranges), trainer)
    xs = [float(hp["x"]) for hp in trainer.hyperparameters]
    assert len(xs) == 25
    assert all(float(low) <= x <= float(high) < 1 for x in xs), (min(xs), max(xs))


def test_reverse_logarithmic_scaling_favours_values_near_one():
    ranges = {
        "ContinuousParameterRanges": [
            {"Name": "x", "MinValue": "0", "MaxValue": "0.9999", "ScalingType": "ReverseLogarithmic"}
        ]
    }
    trainer = FakeTrainer()
    tune(tuning_arguments(jobs=40, ranges=ranges), trainer)
    xs = [float(hp["x"]) for hp in trainer.hyperparameters]
    assert sum(x > 0.9 for x in xs) >= len(xs) // 2


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        (
            {
                "ContinuousParameterRanges": [
                    {"Name": "x", "MinValue": "0.5", "MaxValue": "1.5", "ScalingType": "ReverseLogarithmic"}
                ]
            },
            "ReverseLogarithmic needs MaxValue < 1",
        ),
        (
            {
                "ContinuousParameterRanges": [
                    {"Name": "x", "MinValue": "0", "MaxValue": "1", "ScalingType": "Logarithmic"}
                ]
            },
            "Logarithmic scaling needs MinValue > 0",
        ),
        (
            {"IntegerParameterRanges": [{"Name": "n", "MinValue": "5", "MaxValue": "2"}]},
            "MinValue 5 is above MaxValue 2",
        ),
        ({"CategoricalParameterRanges": [{"Name": "c", "Values": []}]}, "Values is empty"),
    ],
)
def test_impossible_ranges_fail_the_tuning_job_before_any_trial(ranges, message):
    trainer = FakeTrainer()
    with pytest.raises(StepFailure, match=re.escape(message)):
        tune(tuning_arguments(ranges=ranges), trainer)
    assert trainer.calls == []


# --- Grid


GRID_RANGES = {
    "IntegerParameterRanges": [{"Name": "depth", "MinValue": "2", "MaxValue": "4"}],
    "CategoricalParameterRanges": [
        {"Name": "booster", "Values": ["gbtree", "dart"]},
        {"Name": "tree_method", "Values": ["hist", "exact"]},
    ],
}


def test_grid_runs_every_combination_of_integer_and_categorical_ranges_once():
    trainer = FakeTrainer(score=lambda hp: int(hp["depth"]) + (hp["booster"] == "dart"))
    answer = tune(tuning_arguments("Grid", jobs=100, parallel=3, ranges=GRID_RANGES), trainer)

    combos = [(hp["depth"], hp["booster"], hp["tree_method"]) for hp in trainer.hyperparameters]
    assert len(combos) == 12
    assert set(combos) == {
        (depth, booster, method)
        for depth in ("2", "3", "4")
        for booster in ("gbtree", "dart")
        for method in ("hist", "exact")
    }
    assert answer["BestTrainingJob"]["TunedHyperParameters"]["depth"] == "4"
    assert answer["BestTrainingJob"]["TunedHyperParameters"]["booster"] == "dart"


def test_grid_without_a_job_limit_runs_the_whole_grid_and_with_one_stops_at_it():
    trainer = FakeTrainer(score=lambda hp: float(hp["depth"]))
    tune(tuning_arguments("Grid", jobs=None, ranges=GRID_RANGES), trainer)
    assert len(trainer.calls) == 12

    limited = FakeTrainer(score=lambda hp: float(hp["depth"]))
    tune(tuning_arguments("Grid", jobs=5, ranges=GRID_RANGES), limited)
    assert len(limited.calls) == 5
    assert len({tuple(sorted(hp.items())) for hp in limited.hyperparameters}) == 5


def test_grid_runs_without_an_objective_and_keeps_launch_order():
    calls = []

    def train(job_name, arguments):
        calls.append(job_name)
        return {"FinalMetricDataList": []}

    arguments = tuning_arguments("Grid", jobs=100, objective=None, ranges=GRID_RANGES)
    answer = tune(arguments, train)
    assert [s["TrainingJobName"] for s in answer["TrainingJobSummaries"]] == calls
    assert len(calls) == 12
    assert answer["BestTrainingJob"]["TrainingJobName"] == calls[0]


# --- seeds and names


def eta_trainer():
    return FakeTrainer(score=lambda hp: float(hp["eta"]))


def test_the_same_random_seed_gives_the_same_trials_with_one_trial_at_a_time():
    first, second, other = eta_trainer(), eta_trainer(), eta_trainer()
    tune(tuning_arguments("Random", jobs=6, ranges=MIXED_RANGES, seed=42), first)
    tune(tuning_arguments("Random", jobs=6, ranges=MIXED_RANGES, seed=42), second)
    tune(tuning_arguments("Random", jobs=6, ranges=MIXED_RANGES, seed=43), other)
    assert first.hyperparameters == second.hyperparameters
    assert [name for name, _ in first.calls] == [name for name, _ in second.calls]
    assert first.hyperparameters != other.hyperparameters


def test_the_same_seed_gives_the_same_bayesian_trials_with_one_trial_at_a_time():
    first, second = eta_trainer(), eta_trainer()
    tune(tuning_arguments("Bayesian", jobs=8, ranges=MIXED_RANGES, seed=5), first)
    tune(tuning_arguments("Bayesian", jobs=8, ranges=MIXED_RANGES, seed=5), second)
    assert first.hyperparameters == second.hyperparameters


def test_trial_names_are_the_tuning_job_a_three_digit_number_and_eight_hex_digits():
    trainer = FakeTrainer()
    answer = tune(tuning_arguments(jobs=12, parallel=3), trainer, name="churn-tune-abc")
    names = [name for name, _ in trainer.calls]
    for name in names:
        assert re.fullmatch(r"churn-tune-abc-\d{3}-[0-9a-f]{8}", name), name
    assert sorted(int(name.split("-")[-2]) for name in names) == list(range(1, 13))
    assert {s["TrainingJobName"] for s in answer["TrainingJobSummaries"]} == set(names)


def test_a_trial_name_depends_on_its_number_and_its_hyperparameters_only():
    assert trial_job_name("t", 1, {"a": "1", "b": "2"}) == trial_job_name("t", 1, {"b": "2", "a": "1"})
    assert trial_job_name("t", 1, {"a": "1"}) != trial_job_name("t", 1, {"a": "2"})
    assert trial_job_name("t", 1, {"a": "1"})[:-8] == "t-001-"
    assert trial_job_name("t", 123, {}).startswith("t-123-")


# --- what a definition's tuning config may ask for


def config(**overrides):
    base = tuning_arguments("Bayesian")["HyperParameterTuningJobConfig"]
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def test_a_supported_config_has_no_problems():
    assert tuning_problems(config()) == []
    assert tuning_problems(config(Strategy="Random")) == []
    assert tuning_problems(config(Strategy="Grid", ParameterRanges=GRID_RANGES)) == []
    assert (
        tuning_problems(
            config(Strategy="Grid", HyperParameterTuningJobObjective=None, ParameterRanges=GRID_RANGES)
        )
        == []
    )
    assert tuning_problems(config(ParameterRanges=MIXED_RANGES, TrainingJobEarlyStoppingType="Auto")) == []


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"Strategy": "Hyperband"}, "tuning strategy 'Hyperband' is not supported locally"),
        ({"Strategy": "Grid"}, "range 'x': Grid search takes Integer and Categorical ranges only"),
        ({"HyperParameterTuningJobObjective": None}, "HyperParameterTuningJobObjective with a MetricName"),
        ({"HyperParameterTuningJobObjective": {"Type": "Maximize"}}, "with a MetricName is required"),
        (
            {"HyperParameterTuningJobObjective": {"Type": "Largest", "MetricName": METRIC}},
            "objective Type 'Largest' is not Maximize or Minimize",
        ),
        (
            {
                "ParameterRanges": {
                    "IntegerParameterRanges": [
                        {"Name": "n", "MinValue": "1", "MaxValue": "4", "ScalingType": "Exponential"}
                    ]
                }
            },
            "range 'n': ScalingType 'Exponential' is not one of",
        ),
        ({"TrainingJobEarlyStoppingType": "Sometimes"}, "TrainingJobEarlyStoppingType must be Off or Auto"),
    ],
)
def test_a_config_the_local_runner_cannot_run_is_reported(overrides, fragment):
    problems = tuning_problems(config(**overrides))
    assert any(fragment in problem for problem in problems), problems


def test_every_problem_of_a_config_is_reported_at_once():
    problems = tuning_problems(
        config(Strategy="Hyperband", HyperParameterTuningJobObjective=None, TrainingJobEarlyStoppingType="x")
    )
    assert len(problems) == 3


def test_a_missing_config_is_a_problem():
    assert tuning_problems(None) == ["HyperParameterTuningJobConfig is missing"]
