"""The local runner executes small hand-written definitions as SageMaker would run them.

Each test gets its own local home (records, object store, job sandboxes) and a runner whose retries
record their waits instead of sleeping. Jobs run the tiny scripts under ``fixtures/engine/``, staged
into the store at ``s3://engine-tests/code/<script>``.
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from step_definitions import ROLE, SKLEARN, definition, processing_step, s3_input, s3_output, training_channel

from pipelines.aws_names import ISO_DURATION
from pipelines.errors import UsageError
from pipelines.local.definition import DefinitionError, parse_definition
from pipelines.local.engine import LocalRunner, parse_duration
from pipelines.local.jobs import StepFailure, run_process
from pipelines.local.progress import summary
from pipelines.registry.local import FILE_NAME, LocalModelRegistry

SCRIPTS = Path(__file__).parent / "fixtures" / "engine"
REPO = Path(__file__).resolve().parents[3]
BUCKET = "s3://engine-tests"
CODE = f"{BUCKET}/code"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
PIPELINE = "engine-test"
EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}
JOB_INTERNAL_ERROR = "SageMaker.JOB_INTERNAL_ERROR"


# ---- definitions


def processing(name, script, *, environment=None, **options):
    """A Processing step running ``fixtures/engine/<script>`` with the sklearn image's python3."""
    return processing_step(name, script, f"{CODE}/{script}", environment=environment or {}, **options)


def inspect(name, data_uri, output_uri, *, distribution="FullyReplicated", instances=1, note=None, **extra):
    """A Processing step whose workers report the files they see under /opt/ml/processing/input/data."""
    arguments = [
        "--input",
        "/opt/ml/processing/input/data",
        "--output",
        "/opt/ml/processing/output",
        "--resource-config",
        "/opt/ml/config/resourceconfig.json",
    ]
    if note is not None:
        arguments += ["--note", note]
    return processing(
        name,
        "inspect_inputs.py",
        arguments=arguments,
        inputs=[s3_input("data", data_uri, "/opt/ml/processing/input/data", distribution)],
        outputs=[s3_output("seen", output_uri)],
        instances=instances,
        **extra,
    )


def flaky(name, mode, marker, policies=()):
    return processing(
        name,
        "flaky.py",
        arguments=["--mode", mode, "--marker", str(marker)],
        RetryPolicies=list(policies),
    )


def counting(name, data_uri, output_uri, counter, *, release=None, **extra):
    """A Processing step that appends to ``counter`` each time it runs and copies its input out."""
    environment = {"COUNTER": str(counter)}
    if release is not None:
        environment["RELEASE"] = str(release)
    return processing(
        name,
        "count.py",
        arguments=["--input", "/opt/ml/processing/input/data", "--output", "/opt/ml/processing/output"],
        inputs=[s3_input("data", data_uri, "/opt/ml/processing/input/data")],
        outputs=[s3_output("copy", output_uri)],
        environment=environment,
        **extra,
    )


def write_json(name, output_uri, document, **extra):
    return processing(
        name,
        "write_json.py",
        arguments=[
            "--output",
            "/opt/ml/processing/report",
            "--name",
            "report.json",
            "--json",
            json.dumps(document),
        ],
        outputs=[s3_output("report", output_uri, "/opt/ml/processing/report")],
        **extra,
    )


def training(name, *, image=SKLEARN, hyperparameters, channels, output_uri, metrics=()):
    algorithm = {"TrainingImage": image, "TrainingInputMode": "File"}
    if metrics:
        algorithm["MetricDefinitions"] = [{"Name": n, "Regex": r} for n, r in metrics]
    inputs = [training_channel(n, uri) for n, uri in (channels or {}).items()]
    return {
        "Name": name,
        "Type": "Training",
        "Arguments": {
            "AlgorithmSpecification": algorithm,
            "OutputDataConfig": {"S3OutputPath": output_uri},
            "StoppingCondition": {"MaxRuntimeInSeconds": 300},
            "ResourceConfig": {"VolumeSizeInGB": 30, "InstanceCount": 1, "InstanceType": "ml.m5.large"},
            "RoleArn": ROLE,
            **({"InputDataConfig": inputs} if inputs else {}),
            "HyperParameters": hyperparameters,
        },
    }


def tuning(name, *, strategy, objective, values, code_uri, max_jobs, output_uri):
    """A Tuning step over the categorical hyperparameter ``x`` of ``trial.py`` (score = 10 - (x-2)^2)."""
    return {
        "Name": name,
        "Type": "Tuning",
        "Arguments": {
            "HyperParameterTuningJobConfig": {
                "Strategy": strategy,
                "HyperParameterTuningJobObjective": {"Type": objective, "MetricName": "score"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs, "MaxParallelTrainingJobs": 2},
                "ParameterRanges": {"CategoricalParameterRanges": [{"Name": "x", "Values": values}]},
                "TrainingJobEarlyStoppingType": "Off",
            },
            "TrainingJobDefinition": {
                "StaticHyperParameters": {
                    "sagemaker_program": '"trial.py"',
                    "sagemaker_submit_directory": json.dumps(code_uri),
                },
                "AlgorithmSpecification": {
                    "TrainingImage": SKLEARN,
                    "TrainingInputMode": "File",
                    "MetricDefinitions": [{"Name": "score", "Regex": r"score=([-0-9.]+)"}],
                },
                "RoleArn": ROLE,
                "OutputDataConfig": {"S3OutputPath": output_uri},
                "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30},
                "StoppingCondition": {"MaxRuntimeInSeconds": 300},
            },
        },
    }


def json_get(step, file, path):
    return {"Std:JsonGet": {"PropertyFile": {"Get": f"Steps.{step}.PropertyFiles.{file}"}, "Path": path}}


# ---- fixtures and helpers


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def runner(tmp_path, sleeps):
    runner = LocalRunner(tmp_path / "home", sleep=sleeps.append)
    for script in SCRIPTS.glob("*.py"):
        runner.store.put_file(script, f"{CODE}/{script.name}")
    return runner


@pytest.fixture
def work(tmp_path):
    """A directory outside the local home for marker and counter files."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def code_archive(runner, script):
    """The script as a sourcedir.tar.gz in the store (what the SDK uploads); its URI."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(SCRIPTS / script, arcname=script)
    uri = f"{CODE}/{script.removesuffix('.py')}/sourcedir.tar.gz"
    runner.store.put_bytes(uri, buffer.getvalue())
    return uri


def run(runner, *steps, parameters=(), **options):
    return runner.start(definition(*steps, parameters=parameters), pipeline_name=PIPELINE, **options)


def step_entries(runner, outcome):
    """ListPipelineExecutionSteps' entries by step name."""
    answer = runner.records.list_execution_steps(outcome.arn)
    return {entry["StepName"]: entry for entry in answer["PipelineExecutionSteps"]}


def statuses(runner, outcome):
    return {name: entry["StepStatus"] for name, entry in step_entries(runner, outcome).items()}


def read_json(runner, uri):
    return json.loads(runner.store.get_bytes(uri))


def model_files(runner, uri):
    with tarfile.open(fileobj=io.BytesIO(runner.store.get_bytes(uri))) as archive:
        return {
            member.name: archive.extractfile(member).read()
            for member in archive.getmembers()
            if member.isfile()
        }


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def stage_parts(runner, prefix, count):
    for index in range(count):
        runner.store.put_bytes(f"{prefix}/part-{index}.csv", f"row {index}\n".encode())
    return {f"part-{index}.csv" for index in range(count)}


# ---- 1. processing


def test_a_processing_job_gets_its_inputs_at_their_local_paths_and_its_outputs_are_collected(runner):
    stage_parts(runner, f"{BUCKET}/data", 2)

    outcome = run(runner, inspect("Inspect", f"{BUCKET}/data", f"{BUCKET}/out/inspect"))

    assert outcome.status == "Succeeded", outcome.failure_reason
    report = read_json(runner, f"{BUCKET}/out/inspect/seen-algo-1.json")
    assert report["files"] == {"part-0.csv": "row 0\n", "part-1.csv": "row 1\n"}
    properties = outcome.properties["Inspect"]
    assert properties["ProcessingJobStatus"] == "Completed"
    assert properties["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == f"{BUCKET}/out/inspect"
    entry = step_entries(runner, outcome)["Inspect"]
    assert entry["StepStatus"] == "Succeeded"
    assert entry["Metadata"] == {"ProcessingJob": {"Arn": properties["ProcessingJobArn"]}}


def test_a_relative_local_home_still_gives_jobs_absolute_paths(tmp_path, monkeypatch):
    # Jobs run with their sandbox as working directory; a relative home must not leak into them.
    monkeypatch.chdir(tmp_path)
    runner = LocalRunner(Path("relative-home"))
    for script in SCRIPTS.glob("*.py"):
        runner.store.put_file(script, f"{CODE}/{script.name}")
    stage_parts(runner, f"{BUCKET}/data", 1)

    outcome = run(runner, inspect("Inspect", f"{BUCKET}/data", f"{BUCKET}/out"))

    assert outcome.status == "Succeeded", outcome.failure_reason
    assert runner.home == tmp_path / "relative-home"
    assert read_json(runner, f"{BUCKET}/out/seen-algo-1.json")["files"] == {"part-0.csv": "row 0\n"}


def test_container_paths_reach_the_job_as_its_sandbox(runner, isolation):
    stage_parts(runner, f"{BUCKET}/data", 1)

    run(runner, inspect("Inspect", f"{BUCKET}/data", f"{BUCKET}/out", note="/elsewhere/opt/ml"))

    argv = read_json(runner, f"{BUCKET}/out/seen-algo-1.json")["argv"]
    paths = dict(zip(argv[::2], argv[1::2], strict=True))
    sandbox = runner.jobs_dir.resolve()
    for flag, container in [
        ("--input", "/opt/ml/processing/input/data"),
        ("--output", "/opt/ml/processing/output"),
        ("--resource-config", "/opt/ml/config/resourceconfig.json"),
    ]:
        if isolation.namespaced:  # the sandbox is at /opt/ml itself
            assert paths[flag] == container
        else:
            assert paths[flag].endswith(container)
            assert Path(paths[flag]).resolve().is_relative_to(sandbox)
    assert paths["--note"] == "/elsewhere/opt/ml"  # only paths that start at /opt/ml are container paths


def test_two_instances_with_sharded_by_s3_key_each_see_a_disjoint_half_of_the_objects(runner):
    everything = stage_parts(runner, f"{BUCKET}/data", 4)

    outcome = run(
        runner,
        inspect("Inspect", f"{BUCKET}/data", f"{BUCKET}/out", distribution="ShardedByS3Key", instances=2),
    )

    assert outcome.status == "Succeeded", outcome.failure_reason
    first = set(read_json(runner, f"{BUCKET}/out/seen-algo-1.json")["files"])
    second = set(read_json(runner, f"{BUCKET}/out/seen-algo-2.json")["files"])
    assert len(first) == len(second) == 2
    assert first.isdisjoint(second)
    assert first | second == everything


def test_two_instances_with_fully_replicated_inputs_each_see_every_object(runner):
    everything = stage_parts(runner, f"{BUCKET}/data", 4)

    outcome = run(runner, inspect("Inspect", f"{BUCKET}/data", f"{BUCKET}/out", instances=2))

    assert outcome.status == "Succeeded", outcome.failure_reason
    for host in ("algo-1", "algo-2"):
        report = read_json(runner, f"{BUCKET}/out/seen-{host}.json")
        assert report["host"] == host
        assert set(report["files"]) == everything


def test_several_instances_without_a_sharded_input_run_but_are_warned_of_the_repeated_work(
    runner, monkeypatch
):
    warnings = []
    monkeypatch.setattr(runner.reporter, "warning", lambda step, text: warnings.append((step, text)))
    stage_parts(runner, f"{BUCKET}/data", 2)

    replicated = run(runner, inspect("Inspect", f"{BUCKET}/data", f"{BUCKET}/out", instances=2))
    sharded = run(
        runner,
        inspect("Shard", f"{BUCKET}/data", f"{BUCKET}/out2", distribution="ShardedByS3Key", instances=2),
    )
    single = run(runner, inspect("Single", f"{BUCKET}/data", f"{BUCKET}/out3"))

    assert [o.status for o in (replicated, sharded, single)] == ["Succeeded"] * 3
    repeated = [(step, text) for step, text in warnings if "ShardedByS3Key" in text]
    assert repeated == [
        (
            "Inspect",
            "InstanceCount 2 with no ShardedByS3Key input: every instance gets every input whole and "
            "runs the same code, here as on SageMaker (2 times the work and the cost); shard an input "
            "by S3 key or use one instance",
        )
    ]


def test_instances_writing_the_same_output_object_are_warned(runner, monkeypatch):
    """Every instance uploads its LocalPath to the output's one S3Uri; which copy of a name two
    instances wrote lands on SageMaker is not documented, so the runner says so."""
    warnings = []
    monkeypatch.setattr(runner.reporter, "warning", lambda step, text: warnings.append((step, text)))

    outcome = run(runner, write_json("Twice", f"{BUCKET}/twice", {"same": "name"}, instances=3))

    assert outcome.status == "Succeeded", outcome.failure_reason
    assert [(step, text) for step, text in warnings if "both wrote" in text] == [
        (
            "Twice",
            f"instances algo-1 and algo-2 both wrote {BUCKET}/twice/report.json (and 1 more): the local "
            "store keeps algo-3's; which one SageMaker keeps is not documented, so give each instance's "
            "output files names of their own",
        )
    ]
    warnings.clear()
    assert run(runner, write_json("Once", f"{BUCKET}/once", {"one": "instance"})).status == "Succeeded"
    assert not [text for _, text in warnings if "both wrote" in text]


def test_a_failing_instance_is_named_with_its_own_last_line_and_every_log_is_kept(runner):
    """Reproduction: algo-2 of a sharded Profile job failed on its empty shard while algo-1 went on
    writing to the job's one log, and the failure reason quoted algo-1's last line. Each instance
    now logs on its own, as each has its own log stream on SageMaker, and the job's log holds them
    all, in host order, once they end."""
    runner.store.put_file(SCRIPTS / "host_fails.py", f"{CODE}/host_fails.py")

    outcome = run(runner, processing("Split", "host_fails.py", arguments=["algo-2"], instances=3))

    assert outcome.status == "Failed"
    assert outcome.failure_reason.endswith(
        "processing job pipelines-" + outcome.arn.rsplit("/", 1)[1] + "-Split (algo-2) exited with status 2: "
        "error: refused on algo-2"
    ), outcome.failure_reason
    log = (runner.jobs_dir / f"pipelines-{outcome.arn.rsplit('/', 1)[1]}-Split" / "log.txt").read_text()
    sections = [line for line in log.splitlines() if not line.startswith("---- ")]
    assert sections == ["done on algo-1", "error: refused on algo-2", "done on algo-3"]


def test_instances_beyond_the_cpu_count_queue_instead_of_starting_at_once(tmp_path, work):
    """Reproduction: ``ProcessingInstanceCount=1000`` started a thousand processes at once; a job's
    instances now run at most as many at a time as the runner has CPUs, the rest waiting."""
    runner = LocalRunner(tmp_path / "home", cpus=2)
    runner.store.put_file(SCRIPTS / "crowd.py", f"{CODE}/crowd.py")
    crowd, peaks = work / "crowd", work / "peaks"
    crowd.mkdir()
    environment = {"CROWD": str(crowd), "PEAKS": str(peaks), "SIZE": "4", "WAIT": "2"}

    outcome = run(runner, processing("Crowd", "crowd.py", environment=environment, instances=4))

    assert outcome.status == "Succeeded", outcome.failure_reason
    seen = [int(line) for line in lines(peaks)]
    assert len(seen) == 4  # every instance ran
    assert max(seen) <= 2  # never more at once than the CPUs


@pytest.mark.parametrize(
    ("count", "problem"), [(0, "0 is below the minimum 1"), (1000, "1000 is above the maximum 100")]
)
def test_an_instance_count_sagemaker_refuses_is_reported_before_anything_runs(runner, count, problem):
    """Reproduction: ``ProcessingInstanceCount=0`` ended in a traceback and ``=1000`` started a
    thousand processes; CreateProcessingJob takes 1 to 100 instances."""
    step = processing("Prep", "count.py", instances={"Get": "Parameters.ProcessingInstanceCount"})
    parameters = [{"Name": "ProcessingInstanceCount", "Type": "Integer", "DefaultValue": 1}]
    with pytest.raises(DefinitionError) as caught:
        runner.start(
            definition(step, parameters=parameters),
            pipeline_name=PIPELINE,
            parameters={"ProcessingInstanceCount": str(count)},
        )
    assert list(caught.value.problems) == [
        "step 'Prep': Arguments.ProcessingResources.ClusterConfig.InstanceCount: parameter "
        f"ProcessingInstanceCount={problem} (CreateProcessingJob)"
    ]
    assert runner.records.list_executions() == []


def test_a_missing_input_fails_the_step_naming_the_s3_uri(runner):
    outcome = run(runner, inspect("Inspect", f"{BUCKET}/nowhere/", f"{BUCKET}/out"))

    assert outcome.status == "Failed"
    entry = step_entries(runner, outcome)["Inspect"]
    assert entry["StepStatus"] == "Failed"
    assert "input 'data'" in entry["FailureReason"]
    assert f"{BUCKET}/nowhere/" in entry["FailureReason"]
    assert outcome.failure_reason == f"step 'Inspect' failed: {entry['FailureReason']}"
    assert not runner.store.exists(f"{BUCKET}/out")


# ---- 2. script-mode training


def test_a_script_mode_training_job_gets_the_training_toolkits_contract(runner, isolation):
    runner.store.put_bytes(f"{BUCKET}/train/data.csv", b"1,2,3\n")
    code = code_archive(runner, "train_inspect.py")
    step = training(
        "Train",
        hyperparameters={
            "epochs": {"Get": "Parameters.Epochs"},
            "optimizer": '"adam"',  # SDK v2 JSON-encodes string hyperparameters
            "sagemaker_program": '"train_inspect.py"',
            "sagemaker_submit_directory": json.dumps(code),
        },
        channels={"train": f"{BUCKET}/train"},
        output_uri=f"{BUCKET}/models",
        metrics=[("loss", r"loss=([0-9.]+)"), ("accuracy", r"accuracy=([0-9.]+)")],
    )

    outcome = run(runner, step, parameters=[{"Name": "Epochs", "Type": "Integer", "DefaultValue": 3}])

    assert outcome.status == "Succeeded", outcome.failure_reason
    properties = outcome.properties["Train"]
    job = properties["TrainingJobName"]
    model_uri = f"{BUCKET}/models/{job}/output/model.tar.gz"
    assert properties["ModelArtifacts"]["S3ModelArtifacts"] == model_uri
    report = json.loads(model_files(runner, model_uri)["report.json"])
    assert report["argv"] == ["--epochs", "3", "--optimizer", "adam"]
    # Decoded as the training toolkit decodes them; the command line keeps the text.
    assert report["SM_HPS"] == {"epochs": 3, "optimizer": "adam"}
    assert report["SM_CHANNELS"] == ["train"]
    if isolation.namespaced:
        assert report["SM_MODEL_DIR"] == "/opt/ml/model"
        assert report["SM_CHANNEL_TRAIN"] == "/opt/ml/input/data/train"
        assert report["cwd"] == "/opt/ml/code"  # where the training toolkit runs the entry point
        assert report["PYTHONPATH"] == "/opt/ml/code"
    else:
        assert report["SM_MODEL_DIR"].endswith("/opt/ml/model")
        assert report["SM_CHANNEL_TRAIN"].endswith("/opt/ml/input/data/train")
        assert Path(report["SM_MODEL_DIR"]).resolve().is_relative_to(runner.jobs_dir.resolve())
        assert report["cwd"].endswith("/opt/ml/code")
    assert report["train"] == {"data.csv": "1,2,3\n"}
    config = report["config"]
    assert set(config) == {"hyperparameters.json", "inputdataconfig.json", "resourceconfig.json"}
    assert config["hyperparameters.json"]["sagemaker_program"] == "train_inspect.py"
    assert config["inputdataconfig.json"]["train"]["ContentType"] == "text/csv"
    assert config["resourceconfig.json"]["current_host"] == "algo-1"
    # The last value of each metric in the log is the final one.
    metrics = {m["MetricName"]: m["Value"] for m in properties["FinalMetricDataList"]}
    assert metrics == {"loss": 1.25, "accuracy": 0.75}


# ---- 3. built-in XGBoost


def test_built_in_xgboost_trains_on_label_first_csv_and_reports_validation_metrics(runner):
    rows = "\n".join(f"{index % 2},{index % 2 + 0.1 * index},{index}" for index in range(20)) + "\n"
    runner.store.put_bytes(f"{BUCKET}/xgb/train/train.csv", rows.encode())
    runner.store.put_bytes(f"{BUCKET}/xgb/validation/validation.csv", rows.encode())
    step = training(
        "Train",
        image=XGBOOST,
        hyperparameters={
            "num_round": "4",
            "max_depth": "2",
            "objective": "binary:logistic",
            "eval_metric": "logloss",
        },
        channels={"train": f"{BUCKET}/xgb/train", "validation": f"{BUCKET}/xgb/validation"},
        output_uri=f"{BUCKET}/xgb/model",
    )

    outcome = run(runner, step)

    assert outcome.status == "Succeeded", outcome.failure_reason
    properties = outcome.properties["Train"]
    assert "xgboost-model" in model_files(runner, properties["ModelArtifacts"]["S3ModelArtifacts"])
    metrics = {m["MetricName"]: m["Value"] for m in properties["FinalMetricDataList"]}
    # The container's own metrics: validation:<m> only (its algorithm_mode/metrics.py).
    assert set(metrics) == {"validation:logloss"}
    assert 0 < metrics["validation:logloss"] < 0.6931  # better than chance after 4 rounds


def test_built_in_xgboost_without_num_round_fails_with_the_algorithms_message(runner):
    runner.store.put_bytes(f"{BUCKET}/xgb/train/train.csv", b"1,0.5\n0,0.1\n")
    step = training(
        "Train",
        image=XGBOOST,
        hyperparameters={"objective": "binary:logistic"},
        channels={"train": f"{BUCKET}/xgb/train"},
        output_uri=f"{BUCKET}/xgb/model",
    )

    outcome = run(runner, step)

    assert outcome.status == "Failed"
    reason = step_entries(runner, outcome)["Train"]["FailureReason"]
    assert reason.startswith("AlgorithmError:")
    assert "num_round is required" in reason


# ---- 4. tuning


@pytest.mark.parametrize(
    ("objective", "ranked"), [("Maximize", ["2", "1", "0", "5"]), ("Minimize", ["5", "0", "1", "2"])]
)
def test_grid_tuning_runs_every_value_and_ranks_the_trials_best_first(runner, objective, ranked):
    code = code_archive(runner, "trial.py")
    step = tuning(
        "Tune",
        strategy="Grid",
        objective=objective,
        values=["0", "1", "2", "5"],
        code_uri=code,
        max_jobs=10,
        output_uri=f"{BUCKET}/tuning",
    )

    outcome = run(runner, step)

    assert outcome.status == "Succeeded", outcome.failure_reason
    properties = outcome.properties["Tune"]
    summaries = properties["TrainingJobSummaries"]
    assert [s["TunedHyperParameters"]["x"] for s in summaries] == ranked
    values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries]
    assert values == [10 - (int(x) - 2) ** 2 for x in ranked]
    assert properties["BestTrainingJob"] == summaries[0]
    assert properties["TrainingJobStatusCounters"]["Completed"] == 4
    best = summaries[0]["TrainingJobName"]
    model = model_files(runner, f"{BUCKET}/tuning/{best}/output/model.tar.gz")
    assert model["x.txt"] == f"{float(ranked[0])}".encode()


def test_a_downstream_step_reads_the_best_training_job_through_a_property_reference(runner):
    code = code_archive(runner, "trial.py")
    tune = tuning(
        "Tune",
        strategy="Random",
        objective="Maximize",
        values=["0", "2", "5"],
        code_uri=code,
        max_jobs=3,
        output_uri=f"{BUCKET}/tuning",
    )
    report = inspect(
        "Report",
        f"{CODE}/inspect_inputs.py",
        f"{BUCKET}/report",
        note={"Get": "Steps.Tune.TrainingJobSummaries[0].TrainingJobName"},
    )

    outcome = run(runner, tune, report)

    assert outcome.status == "Succeeded", outcome.failure_reason
    summaries = outcome.properties["Tune"]["TrainingJobSummaries"]
    assert len(summaries) == 3
    assert {s["TunedHyperParameters"]["x"] for s in summaries} <= {"0", "2", "5"}
    values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries]
    assert values == sorted(values, reverse=True)
    note = read_json(runner, f"{BUCKET}/report/seen-algo-1.json")["note"]
    assert note == summaries[0]["TrainingJobName"]


def test_a_tuning_objective_missing_from_the_metric_definitions_is_refused_before_running(runner):
    step = tuning(
        "Tune",
        strategy="Grid",
        objective="Maximize",
        values=["1"],
        code_uri=f"{CODE}/none.tar.gz",
        max_jobs=1,
        output_uri=f"{BUCKET}/tuning",
    )
    step["Arguments"]["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] = (
        "auc"
    )

    with pytest.raises(DefinitionError, match="objective metric 'auc' is not among the MetricDefinitions"):
        run(runner, step)
    assert runner.records.list_executions() == []


# ---- model registration


def register(name, model_data_url, group="EngineModels"):
    return {
        "Name": name,
        "Type": "RegisterModel",
        "Arguments": {
            "ModelPackageGroupName": group,
            "InferenceSpecification": {
                "Containers": [{"Image": SKLEARN, "ModelDataUrl": model_data_url}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            "ModelApprovalStatus": "PendingManualApproval",
        },
    }


def test_register_model_puts_the_trained_model_in_the_local_registry(runner):
    runner.store.put_bytes(f"{BUCKET}/train/data.csv", b"1,2,3\n")
    code = code_archive(runner, "train_inspect.py")
    train = training(
        "Train",
        hyperparameters={"sagemaker_program": "train_inspect.py", "sagemaker_submit_directory": code},
        channels={"train": f"{BUCKET}/train"},
        output_uri=f"{BUCKET}/models",
    )
    step = register("Register", {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"})

    outcome = run(runner, train, step)

    assert outcome.status == "Succeeded", outcome.failure_reason
    package = LocalModelRegistry(runner.home / FILE_NAME).get_version("EngineModels", 1)
    assert package.model_data_url == outcome.properties["Train"]["ModelArtifacts"]["S3ModelArtifacts"]
    assert package.approval_status == "PendingManualApproval"
    assert outcome.properties["Register"]["ModelPackageVersion"] == 1
    assert step_entries(runner, outcome)["Register"]["Metadata"] == {
        "RegisterModel": {"Arn": outcome.properties["Register"]["ModelPackageArn"]}
    }


def test_a_retry_after_a_crash_between_registering_and_recording_keeps_one_version(runner):
    """Reproduction: with a write lock held on the execution records while RegisterModel ran, the
    runner was killed (kill -9) after the registry had the new version but before the step was
    recorded; ``local-pipeline retry`` then registered a second version for the same execution."""
    runner.store.put_bytes(f"{BUCKET}/models/model.tar.gz", b"model")
    outcome = run(runner, register("Register", f"{BUCKET}/models/model.tar.gz"))
    assert outcome.status == "Succeeded", outcome.failure_reason
    # What the killed runner leaves: the version registered, the step not recorded as done.
    runner.records.delete_step(outcome.arn, "Register")
    runner.records.set_execution_status(outcome.arn, "Executing")

    retried = runner.retry(outcome.execution_id)

    assert retried.status == "Succeeded", retried.failure_reason
    registry = LocalModelRegistry(runner.home / FILE_NAME)
    assert [package.version for package in registry.list_versions("EngineModels")] == [1]
    assert retried.properties["Register"]["ModelPackageVersion"] == 1
    # Another execution of the same definition is a new registration.
    assert run(runner, register("Register", f"{BUCKET}/models/model.tar.gz")).status == "Succeeded"
    assert [package.version for package in registry.list_versions("EngineModels")] == [1, 2]


def test_register_model_fails_when_the_model_is_not_in_the_store(runner):
    outcome = run(runner, register("Register", f"{BUCKET}/missing/model.tar.gz"))

    assert outcome.status == "Failed"
    reason = step_entries(runner, outcome)["Register"]["FailureReason"]
    assert reason == f"ModelDataUrl {BUCKET}/missing/model.tar.gz is not in the local object store"
    assert not (runner.home / FILE_NAME).exists()


# ---- 5. conditions and Fail


def gated(threshold):
    """Evaluate writes auc 0.6; Check takes IfSteps (Good) when auc >= Threshold, else TooLow fails.
    AfterGood, outside the condition, depends on Good."""
    evaluate = write_json(
        "Evaluate",
        {"Std:Join": {"On": "/", "Values": [BUCKET, EXECUTION_ID, "evaluation"]}},
        {"metrics": {"auc": 0.6}},
        PropertyFiles=[{"PropertyFileName": "Evaluation", "OutputName": "report", "FilePath": "report.json"}],
    )
    check = {
        "Name": "Check",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": json_get("Evaluate", "Evaluation", "metrics.auc"),
                    "RightValue": {"Get": "Parameters.Threshold"},
                }
            ],
            "IfSteps": [write_json("Good", f"{BUCKET}/good", {"ok": True})],
            "ElseSteps": [
                {
                    "Name": "TooLow",
                    "Type": "Fail",
                    "Arguments": {
                        "ErrorMessage": {
                            "Std:Join": {
                                "On": " ",
                                "Values": [
                                    "auc",
                                    json_get("Evaluate", "Evaluation", "metrics.auc"),
                                    "is below",
                                    {"Get": "Parameters.Threshold"},
                                ],
                            }
                        }
                    },
                }
            ],
        },
    }
    after = write_json("AfterGood", f"{BUCKET}/after", {"after": True}, DependsOn=["Good"])
    parameters = [{"Name": "Threshold", "Type": "Float", "DefaultValue": threshold}]
    return definition(evaluate, check, after, parameters=parameters)


def test_a_condition_that_holds_runs_only_its_if_steps_and_what_depends_on_them(runner):
    outcome = runner.start(gated(0.5), pipeline_name=PIPELINE)

    assert outcome.status == "Succeeded", outcome.failure_reason
    assert statuses(runner, outcome) == {
        "Evaluate": "Succeeded",
        "Check": "Succeeded",
        "Good": "Succeeded",
        "AfterGood": "Succeeded",
    }
    assert step_entries(runner, outcome)["Check"]["Metadata"] == {"Condition": {"Outcome": "true"}}
    assert runner.store.exists(f"{BUCKET}/after/report.json")


def test_a_condition_that_fails_ends_at_the_fail_step_with_its_evaluated_message(runner):
    outcome = runner.start(gated(0.9), pipeline_name=PIPELINE)

    assert outcome.status == "Failed"
    # Good is on the branch not taken; AfterGood waits on it, so neither runs.
    assert statuses(runner, outcome) == {"Evaluate": "Succeeded", "Check": "Succeeded", "TooLow": "Failed"}
    entries = step_entries(runner, outcome)
    assert entries["Check"]["Metadata"] == {"Condition": {"Outcome": "false"}}
    assert entries["TooLow"]["FailureReason"] == "auc 0.6 is below 0.9"
    assert outcome.failure_reason == "step 'TooLow' failed: auc 0.6 is below 0.9"
    description = runner.records.describe_execution(outcome.execution_id)
    assert description["PipelineExecutionStatus"] == "Failed"
    assert description["FailureReason"] == outcome.failure_reason
    assert not runner.store.exists(f"{BUCKET}/good")
    assert not runner.store.exists(f"{BUCKET}/after")


# ---- 6. retry policies


def retry_policy(*types, interval=3, max_attempts=2, backoff=2.0):
    return {
        "ExceptionType": list(types),
        "IntervalSeconds": interval,
        "MaxAttempts": max_attempts,
        "BackoffRate": backoff,
    }


def test_a_job_killed_by_sigkill_is_retried_under_a_job_internal_error_policy(runner, work, sleeps):
    marker = work / "attempts"
    step = flaky("Flaky", "kill-once", marker, [retry_policy(JOB_INTERNAL_ERROR, interval=3)])

    outcome = run(runner, step)

    assert outcome.status == "Succeeded", outcome.failure_reason
    entry = step_entries(runner, outcome)["Flaky"]
    assert entry["StepStatus"] == "Succeeded"
    assert entry["AttemptCount"] == 2
    assert sleeps == [3]
    assert len(lines(marker)) == 2
    assert outcome.properties["Flaky"]["ProcessingJobName"].endswith("-r2")


def test_a_job_killed_by_sigkill_fails_when_no_policy_lists_job_internal_error(runner, work, sleeps):
    marker = work / "attempts"
    step = flaky("Flaky", "kill-once", marker, [retry_policy("Step.THROTTLING", "SageMaker.RESOURCE_LIMIT")])

    outcome = run(runner, step)

    assert outcome.status == "Failed"
    entry = step_entries(runner, outcome)["Flaky"]
    assert entry["AttemptCount"] == 1
    assert entry["FailureReason"].startswith("InternalServerError:")
    assert "killed by signal SIGKILL" in entry["FailureReason"]
    assert sleeps == []
    assert len(lines(marker)) == 1


def test_a_script_that_exits_1_is_an_algorithm_error_and_is_not_retried(runner, work, sleeps):
    marker = work / "attempts"
    step = flaky("Flaky", "exit", marker, [retry_policy(JOB_INTERNAL_ERROR, "Step.SERVICE_FAULT")])

    outcome = run(runner, step)

    assert outcome.status == "Failed"
    entry = step_entries(runner, outcome)["Flaky"]
    assert entry["AttemptCount"] == 1
    assert entry["FailureReason"].startswith("AlgorithmError:")
    assert entry["FailureReason"].endswith("the data is wrong")  # the last line the script printed
    assert sleeps == []
    assert len(lines(marker)) == 1


def test_retries_stop_after_max_attempts_and_wait_longer_by_the_backoff_rate(runner, work, sleeps):
    marker = work / "attempts"
    policy = retry_policy(JOB_INTERNAL_ERROR, interval=2, max_attempts=3, backoff=1.5)
    step = flaky("Flaky", "kill-always", marker, [policy])

    outcome = run(runner, step)

    assert outcome.status == "Failed"
    entry = step_entries(runner, outcome)["Flaky"]
    # MaxAttempts counts retries: the first attempt plus three more.
    assert entry["AttemptCount"] == 4
    assert sleeps == [2, 3, 4.5]
    assert len(lines(marker)) == 4


def test_only_the_first_policy_listing_the_failures_type_applies(runner, work, sleeps):
    marker = work / "attempts"
    policies = [
        retry_policy("Step.THROTTLING", interval=100),
        retry_policy(JOB_INTERNAL_ERROR, interval=7, max_attempts=1),
        retry_policy(JOB_INTERNAL_ERROR, interval=50, max_attempts=9),
    ]
    step = flaky("Flaky", "kill-always", marker, policies)

    outcome = run(runner, step)

    assert outcome.status == "Failed"
    assert step_entries(runner, outcome)["Flaky"]["AttemptCount"] == 2
    assert sleeps == [7]


def test_expire_after_min_caps_the_total_wait_of_retries(runner, work, sleeps):
    marker = work / "attempts"
    policy = {**retry_policy(JOB_INTERNAL_ERROR, interval=30, max_attempts=10), "ExpireAfterMin": 2}
    step = flaky("Flaky", "kill-always", marker, [policy])

    outcome = run(runner, step)

    assert outcome.status == "Failed"
    # 30 + 60 = 90 s fits in 2 minutes; another 120 s would not.
    assert sleeps == [30, 60]
    assert step_entries(runner, outcome)["Flaky"]["AttemptCount"] == 3


def test_a_job_over_its_max_runtime_is_stopped_and_not_retried(runner, work, sleeps):
    step = processing(
        "Slow",
        "rendezvous.py",
        environment={"MINE": str(work / "mine"), "THEIRS": str(work / "never"), "TIMEOUT": "60"},
        RetryPolicies=[retry_policy(JOB_INTERNAL_ERROR, "Step.SERVICE_FAULT")],
    )
    step["Arguments"]["StoppingCondition"] = {"MaxRuntimeInSeconds": 1}

    started = time.monotonic()
    outcome = run(runner, step)

    assert time.monotonic() - started < 30
    assert outcome.status == "Failed"
    entry = step_entries(runner, outcome)["Slow"]
    assert entry["FailureReason"].startswith("MaxRuntimeExceeded:")
    assert entry["AttemptCount"] == 1
    assert sleeps == []


# ---- 7. caching


def cached(name, counter, data_uri, expire="P1D"):
    """A counting step whose output path holds the execution id, with CacheConfig enabled."""
    output = {"Std:Join": {"On": "/", "Values": [BUCKET, EXECUTION_ID, "copy"]}}
    return counting(name, data_uri, output, counter, CacheConfig={"Enabled": True, "ExpireAfter": expire})


def test_a_second_identical_execution_is_a_cache_hit_pointing_at_the_first(runner, work):
    counter = work / "counter"
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    step = cached("Copy", counter, f"{BUCKET}/data")

    first = run(runner, step)
    second = run(runner, step)

    assert first.status == second.status == "Succeeded"
    assert len(lines(counter)) == 1  # the script ran once
    entry = step_entries(runner, second)["Copy"]
    assert entry["StepStatus"] == "Succeeded"
    assert entry["CacheHitResult"] == {"SourcePipelineExecutionArn": first.arn}
    assert entry["AttemptCount"] == 0
    assert "CacheHitResult" not in step_entries(runner, first)["Copy"]
    # The properties are the first run's: its output, under the first execution's id.
    output = second.properties["Copy"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert output == f"{BUCKET}/{first.execution_id}/copy"
    assert runner.store.get_bytes(f"{output}/input.csv") == b"a\n"


def test_new_data_at_a_new_location_misses_the_cache_and_the_step_runs_again(runner, work):
    counter = work / "counter"
    runner.store.put_bytes(f"{BUCKET}/data/2026-11-01/input.csv", b"a\n")
    run(runner, cached("Copy", counter, f"{BUCKET}/data/2026-11-01"))

    runner.store.put_bytes(f"{BUCKET}/data/2026-11-02/input.csv", b"b\n")
    second = run(runner, cached("Copy", counter, f"{BUCKET}/data/2026-11-02"))

    assert len(lines(counter)) == 2
    assert "CacheHitResult" not in step_entries(runner, second)["Copy"]
    assert runner.store.get_bytes(f"{BUCKET}/{second.execution_id}/copy/input.csv") == b"b\n"


def test_new_data_at_the_same_location_is_a_cache_hit_as_on_sagemaker_and_the_summary_says_so(runner, work):
    # SageMaker's cache key holds the input URI, not the objects behind it.
    counter = work / "counter"
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    step = cached("Copy", counter, f"{BUCKET}/data")
    first = run(runner, step)
    unchanged = run(runner, step)
    assert summary(unchanged, parse_definition(definition(step), "test"))[1:] == ["  from cache: Copy"]

    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"b\n")
    second = run(runner, step)
    third = run(runner, step)  # a hit on a hit still compares with the data of the run that did the work

    assert len(lines(counter)) == 1
    for outcome in (second, third):
        assert step_entries(runner, outcome)["Copy"]["CacheHitResult"] == {
            "SourcePipelineExecutionArn": first.arn
        }
        lines_ = summary(outcome, parse_definition(definition(step), "test"))
        assert lines_[2] == (
            f"  warning: Copy reused {first.execution_id} although the data at {BUCKET}/data changed since; "
            "SageMaker would reuse it too (its cache key holds input URIs, not their content): give new data "
            "a new location, or run with --no-cache"
        )
    # The reused result is the first run's, computed from the old data.
    output = third.properties["Copy"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert runner.store.get_bytes(f"{output}/input.csv") == b"a\n"


def test_use_cache_false_runs_the_step_again_and_a_later_run_reuses_that_work(runner, work):
    counter = work / "counter"
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    step = cached("Copy", counter, f"{BUCKET}/data")
    run(runner, step)

    uncached = run(runner, step, use_cache=False)
    later = run(runner, step)

    assert len(lines(counter)) == 2
    assert "CacheHitResult" not in step_entries(runner, uncached)["Copy"]
    assert step_entries(runner, later)["Copy"]["CacheHitResult"] == {
        "SourcePipelineExecutionArn": uncached.arn
    }


def test_an_expired_cache_entry_is_not_used(runner, work):
    assert parse_duration("PT0S").total_seconds() == 0
    counter = work / "counter"
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    step = cached("Copy", counter, f"{BUCKET}/data", expire="PT0S")

    run(runner, step)
    second = run(runner, step)

    assert len(lines(counter)) == 2
    assert "CacheHitResult" not in step_entries(runner, second)["Copy"]


def test_a_cache_entry_whose_outputs_were_deleted_is_not_used(runner, work):
    counter = work / "counter"
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    step = cached("Copy", counter, f"{BUCKET}/data")
    first = run(runner, step)

    shutil.rmtree(runner.store.path(f"{BUCKET}/{first.execution_id}"))
    second = run(runner, step)

    assert len(lines(counter)) == 2
    assert "CacheHitResult" not in step_entries(runner, second)["Copy"]


@pytest.mark.parametrize(
    ("text", "days", "seconds"),
    [
        ("P30D", 30, 0),
        ("p30d", 30, 0),
        ("PT1H", 0, 3600),
        ("P1DT12H", 1, 43200),
        ("P2W", 14, 0),
        ("P6M", 180, 0),
        ("P1Y", 365, 0),
        ("PT0S", 0, 0),
    ],
)
def test_expire_after_takes_the_iso_8601_durations_the_template_accepts(text, days, seconds):
    assert ISO_DURATION.match(text.upper())
    duration = parse_duration(text)
    assert (duration.days, duration.seconds) == (days, seconds)


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "30D", "P1H", "PT1D", "thirty days"])
def test_expire_after_refuses_what_is_not_an_iso_8601_duration(text):
    assert parse_duration(text) is None


def test_a_step_without_cache_config_always_runs(runner, work):
    counter = work / "counter"
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    step = counting("Copy", f"{BUCKET}/data", f"{BUCKET}/copy", counter)

    run(runner, step)
    run(runner, step)

    assert len(lines(counter)) == 2


# ---- 8. validation


def test_every_problem_of_a_definition_is_reported_at_once_before_anything_runs(runner, work):
    counter = work / "counter"
    steps = [
        counting("Prep", f"{BUCKET}/data", f"{BUCKET}/out", counter),
        {"Name": "Score", "Type": "EMR", "Arguments": {}},
        processing("Custom", "count.py", image="123456789012.dkr.ecr.us-east-1.amazonaws.com/my-own:1"),
        {"Name": "A", "Type": "Fail", "Arguments": {"ErrorMessage": "a"}, "DependsOn": ["B"]},
        {"Name": "B", "Type": "Fail", "Arguments": {"ErrorMessage": "b"}, "DependsOn": ["A"]},
    ]
    document = definition(*steps, parameters=[{"Name": "Epochs", "Type": "Integer", "DefaultValue": 3}])

    with pytest.raises(DefinitionError) as caught:
        runner.start(document, pipeline_name=PIPELINE, parameters={"Epochs": "many"}, source="bad.json")

    problems = caught.value.problems
    assert len(problems) == 4, problems
    assert any(p.startswith("step 'Score': unsupported step type 'EMR'") for p in problems)
    assert any(
        p.startswith("step 'Custom': image '123456789012.dkr.ecr.us-east-1.amazonaws.com/my-own:1'")
        and "has no local runtime" in p
        for p in problems
    )
    assert "cycle: A -> B -> A" in problems
    assert any(p.startswith("parameter Epochs='many' is not an Integer") for p in problems)
    assert str(caught.value).startswith("bad.json: 4 problems:")
    assert runner.records.list_executions() == []
    assert not counter.exists()
    assert not runner.jobs_dir.exists()


def test_runner_specific_problems_are_reported_with_the_step_name(runner):
    step = flaky(
        "Flaky", "exit", "/tmp/unused", [{"ExceptionType": [], "MaxAttempts": -1, "BackoffRate": 0.5}]
    )
    step["CacheConfig"] = {"Enabled": True, "ExpireAfter": "thirty days"}
    step["Arguments"]["ProcessingInputs"][0]["S3Input"]["S3InputMode"] = "Pipe"

    with pytest.raises(DefinitionError) as caught:
        run(runner, step)

    problems = caught.value.problems
    assert all(p.startswith("step 'Flaky': ") for p in problems)
    text = " | ".join(problems)
    assert "S3InputMode Pipe is not supported locally" in text
    assert "CacheConfig.ExpireAfter 'thirty days' is not an ISO 8601 duration" in text
    assert "RetryPolicies[0].ExceptionType must be a non-empty list" in text
    assert "RetryPolicies[0].MaxAttempts must be a non-negative whole number, got -1" in text
    assert "RetryPolicies[0].BackoffRate must be a number of at least 1, got 0.5" in text
    assert runner.records.list_executions() == []


def malformed_steps(work):
    """Three steps whose Arguments are not valid requests of their APIs, and one valid step."""
    no_app = processing("NoApp", "count.py")
    del no_app["Arguments"]["AppSpecification"]
    no_algorithm = training("NoAlgorithm", hyperparameters={}, channels={}, output_uri=f"{BUCKET}/m")
    del no_algorithm["Arguments"]["AlgorithmSpecification"]
    text_resources = processing("TextResources", "count.py")
    text_resources["Arguments"]["ProcessingResources"] = "ml.m5.large"
    return [
        counting("Fine", f"{BUCKET}/data", f"{BUCKET}/out", work / "counter"),
        no_app,
        no_algorithm,
        text_resources,
    ]


MALFORMED_PROBLEMS = [
    "step 'NoApp': Arguments: required member 'AppSpecification' is missing (CreateProcessingJob)",
    # CreateTrainingJob takes a request without it; the runner cannot run one.
    "step 'NoAlgorithm': AlgorithmSpecification.TrainingImage is missing: the local runner runs an image",
    "step 'TextResources': Arguments.ProcessingResources: expected an object, got a string 'ml.m5.large' "
    "(CreateProcessingJob)",
]


def test_arguments_that_are_not_a_valid_api_request_are_all_reported_before_the_first_step(runner, work):
    """Reproduction: a Processing step without AppSpecification, a Training step without
    AlgorithmSpecification, and ProcessingResources given as a string passed validation; the runner
    then crashed with KeyError 'AppSpecification' (or 'AlgorithmSpecification', or a TypeError)."""
    stage_parts(runner, f"{BUCKET}/data", 1)
    with pytest.raises(DefinitionError) as caught:
        run(runner, *malformed_steps(work))
    assert list(caught.value.problems) == MALFORMED_PROBLEMS
    assert runner.records.list_executions() == []
    assert not (work / "counter").exists()


def test_retrying_an_execution_whose_arguments_are_malformed_reports_them_instead_of_crashing(runner, work):
    """Reproduction: ``local-pipeline retry`` of such an execution crashed the same way as the run."""
    document = definition(*malformed_steps(work))
    execution = runner.records.create_execution(PIPELINE, "malformed1234", document, {}, True)
    runner.records.set_execution_status(execution.arn, "Failed", "interrupted")
    with pytest.raises(DefinitionError) as caught:
        runner.retry("malformed1234")
    assert list(caught.value.problems) == MALFORMED_PROBLEMS
    assert not (work / "counter").exists()


def test_an_invalid_pipeline_name_is_a_usage_error(runner):
    with pytest.raises(UsageError, match="pipeline name 'not a name' is not valid"):
        runner.start(definition(), pipeline_name="not a name")


# ---- 9. concurrency


def rendezvous(name, mine, theirs, timeout):
    environment = {"MINE": str(mine), "THEIRS": str(theirs), "TIMEOUT": str(timeout)}
    return processing(name, "rendezvous.py", environment=environment)


def test_independent_steps_run_at_the_same_time(tmp_path, work):
    runner = LocalRunner(tmp_path / "home", max_workers=4)
    runner.store.put_file(SCRIPTS / "rendezvous.py", f"{CODE}/rendezvous.py")
    left, right = work / "left", work / "right"

    outcome = run(runner, rendezvous("Left", left, right, 30), rendezvous("Right", right, left, 30))

    assert outcome.status == "Succeeded", outcome.failure_reason
    assert statuses(runner, outcome) == {"Left": "Succeeded", "Right": "Succeeded"}


def test_with_one_worker_steps_run_one_at_a_time_and_a_failure_stops_the_rest(tmp_path, work):
    runner = LocalRunner(tmp_path / "home", max_workers=1)
    runner.store.put_file(SCRIPTS / "rendezvous.py", f"{CODE}/rendezvous.py")
    left, right = work / "left", work / "right"

    outcome = run(runner, rendezvous("Left", left, right, 1), rendezvous("Right", right, left, 1))

    assert outcome.status == "Failed"
    assert statuses(runner, outcome) == {"Left": "Failed"}
    assert "did not run concurrently" in outcome.failure_reason
    assert not right.exists()


# ---- 10. resume after the runner is killed

CHILD = """
import sys
from pathlib import Path
from pipelines.local.engine import LocalRunner
LocalRunner(Path(sys.argv[1])).start(Path(sys.argv[2]).read_text(), pipeline_name=sys.argv[3])
"""


def wait_for(predicate, what, process, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            pytest.fail(f"the runner ended ({process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_an_execution_whose_runner_was_killed_is_failed_and_retry_completes_only_what_was_left(
    runner, work, tmp_path
):
    first_counter, second_counter, release = work / "first", work / "second", work / "release"
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    first = counting("First", f"{BUCKET}/data", f"{BUCKET}/first", first_counter)
    second = counting(
        "Second",
        {"Get": "Steps.First.ProcessingOutputConfig.Outputs['copy'].S3Output.S3Uri"},
        f"{BUCKET}/second",
        second_counter,
        release=release,
    )
    document = tmp_path / "definition.json"
    document.write_text(definition(first, second))

    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(runner.home), str(document), PIPELINE],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: runner.records.list_executions(), "the execution was recorded", process)
        execution = runner.records.list_executions()[0]

        def second_is_running():
            steps = runner.records.steps(execution.arn)
            return (
                "Second" in steps
                and steps["First"].status == "Succeeded"
                and steps["Second"].status == "Executing"
                and second_counter.exists()
            )

        wait_for(second_is_running, "Second was executing", process)
        assert runner.records.describe_execution(execution.execution_id)["PipelineExecutionStatus"] == (
            "Executing"
        )
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()

    description = runner.records.describe_execution(execution.execution_id)
    assert description["PipelineExecutionStatus"] == "Failed"
    assert description["FailureReason"].startswith("interrupted")
    summary = runner.records.list_executions_answer()["PipelineExecutionSummaries"][0]
    assert summary["PipelineExecutionStatus"] == "Failed"
    entries = {
        e["StepName"]: e for e in runner.records.list_execution_steps(execution.arn)["PipelineExecutionSteps"]
    }
    assert entries["First"]["StepStatus"] == "Succeeded"
    assert entries["Second"]["StepStatus"] == "Failed"
    assert entries["Second"]["FailureReason"].startswith("interrupted")

    release.touch()
    outcome = LocalRunner(runner.home).retry(execution.execution_id)

    assert outcome.status == "Succeeded", outcome.failure_reason
    assert outcome.arn == execution.arn
    assert statuses(runner, outcome) == {"First": "Succeeded", "Second": "Succeeded"}
    assert len(lines(first_counter)) == 1  # First ran once in all
    assert len(lines(second_counter)) == 2  # Second ran again
    assert runner.store.get_bytes(f"{BUCKET}/second/input.csv") == b"a\n"
    assert runner.records.describe_execution(execution.execution_id)["PipelineExecutionStatus"] == "Succeeded"


def test_ctrl_c_stops_the_execution_at_once_and_retry_resumes_it(runner, work, tmp_path):
    """Reproduction: SIGINT to the process group of ``local-pipeline run`` killed the jobs; the
    runner counted that as an internal error, started new attempts under the step's
    JOB_INTERNAL_ERROR retry policy, and exited only 14 s later."""
    counter, release = work / "counter", work / "release"
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    step = counting("Slow", f"{BUCKET}/data", f"{BUCKET}/out", counter, release=release)
    step["RetryPolicies"] = [{"ExceptionType": [JOB_INTERNAL_ERROR], "IntervalSeconds": 20, "MaxAttempts": 3}]
    document = tmp_path / "definition.json"
    document.write_text(definition(step))
    command = [sys.executable, "-m", "pipelines.local.cli", "run", "--definition-file", str(document)]
    process = subprocess.Popen(
        [*command, "--pipeline-name", PIPELINE],
        cwd=REPO,
        env={**os.environ, "MLOPS_LOCAL_HOME": str(runner.home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    try:
        wait_for(lambda: counter.exists(), "the job started", process)
        interrupted = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=30)
        seconds = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    execution = runner.records.list_executions()[0]
    assert process.returncode == 130, err
    assert err == (
        f"Error: execution {execution.execution_id} Stopped: stopped by an interrupt; resume it with "
        f"local-pipeline retry {execution.execution_id}\n"
    )
    assert seconds < 10  # the retry policy's 20 s interval was not waited
    assert len(lines(counter)) == 1  # no new attempt
    assert runner.records.describe_execution(execution.arn)["PipelineExecutionStatus"] == "Stopped"
    (entry,) = runner.records.list_execution_steps(execution.arn)["PipelineExecutionSteps"]
    assert (entry["StepStatus"], entry["AttemptCount"]) == ("Stopped", 1)

    release.touch()
    outcome = LocalRunner(runner.home).retry(execution.execution_id)
    assert outcome.status == "Succeeded", outcome.failure_reason
    assert len(lines(counter)) == 2


def test_once_an_execution_is_stopped_no_job_process_starts(tmp_path):
    """An interrupt that lands while a step stages its inputs: the job it was about to start is
    refused, not started after the running ones were ended."""
    stop, marker = threading.Event(), tmp_path / "started"
    stop.set()
    with pytest.raises(StepFailure, match="stopped by an interrupt"):
        run_process(
            [sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
            cwd=tmp_path,
            env=dict(os.environ),
            log_path=tmp_path / "log.txt",
            timeout=30,
            stop=stop,
        )
    assert not marker.exists()


# ---- 11. records


def test_the_records_answer_like_the_sagemaker_apis(runner, work):
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    steps = [
        counting("First", f"{BUCKET}/data", f"{BUCKET}/first", work / "first"),
        counting("Second", f"{BUCKET}/first", f"{BUCKET}/second", work / "second", DependsOn=["First"]),
    ]
    parameters = [
        {"Name": "Strict", "Type": "Boolean", "DefaultValue": False},
        {"Name": "Rate", "Type": "Float", "DefaultValue": 0.5},
    ]
    outcome = runner.start(
        definition(*steps, parameters=parameters),
        pipeline_name=PIPELINE,
        parameters={"Rate": "0.25"},
        display_name="nightly",
    )
    assert outcome.status == "Succeeded", outcome.failure_reason

    summaries = runner.records.list_executions_answer()["PipelineExecutionSummaries"]
    assert summaries == [
        {
            "PipelineExecutionArn": outcome.arn,
            "PipelineExecutionDisplayName": "nightly",
            "PipelineExecutionStatus": "Succeeded",
            "StartTime": summaries[0]["StartTime"],
            "PipelineName": PIPELINE,
        }
    ]
    assert outcome.arn.endswith(f":pipeline/{PIPELINE}/execution/{outcome.execution_id}")
    assert runner.records.list_executions_answer("another-pipeline") == {"PipelineExecutionSummaries": []}

    description = runner.records.describe_execution(outcome.execution_id)
    assert description == runner.records.describe_execution(outcome.arn)
    assert description["PipelineExecutionArn"] == outcome.arn
    assert description["PipelineArn"] == outcome.arn.split("/execution/")[0]
    assert description["PipelineExecutionStatus"] == "Succeeded"
    assert description["PipelineExecutionDisplayName"] == "nightly"
    assert description["PipelineParameters"] == [
        {"Name": "Strict", "Value": "false"},
        {"Name": "Rate", "Value": "0.25"},
    ]
    assert "FailureReason" not in description
    assert {"CreationTime", "LastModifiedTime"} <= set(description)

    entries = runner.records.list_execution_steps(outcome.execution_id)["PipelineExecutionSteps"]
    assert [e["StepName"] for e in entries] == ["Second", "First"]  # newest first
    for entry in entries:
        assert entry["StepStatus"] == "Succeeded"
        assert entry["AttemptCount"] == 1
        assert entry["StartTime"] <= entry["EndTime"]
        assert set(entry["Metadata"]) == {"ProcessingJob"}
        assert Path(entry["LogPath"]).is_file()
        assert "FailureReason" not in entry


def test_retrying_a_succeeded_execution_is_a_usage_error(runner, work):
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    outcome = run(runner, counting("Copy", f"{BUCKET}/data", f"{BUCKET}/copy", work / "counter"))
    assert outcome.status == "Succeeded"

    with pytest.raises(UsageError, match=f"execution {outcome.execution_id} is Succeeded"):
        runner.retry(outcome.execution_id)
    assert len(lines(work / "counter")) == 1


def test_retrying_a_failed_execution_reruns_the_failed_step_on_the_current_inputs(runner, work):
    runner.store.put_bytes(f"{BUCKET}/data/input.csv", b"a\n")
    first = counting("First", f"{BUCKET}/data", f"{BUCKET}/first", work / "first")
    second = counting(
        "Second",
        {"Get": "Steps.First.ProcessingOutputConfig.Outputs['copy'].S3Output.S3Uri"},
        f"{BUCKET}/second",
        work / "second",
    )
    second["Arguments"]["ProcessingInputs"].append(
        s3_input("extra", f"{BUCKET}/extra/", "/opt/ml/processing/input/data/extra")
    )
    failed = run(runner, first, second)
    assert failed.status == "Failed"
    assert statuses(runner, failed) == {"First": "Succeeded", "Second": "Failed"}
    assert f"{BUCKET}/extra/" in failed.failure_reason

    runner.store.put_bytes(f"{BUCKET}/extra/more.csv", b"b\n")
    outcome = runner.retry(failed.execution_id)

    assert outcome.status == "Succeeded", outcome.failure_reason
    assert len(lines(work / "first")) == 1
    assert len(lines(work / "second")) == 1
    assert runner.store.get_bytes(f"{BUCKET}/second/extra/more.csv") == b"b\n"
    described = runner.records.describe_execution(failed.execution_id)
    assert described["PipelineExecutionStatus"] == "Succeeded"
    assert "FailureReason" not in described


def test_a_retry_starts_the_job_in_a_fresh_sandbox(runner):
    runner.store.put_bytes(f"{BUCKET}/data/good.csv", b"a\n")
    runner.store.put_bytes(f"{BUCKET}/data/bad.csv", b"b\n")
    step = inspect("Inspect", f"{BUCKET}/data", f"{BUCKET}/out")
    # The first run fetches data, then fails on the missing extra input.
    step["Arguments"]["ProcessingInputs"].append(
        s3_input("extra", f"{BUCKET}/extra/", "/opt/ml/processing/input/extra")
    )
    failed = run(runner, step)
    assert failed.status == "Failed"

    runner.store.path(f"{BUCKET}/data/bad.csv").unlink()
    runner.store.put_bytes(f"{BUCKET}/extra/more.csv", b"c\n")
    outcome = runner.retry(failed.execution_id)

    assert outcome.status == "Succeeded", outcome.failure_reason
    # The object deleted from the input prefix is not left over from the failed run.
    assert set(read_json(runner, f"{BUCKET}/out/seen-algo-1.json")["files"]) == {"good.csv"}


def test_a_step_types_progress_and_summary_text_come_from_its_executor_alone(runner, monkeypatch):
    """A new step type touches its executor class and the table only: the progress detail and the
    closing summary ask the executor, so neither the loop nor the view names step types."""
    from pipelines.local import executors

    class LoudFail(executors.FailExecutor):
        def detail(self, result):
            return "loud detail"

        def summary_lines(self, name, properties):
            return [f"  {name} says {properties['Said']}"]

        def run(self, run):
            return executors.StepResult({"Said": "hello"}, {})

    monkeypatch.setitem(executors.EXECUTORS, "Fail", LoudFail())
    details = []
    monkeypatch.setattr(
        runner.reporter, "step", lambda name, status, detail="", log_path=None: details.append(detail)
    )
    step = {"Name": "Shout", "Type": "Fail", "Arguments": {"ErrorMessage": "x"}}

    outcome = run(runner, step)

    assert "loud detail" in details
    assert summary(outcome, parse_definition(definition(step), "test"))[1:] == ["  Shout says hello"]


def test_every_registered_executor_is_an_executor_of_its_own_type():
    """Deriving from Executor, a step type gets every method the engine and the progress view call,
    including one added to the base class later."""
    from pipelines.local.executors import EXECUTORS, Executor

    for type_, executor in EXECUTORS.items():
        assert isinstance(executor, Executor), type_
        assert executor.type == type_
