"""Packaging for the SageMaker model-build template: the pipeline package and the step code."""

import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "pipelines" / "__version__.py").read_text()).group(1)

# The SDK is pinned exactly: its v3 module layout moves between releases and every
# SDK call lives in pipelines/<model>/builders.py, so an upgrade is one deliberate change.
REQUIRED = [
    "sagemaker==3.27.0",
    # Makes a SageMaker MLflow tracking server's ARN an MLflow tracking URI (docs/tracking.md);
    # sagemaker-train requires it too, but the tracking code relies on it directly.
    "sagemaker-mlflow>=0.5,<1",
    "boto3>=1.40",
    "pandas>=2.2",
    "numpy>=1.26",
    "scikit-learn>=1.5",
    # Matches the SageMaker XGBoost framework image (3.2-0) that trains and serves the model.
    "xgboost>=3.2,<3.3",
    # The local runner's Bayesian and random tuning strategies.
    "optuna>=4.5,<6",
    # The local endpoint (pipelines/serving): one uvicorn worker on httptools and uvloop.
    "uvicorn>=0.30",
    "httptools>=0.6",
    "uvloop>=0.19",
    # Bias metrics of the local ClarifyCheck step: the library SageMaker Clarify computes them with.
    "smclarify==0.5",
]

EXTRAS = {
    "dev": [
        "pytest>=8",
        # The suite runs on every CPU (-n auto in pyproject.toml), each module on one worker so that
        # its module-scoped pipeline runs are made once.
        "pytest-xdist>=3.8,<4",
        # Tests run in a new random order on every run (the seed is printed; --randomly-seed=N
        # repeats one, -p no:randomly turns it off): a test that needs its neighbours fails in CI.
        "pytest-randomly>=3.15,<6",
        # cloudformation: tests/seed_code creates the project template's stack in moto.
        "moto[cloudformation,s3,sagemaker,sts,iam]>=5.1,<6",
        # A minor range: a new ruff minor adds rules and changes formatting, which would fail branch
        # builds that did not change; raise it deliberately, with the fixes it asks for.
        "ruff>=0.17,<0.18",
        "pyyaml>=6",
        # Lints the project template (seed_code/) in .ci/run; checkov runs in its own venv there.
        "cfn-lint>=1.20,<2",
        # Reads the browser tests' screenshots (tests/pipelines/report/test_browser.py).
        "pillow>=10",
    ],
}

# The project template and its packaging (seed_code/) live in this repository only: the projects it
# seeds get neither, so their setup.py, the same file, offers no command for it.
SEED_CODE = (ROOT / "seed_code" / "package.py").exists()

setup(
    name="sagemaker-mlops-template",
    version=VERSION,
    description="SageMaker Pipelines template: tuned XGBoost, evaluation gate, Model Registry",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8")
    if (ROOT / "README.md").exists()
    else "",
    long_description_content_type="text/markdown",
    license="MIT-0",
    python_requires=">=3.11",
    packages=find_packages(include=["pipelines", "pipelines.*", "steps", "seed_code"]),
    package_data={"pipelines": ["*/dataset.json", "report/*.json"], "seed_code": ["*.yaml"]},
    install_requires=REQUIRED,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "get-pipeline-definition=pipelines.get_pipeline_definition:main",
            "run-pipeline=pipelines.run_pipeline:main",
            "model-registry=pipelines.registry.cli:main",
            "local-pipeline=pipelines.local.cli:main",
            "promote=pipelines.promotion.cli:main",
            "local-endpoint=pipelines.serving.cli:main",
            "execution-report=pipelines.report.cli:main",
            "monitor=pipelines.stage_monitor.cli:main",
        ]
        + (["package-template=seed_code.package:main"] if SEED_CODE else []),
    },
)
