"""Fixtures shared by the step tests: running a step's main, writing tiny files, tiny trained models."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from training_channels import channel_csv

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return self.err.splitlines()


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def run_main(capsys):
    """Call a step's main(argv) and return its exit code and what it printed."""

    def run(main, argv: list[str]) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def write():
    """Write text to a file, creating its folder; returns the path."""

    def write_file(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write_file


@pytest.fixture
def channels(tmp_path, write) -> Path:
    """A folder holding train/ and validation/ channels of a learnable binary problem, for steps/train.py."""
    write(tmp_path / "train" / "train.csv", channel_csv(300, seed=1))
    write(tmp_path / "validation" / "validation.csv", channel_csv(100, seed=2))
    return tmp_path


def _train_tiny(objective: str, n_features: int = 3) -> xgb.Booster:
    rng = np.random.RandomState(0)
    features = rng.normal(size=(200, n_features))
    signal = features[:, 0] - 0.5 * features[:, 1]
    labels = (signal > 0).astype(float) if objective.startswith("binary") else signal * 10 + 3
    params = {"objective": objective, "max_depth": 2, "eta": 0.3, "seed": 0, "tree_method": "hist"}
    return xgb.train(params, xgb.DMatrix(features, label=labels), num_boost_round=10)


@pytest.fixture(scope="session")
def tiny_binary_model(tmp_path_factory) -> Path:
    """A folder holding a 3-feature binary:logistic xgboost-model.json."""
    folder = tmp_path_factory.mktemp("binary-model")
    _train_tiny("binary:logistic").save_model(str(folder / "xgboost-model.json"))
    return folder


@pytest.fixture(scope="session")
def tiny_regression_model(tmp_path_factory) -> Path:
    """A folder holding a 3-feature reg:squarederror xgboost-model.json."""
    folder = tmp_path_factory.mktemp("regression-model")
    _train_tiny("reg:squarederror").save_model(str(folder / "xgboost-model.json"))
    return folder


@pytest.fixture
def make_model_archive():
    """Tar a model folder's files into <target>/model.tar.gz the way SageMaker does; returns the target."""

    def make(model_dir: Path, target: Path) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(target / "model.tar.gz", "w:gz") as archive:
            for path in sorted(model_dir.iterdir()):
                archive.add(path, arcname=path.name)
        return target

    return make
