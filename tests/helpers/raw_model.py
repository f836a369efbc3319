"""A tiny model that takes raw records: an XGBoost booster over a small spec's encoded columns, with the
schema.json Preprocess would write for it beside the model, as train.py puts it in model.tar.gz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xgboost as xgb

from steps.encoding import DatasetSpec, Encoding, schema_document

SPEC = DatasetSpec(
    label="churn",
    problem_type="binary_classification",
    features=(("color", "categorical"), ("size", "numeric"), ("plan", "categorical")),
    classes=("no", "yes"),
)
ENCODING = Encoding(SPEC, (("color", ("blue", "red")), ("plan", ("no", "yes"))))
# ENCODING.columns: color=blue, color=red, size, plan=no, plan=yes


def write_raw_model(folder: Path) -> Path:
    """xgboost-model.json and schema.json in ``folder``; returns it."""
    rng = np.random.RandomState(0)
    rows = 300
    color = rng.randint(0, 3, rows)  # 2: a colour the model never saw (all zeros)
    plan = rng.randint(0, 2, rows)
    size = rng.normal(size=rows)
    features = np.column_stack([color == 0, color == 1, size, plan == 0, plan == 1]).astype("float64")
    labels = ((size + plan - (color == 0)) > 0.5).astype(float)
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "seed": 0, "tree_method": "hist"}
    booster = xgb.train(params, xgb.DMatrix(features, label=labels), num_boost_round=10)
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(folder / "xgboost-model.json"))
    unseen = {"validation": {"color": 0, "plan": 0}, "test": {"color": 0, "plan": 0}}
    schema = schema_document(
        SPEC, ENCODING, {"train": rows, "validation": 0, "test": 0}, unseen, 0.7, 0.15, 42
    )
    (folder / "schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    return folder
