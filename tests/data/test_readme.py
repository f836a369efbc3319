"""data/README.md describes the bundled tables as their dataset specs have them."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NUMBER_WORDS = {1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five"}


def test_the_churn_feature_counts_are_the_specs():
    features = json.loads((ROOT / "pipelines" / "churn" / "dataset.json").read_text())["features"]
    categorical = sum(kind == "categorical" for kind in features.values())
    numeric = sum(kind == "numeric" for kind in features.values())
    text = " ".join((ROOT / "data" / "README.md").read_text().split())
    assert f"{len(features)} features and the label" in text
    assert re.search(rf"{NUMBER_WORDS.get(categorical, categorical)} features are categorical", text)
    assert f"The other {NUMBER_WORDS.get(numeric, numeric)} features are numeric" in text
