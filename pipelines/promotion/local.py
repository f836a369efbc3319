"""The local deployer: each stage is a local "account" with its own endpoints under the local home.

A stage's endpoint is a process on 127.0.0.1 at the stage's ``local_port`` that speaks SageMaker's
inference contract (``pipelines.serving``), serving the model package's artifact from the local
object store through the project's handler in ``steps/inference.py``.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from pipelines.errors import NotFoundError, TemplateError
from pipelines.local.store import ObjectStore
from pipelines.local_home import OBJECT_STORE, local_home
from pipelines.promotion.config import StageConfig, capture_prefix
from pipelines.promotion.flow import Deployer, PromotionError
from pipelines.registry.base import ModelPackage
from pipelines.serving.capture import capture_environment

REQUEST_TIMEOUT_S = 60  # SageMaker's limit for one invocation


class LocalDeployer(Deployer):
    def __init__(self, home: Path | None = None):
        from pipelines.local_home import ACCOUNTS
        from pipelines.serving.endpoints import LocalEndpoints

        self.home = Path(home) if home is not None else local_home()
        self.store = ObjectStore(self.home / OBJECT_STORE)
        self._endpoints = LocalEndpoints
        self._accounts = self.home / ACCOUNTS
        self._namespaces: dict[str, object] = {}

    def endpoints(self, stage: StageConfig):
        """The endpoints of the stage's account (one namespace per account id and region)."""
        name = f"{stage.account_id}-{stage.region}"
        if name not in self._namespaces:
            self._namespaces[name] = self._endpoints(self._accounts / name)
        return self._namespaces[name]

    def deploy(self, stage: StageConfig, package: ModelPackage) -> str:
        artifact = self.store.path(package.model_data_url)
        if not artifact.is_file():
            raise PromotionError(
                f"{package.name}: its model {package.model_data_url} is not in the local store"
            )
        environment = dict(package.environment)
        # The endpoint captures into the local object store where SageMaker would write in S3.
        environment.update(
            capture_environment(self.store.path(capture_prefix(stage)), stage.endpoint.data_capture_percent)
        )
        try:
            endpoint = self.endpoints(stage).start(
                stage.endpoint.name, str(artifact), stage.endpoint.local_port, environment=environment
            )
        except TemplateError as err:
            raise PromotionError(f"{stage.name}: deploying {package.name} failed: {err}") from None
        return endpoint.url

    def undeploy(self, stage: StageConfig) -> None:
        try:
            self.endpoints(stage).stop(stage.endpoint.name)
        except NotFoundError:
            pass  # never deployed in this stage: nothing serves there

    def invoke(self, stage: StageConfig, body: bytes, content_type: str, accept: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{stage.endpoint.local_port}/invocations"
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": content_type, "Accept": accept}
        )
        try:
            # Always http://127.0.0.1: the URL is built here, never taken from input.
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (urllib.error.URLError, OSError) as err:
            return 0, f"no answer from {url}: {getattr(err, 'reason', err)}".encode()

    def read(self, uri: str) -> bytes:
        return self.store.get_bytes(uri)
