"""A monitored stage with a version serving in it: a local registry whose version carries a
data-quality baseline made by Model Monitor's analyzer, and capture written as the endpoint does."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.local.store import ObjectStore
from pipelines.monitoring import profile, suggest_constraints
from pipelines.promotion.config import capture_prefix, load_promotion
from pipelines.promotion.flow import key
from pipelines.registry.local import LocalModelRegistry
from pipelines.serving.capture import capture_record, file_name, hour_folder
from pipelines.stage_monitor.checks import data_quality
from pipelines.stage_monitor.monitor import LocalMonitor

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monitoring" / "deploy"
GROUP = "ChurnModelPackageGroup"
FEATURES = 4
BASELINE = "s3://sagemaker-local/run-1/DataQualityBaseline/baseline"


def rows(count: int, seed: int = 0, scale: float = 1.0) -> list[str]:
    """Request rows: an integer flag and three numbers; ``scale`` shifts the last two."""
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame(
        {
            "flag": rng.randint(0, 2, count),
            "a": rng.normal(10, 2, count).round(3),
            "b": (rng.normal(100, 15, count) * scale).round(3),
            "c": (rng.exponential(5, count) + (scale - 1) * 10).round(3),
        }
    )
    return frame.to_csv(header=False, index=False, lineterminator="\n").splitlines()


class World:
    def __init__(self, home: Path, config_dir: Path):
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.store = ObjectStore(home / "s3")
        self.config = load_promotion(config_dir / "promotion.json", {})
        self.stage = self.config.stage("dev")
        self.registry = LocalModelRegistry(home / "registry.sqlite")
        self.registry.ensure_group(GROUP)
        self.retrainings: list[list[str]] = []
        self.lines: list[str] = []

    def register(
        self, baseline_rows: list[str], deployed: bool = True, model_data_url: str = "s3://b/model.tar.gz"
    ) -> int:
        table = pd.DataFrame([r.split(",") for r in baseline_rows]).astype(float)
        table.columns = [f"_c{i}" for i in range(FEATURES)]
        table["_c0"] = table["_c0"].astype(int)
        statistics = profile(table).statistics()
        self.store.put_bytes(f"{BASELINE}/statistics.json", json.dumps(statistics).encode())
        self.store.put_bytes(
            f"{BASELINE}/constraints.json", json.dumps(suggest_constraints(statistics)).encode()
        )
        metrics = {
            "ModelDataQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": f"{BASELINE}/statistics.json"},
                "Constraints": {"ContentType": "application/json", "S3Uri": f"{BASELINE}/constraints.json"},
            }
        }
        version = self.registry.register(
            GROUP, model_data_url=model_data_url, image_uri="image", model_metrics=metrics
        ).version
        if deployed:
            stamp = "2026-11-30T10:00:00+00:00"
            self.registry.update_metadata(GROUP, version, {key("dev", "deployed-at"): stamp})
        return version

    def capture(
        self, request_rows: list[str], when: float | None = None, content_type: str = "text/csv"
    ) -> Path:
        """One capture file of these requests, as the endpoint's writer files it."""
        when = time.time() if when is None else when
        lines = [
            json.dumps(capture_record(when, f"id-{i}", r.encode(), content_type, b"0.5\n", "text/csv"))
            for i, r in enumerate(request_rows)
        ]
        folder = self.store.path(capture_prefix(self.stage)) / hour_folder(when)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / file_name(when)
        path.write_text("\n".join(lines) + "\n")
        return path

    def monitor(self, **kwargs) -> LocalMonitor:
        return LocalMonitor(
            self.config,
            self.registry,
            self.home,
            data_quality,
            say=self.lines.append,
            start_retraining=lambda command, log: self.retrainings.append(command) or 0,
            **kwargs,
        )
