"""The definition and the step scripts agree: run the scripts with the definition's own container
arguments, local paths, hyperparameters and metric regexes (container paths mapped into a temp
directory), then resolve the gate's JsonGet path against the report the evaluate step wrote."""

import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from support import all_steps, container_metric

from steps import evaluate, preprocess, train

REPO = Path(__file__).resolve().parents[3]


class Sandbox:
    """Maps container paths (``/opt/ml/...``) to directories under one temp root; an argument
    joined from parameters takes their default values."""

    def __init__(self, root: Path, defaults: dict | None = None):
        self.root = root
        self.defaults = defaults or {}

    def path(self, container_path: str) -> Path:
        assert container_path.startswith("/opt/ml/"), container_path
        return self.root / container_path.lstrip("/")

    def place(self, source: Path, container_dir: str) -> None:
        target = self.path(container_dir)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)

    def args(self, arguments: list) -> list[str]:
        return [str(self.path(a)) if a.startswith("/opt/ml/") else a for a in map(self.value, arguments)]

    def value(self, argument) -> str:
        if isinstance(argument, dict):  # {"Std:Join": {"On": ..., "Values": [str | {"Get": "Parameters.X"}]}}
            join = argument["Std:Join"]
            parts = [
                self.defaults[v["Get"].removeprefix("Parameters.")] if isinstance(v, dict) else v
                for v in join["Values"]
            ]
            return join["On"].join(str(part) for part in parts)
        return argument


def processing_io(step: dict) -> tuple[dict, dict]:
    args = step["Arguments"]
    inputs = {i["InputName"]: i["S3Input"]["LocalPath"] for i in args["ProcessingInputs"]}
    outputs = {o["OutputName"]: o["S3Output"]["LocalPath"] for o in args["ProcessingOutputConfig"]["Outputs"]}
    return inputs, outputs


def json_get(document: dict, path: str):
    value = document
    for part in path.split("."):
        value = value[part]
    return value


def preprocess_as_wired(box: Sandbox, steps: dict) -> dict:
    """Profile, then Preprocess, on one instance: the raw data, the spec and SageMaker's resource
    config where the definition expects them, and Profile's output in the Preprocess input the
    definition feeds from it. Preprocess's output folders by name."""
    config = box.path("/opt/ml/config/resourceconfig.json")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))

    def run(name: str) -> tuple[dict, dict]:
        inputs, outputs = processing_io(steps[name])
        box.place(REPO / "data" / "churn" / "churn.csv", inputs["raw"])
        box.place(REPO / "pipelines" / "churn" / "dataset.json", inputs["spec"])
        return inputs, outputs

    _, profile_out = run("Profile")
    assert preprocess.main(box.args(container_arguments(steps["Profile"]))) == 0
    inputs, outputs = run("Preprocess")
    source = sources(steps["Preprocess"])["profiles"]
    assert source == {"Get": "Steps.Profile.ProcessingOutputConfig.Outputs['profile'].S3Output.S3Uri"}
    shutil.copytree(box.path(profile_out["profile"]), box.path(inputs["profiles"]))
    assert preprocess.main(box.args(container_arguments(steps["Preprocess"]))) == 0
    return outputs


def container_arguments(step: dict) -> list:
    return step["Arguments"]["AppSpecification"]["ContainerArguments"]


def sources(step: dict) -> dict:
    return {i["InputName"]: i["S3Input"]["S3Uri"] for i in step["Arguments"]["ProcessingInputs"]}


@pytest.fixture
def steps(churn_definition):
    return all_steps(churn_definition)


@pytest.fixture
def defaults(churn_definition):
    return {p["Name"]: p.get("DefaultValue") for p in churn_definition["Parameters"]}


def test_the_scripts_run_as_the_definition_wires_them(steps, defaults, tmp_path, monkeypatch, capsys):
    box = Sandbox(tmp_path, defaults)

    pre_out = preprocess_as_wired(box, steps)
    for name, local in pre_out.items():  # every declared output is produced where SageMaker collects it
        assert any(box.path(local).iterdir()), name

    # Train: channels are the Preprocess outputs the definition references; hyperparameters as the
    # training toolkit passes them (sagemaker_* are the toolkit's own).
    job = steps["Train"]["Arguments"]
    for channel in job["InputDataConfig"]:
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        if isinstance(uri, dict):
            output = re.search(r"Outputs\['(\w+)'\]", uri["Get"]).group(1)
            monkeypatch.setenv(f"SM_CHANNEL_{channel['ChannelName'].upper()}", str(box.path(pre_out[output])))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    hyperparameters = [
        arg
        for key, value in job["HyperParameters"].items()
        if not key.startswith("sagemaker_")
        for arg in (f"--{key}", value)
    ]
    capsys.readouterr()
    assert train.main([*hyperparameters, "--_tuning_objective_metric", "validation:auc"]) == 0
    log = capsys.readouterr().out
    # SageMaker reads the tuning objective with the container's own regex, as it would the built-in
    # algorithm's; the definition sends none of its own.
    assert "MetricDefinitions" not in job["AlgorithmSpecification"]
    objective = steps["Tune"]["Arguments"]["HyperParameterTuningJobConfig"][
        "HyperParameterTuningJobObjective"
    ]
    channel, _, metric = objective["MetricName"].partition(":")
    assert channel == "validation"
    values = container_metric(log, metric)
    assert values, objective["MetricName"]
    assert 0.5 < float(values[-1]) <= 1.0

    # Evaluate: the best model arrives as model.tar.gz in the model input; the test split as declared.
    ev_in, ev_out = processing_io(steps["Evaluate"])
    box.path(ev_in["model"]).mkdir(parents=True)
    with tarfile.open(box.path(ev_in["model"]) / "model.tar.gz", "w:gz") as tar:
        for file in (tmp_path / "model").iterdir():
            tar.add(file, arcname=file.name)
    shutil.copytree(box.path(pre_out["test"]), box.path(ev_in["test"]))
    assert (
        evaluate.main(box.args(steps["Evaluate"]["Arguments"]["AppSpecification"]["ContainerArguments"])) == 0
    )

    # The gate reads the property file from the evaluation output, at the path the Condition names.
    (report,) = steps["Evaluate"]["PropertyFiles"]
    document = json.loads((box.path(ev_out[report["OutputName"]]) / report["FilePath"]).read_text())
    (condition,) = steps["CheckAuc"]["Arguments"]["Conditions"]
    auc = json_get(document, condition["LeftValue"]["Std:JsonGet"]["Path"])
    assert isinstance(auc, float) and auc > 0.85


def test_every_tuning_trial_gets_hyperparameters_the_training_script_accepts(
    steps, defaults, tmp_path, monkeypatch
):
    # A misspelt range name or an out-of-range bound would fail every trial, hours in.
    box = Sandbox(tmp_path, defaults)
    pre_out = preprocess_as_wired(box, steps)
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(box.path(pre_out["train"])))
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(box.path(pre_out["validation"])))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))

    config = steps["Tune"]["Arguments"]
    static = {
        k: v
        for k, v in config["TrainingJobDefinition"]["StaticHyperParameters"].items()
        if not k.startswith("sagemaker_")
    }
    static["num_round"] = "5"  # the bounds are what is checked here, not the model
    ranges = [r for kind in config["HyperParameterTuningJobConfig"]["ParameterRanges"].values() for r in kind]
    objective = config["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    for bound in ("MinValue", "MaxValue"):
        trial = {**static, **{r["Name"]: r[bound] for r in ranges}}
        argv = [arg for key, value in trial.items() for arg in (f"--{key}", value)]
        assert train.main([*argv, "--_tuning_objective_metric", objective]) == 0, bound


def test_the_step_modules_agree_on_shared_names():
    assert evaluate.MODEL_FILENAME == train.MODEL_FILENAME
    assert set(evaluate.PROBLEM_TYPES) == set(preprocess.PROBLEM_TYPES) == set(evaluate.GATE_METRIC)
