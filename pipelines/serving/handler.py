"""A framework handler module called the way the SageMaker XGBoost container calls it in script mode, so
that a status seen locally (endpoint or batch transform) is the status the container would send.

The container and file each rule below is taken from are cited where it is applied.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pipelines.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
JSON = "application/json"
# sagemaker_containers/_content_types.py UTF8_TYPES: bodies of exactly these types reach the handler as text.
UTF8_TYPES = ("application/json", "text/csv")
STEP_FUNCTIONS = ("input_fn", "predict_fn", "output_fn")
INTERNAL_ERROR = "internal error while answering the request; the endpoint's log has the details"
# werkzeug.utils.get_content_type: the types a Response gets "; charset=utf-8" appended to.
_CHARSET_TYPES = frozenset(
    (
        "application/ecmascript",
        "application/javascript",
        "application/sql",
        "application/xml",
        "application/xml-dtd",
        "application/xml-external-parsed-entity",
    )
)


class ModelLoadError(ConfigError):
    """The handler module or the model could not be loaded; nothing can be served."""


@dataclass(frozen=True)
class Reply:
    """What the container's worker sends back: HTTP status, body, Content-Type header."""

    status: int
    body: bytes
    content_type: str


class ServingHandler:
    """A handler module with its loaded model; :meth:`invoke` answers one ``POST /invocations``."""

    def __init__(self, module: ModuleType, model: Any, default_accept: str | None = None):
        self.module = module
        self.model = model
        # sagemaker_containers/_env.py ServingEnv.default_accept: the variable, else application/json.
        self.default_accept = default_accept or os.environ.get(DEFAULT_ACCEPT_ENV) or JSON
        self._transform = _transform_of(module)

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Reply:
        """Answer one request as the container does; an exception from the handler is a 500, logged."""
        # sagemaker_containers/_worker.py Request.content_type / .accept / .content.
        content_type = content_type or JSON
        if not accept or accept == "*/*":
            accept = self.default_accept
        content = body.decode("utf-8", "replace") if content_type in UTF8_TYPES else body
        try:
            return to_reply(self._transform(self.model, content, content_type, accept))
        except Exception:  # noqa: BLE001 - the container's worker answers any handler error with a 500
            log.exception("the handler failed on a %s request", content_type)
            return Reply(500, INTERNAL_ERROR.encode(), "text/plain; charset=utf-8")


def load_handler(
    module_name: str, model_dir: Path, default_accept: str | None = None, module: ModuleType | None = None
) -> ServingHandler:
    """Import ``module_name`` (or take ``module``), load the model with its ``model_fn``; ModelLoadError
    names the module or the model directory when that fails."""
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise ModelLoadError(f"handler module {module_name!r} cannot be imported: {err}") from None
    if not callable(getattr(module, "model_fn", None)):
        # The container's default model_fn raises NotImplementedError for the XGBoost framework.
        raise ModelLoadError(f"handler module {module_name!r} does not define model_fn")
    _transform_of(module, module_name)  # refuses what the container refuses, before the model loads
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {str(model_dir)!r} does not exist")
    try:
        model = module.model_fn(str(model_dir))
    except Exception as err:  # noqa: BLE001 - any failure of a user's model_fn means "cannot start"
        log.exception("model_fn failed on %s", model_dir)
        raise ModelLoadError(
            f"{module_name}.model_fn could not load the model in {model_dir}: {first_line(err)}"
        ) from None
    return ServingHandler(module, model, default_accept)


def _transform_of(module: ModuleType, name: str | None = None) -> Callable:
    """The transform the container builds from the module (sagemaker_xgboost_container/serving.py
    _user_module_transformer and sagemaker_containers/_transformer.py _default_transform_fn)."""
    name = name or module.__name__
    transform_fn = getattr(module, "transform_fn", None)
    defined = [f for f in STEP_FUNCTIONS if getattr(module, f, None) is not None]
    if transform_fn is not None and defined:
        # The container's own wording (serving.py): it does not start.
        raise ModelLoadError(
            f"handler module {name!r}: Cannot use transform_fn implementation with input_fn, predict_fn, "
            f"and/or output_fn (it defines {', '.join(defined)}); the XGBoost container refuses to start"
        )
    if transform_fn is not None:
        return transform_fn
    missing = [f for f in STEP_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise ModelLoadError(
            f"handler module {name!r} defines neither transform_fn nor {', '.join(missing)}: the container "
            "would use its default encoders there, which the local runner does not reproduce; define them"
        )
    input_fn, predict_fn, output_fn = (getattr(module, f) for f in STEP_FUNCTIONS)

    def default_transform(model, content, content_type, accept):
        return output_fn(predict_fn(input_fn(content, content_type), model), accept)

    return default_transform


def to_reply(result: Any) -> Reply:
    """The transform's return value as the container's worker sends it: a ``(body, mimetype)`` tuple as a
    200 (_transformer.py Transformer.transform), a Response as it is, a bare str or bytes as Flask sends
    a view's return value (200, text/html). Anything else is an error of the handler: a TypeError."""
    if isinstance(result, tuple):
        body, mimetype = result[0], result[1]
        return Reply(200, _bytes(body), content_type_for(str(mimetype)))
    status = getattr(result, "status_code", None)
    if isinstance(status, int) and callable(getattr(result, "get_data", None)):
        content_type = result.headers.get("Content-Type") or "text/html; charset=utf-8"
        return Reply(status, _bytes(result.get_data()), content_type)
    if isinstance(result, (str, bytes, bytearray)):
        return Reply(200, _bytes(result), "text/html; charset=utf-8")
    if isinstance(result, (dict, list)):  # Flask jsonifies these
        return Reply(200, json.dumps(result).encode(), JSON)
    raise TypeError(f"the handler returned a {type(result).__name__}, which the container cannot send")


def content_type_for(mimetype: str) -> str:
    """The Content-Type of a werkzeug Response built with ``mimetype`` (werkzeug.utils.get_content_type)."""
    if mimetype.startswith("text/") or mimetype in _CHARSET_TYPES or mimetype.endswith("+xml"):
        return f"{mimetype}; charset=utf-8"
    return mimetype


def _bytes(body: Any) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"the handler returned a {type(body).__name__} body; the container sends str or bytes")


def first_line(err: BaseException) -> str:
    # Native libraries append their stack traces (xgboost: "Stack trace: [bt] ..."): the traceback in the
    # log keeps them, the one-line error does not.
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
