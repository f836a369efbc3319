"""Training channels for steps/train.py: headerless label-first CSV, and the arguments naming them."""

from pathlib import Path

import numpy as np


def channel_csv(rows: int, seed: int, binary: bool = True) -> str:
    """Headerless label-first CSV with a learnable signal in the first of three features."""
    rng = np.random.RandomState(seed)
    features = rng.normal(size=(rows, 3))
    labels = (features[:, 0] + 0.3 * rng.normal(size=rows) > 0).astype(int) if binary else features[:, 0] * 4
    return "".join(f"{y},{a:.4f},{b:.4f},{c:.4f}\n" for y, (a, b, c) in zip(labels, features, strict=True))


def argv(root: Path, *hyperparameters) -> list:
    """steps/train.py's arguments for the channels under ``root``, the model written to ``root/model``."""
    paths = ["--train", root / "train", "--validation", root / "validation", "--model-dir", root / "model"]
    return [*paths, *hyperparameters]
