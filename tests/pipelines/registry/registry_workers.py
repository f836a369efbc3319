"""The body of each process in the concurrent-registration test, in a module of its own so that
"spawn" children can import it (pytest's importlib mode gives test modules no importable name)."""

import time

from pipelines.registry.local import LocalModelRegistry


def register_many(path: str, group: str, count: int, worker: str, start) -> None:
    registry = LocalModelRegistry(path)
    registry.ensure_group(group)
    start.wait(timeout=60)  # all processes register at the same moment
    for i in range(count):
        registry.register(
            group,
            model_data_url=f"s3://b/{worker}/{i}/model.tar.gz",
            image_uri="xgboost:3.2-0",
            customer_metadata={"worker": worker},
            by=worker,
        )
        # Without a pause the process holding the lock re-takes it while the others back off,
        # and the registrations barely interleave.
        time.sleep(0.003)
