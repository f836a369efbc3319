"""SageMaker's built-in XGBoost algorithm (a training job with no entry point), played locally.

Follows the algorithm's documented contract: ``train`` (required) and ``validation`` channels of
CSV with the label in the first column and no header (``text/csv``) or libsvm; hyperparameters
from ``hyperparameters.json`` (``num_round`` required, the rest passed to XGBoost); the model saved
as ``xgboost-model`` in the model directory; one ``[i]<TAB>train-<m>:<v><TAB>validation-<m>:<v>``
log line per round, which the runner turns into ``train:<m>`` / ``validation:<m>`` metrics.
Run as ``python -m pipelines.local.builtin_xgboost`` inside a training sandbox.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

#: Hyperparameters the algorithm reads itself rather than passing to XGBoost.
_OWN = ("num_round", "early_stopping_rounds", "csv_weights")


class AlgorithmError(Exception):
    pass


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_hyperparameters(path: Path) -> tuple[dict, int, int | None]:
    raw = json.loads(path.read_text())
    if "num_round" not in raw:
        raise AlgorithmError("hyperparameter num_round is required")
    try:
        num_round = int(raw["num_round"])
        early = int(raw["early_stopping_rounds"]) if raw.get("early_stopping_rounds") else None
    except ValueError as err:
        raise AlgorithmError(f"num_round and early_stopping_rounds must be whole numbers: {err}") from None
    if num_round < 1:
        raise AlgorithmError(f"num_round must be at least 1, got {num_round}")
    params = {
        key: _number(value) for key, value in raw.items() if key not in _OWN and not key.startswith("_")
    }
    params = {key: value for key, value in params.items() if not key.startswith("sagemaker_")}
    return params, num_round, early


def load_channel(directory: Path, content_type: str):
    import numpy as np
    import xgboost as xgb

    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise AlgorithmError(f"channel {directory.name!r} has no files")
    if "libsvm" in content_type:
        if len(files) > 1:
            raise AlgorithmError(f"channel {directory.name!r}: one libsvm file expected, found {len(files)}")
        return xgb.DMatrix(f"{files[0]}?format=libsvm")
    parts = []
    for file in files:
        try:
            data = np.loadtxt(file, delimiter=",", ndmin=2)
        except ValueError as err:
            raise AlgorithmError(
                f"{file.name}: not numeric CSV with the label first and no header: {err}"
            ) from None
        if data.shape[0] == 0:
            raise AlgorithmError(f"{file.name}: empty")
        parts.append(data)
    widths = {part.shape[1] for part in parts}
    if len(widths) > 1:
        raise AlgorithmError(
            f"channel {directory.name!r}: files have different column counts {sorted(widths)}"
        )
    data = np.concatenate(parts)
    return xgb.DMatrix(data[:, 1:], label=data[:, 0])


def main() -> int:
    import xgboost as xgb

    input_dir = Path(os.environ.get("SM_INPUT_DIR", "/opt/ml/input"))
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    failure = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure"
    try:
        params, num_round, early = read_hyperparameters(input_dir / "config/hyperparameters.json")
        channels = json.loads((input_dir / "config/inputdataconfig.json").read_text())
        if "train" not in channels:
            raise AlgorithmError("the train channel is required")
        params.setdefault("nthread", int(os.environ.get("SM_NUM_CPUS", "1")))
        evals = []
        for name in ("train", "validation"):
            if name in channels:
                content_type = channels[name].get("ContentType") or "text/csv"
                evals.append((load_channel(input_dir / "data" / name, content_type), name))
        if early is not None and len(evals) < 2:
            raise AlgorithmError("early_stopping_rounds needs a validation channel")
        booster = xgb.train(
            params,
            evals[0][0],
            num_boost_round=num_round,
            evals=evals,
            early_stopping_rounds=early,
            verbose_eval=True,
        )
    except (AlgorithmError, xgb.core.XGBoostError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    model_dir.mkdir(parents=True, exist_ok=True)
    # XGBoost's own format (UBJSON), never pickle: the name is what the algorithm's users load.
    booster.save_model(str(model_dir / "xgboost-model.ubj"))
    os.replace(model_dir / "xgboost-model.ubj", model_dir / "xgboost-model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
