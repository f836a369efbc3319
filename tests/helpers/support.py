"""Constants and helpers shared by tests (``tests/helpers`` is on pytest's ``pythonpath``)."""

REGION = "eu-west-1"
ACCOUNT = "111122223333"
BUCKET = "team-mlops-artifacts"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerPipelineRole"
MODULE = "pipelines.churn.pipeline"

# The XGBoost container's own metric regex, copied from aws/sagemaker-xgboost-container
# src/sagemaker_xgboost_container/algorithm_mode/metrics.py (``initialize``, one per metric name of
# constants/xgb_constants.py). SageMaker applies it, not a regex of ours: it refuses custom
# MetricDefinitions for that image. ``#011`` is how CloudWatch shows a tab.
XGBOOST_CONTAINER_METRIC_REGEX = ".*\\[[0-9]+\\].*#011validation-{}:(\\S+)"


def container_metric(log: str, metric: str) -> list[str]:
    """Every value of ``validation:<metric>`` the container's regex takes from a training log, read
    as CloudWatch holds it (tabs as #011)."""
    import re

    pattern = re.compile(XGBOOST_CONTAINER_METRIC_REGEX.format(metric))
    return [m.group(1) for line in log.replace("\t", "#011").splitlines() if (m := pattern.match(line))]


def all_steps(definition: dict) -> dict:
    """Every step by name, including those nested in a Condition's branches."""
    found = {}

    def visit(steps):
        for step in steps:
            found[step["Name"]] = step
            if step["Type"] == "Condition":
                visit(step["Arguments"].get("IfSteps", []))
                visit(step["Arguments"].get("ElseSteps", []))

    visit(definition["Steps"])
    return found


def invoke(main, argv, capsys):
    """Run a CLI ``main`` like the shell would: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on at the time of asking."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
