"""A test double of the XGBoost container's script-mode serving path, written from its source rather than
from pipelines/serving, so that the local endpoint can be checked against it.

sagemaker-containers 2.8.6.post2 (the version the XGBoost image pins in requirements.txt) cannot run
beside the project: it pins flask==1.1.1 (the project's environment has Flask 3 through moto), and on
Python 3.11 importing ``sagemaker_containers.beta.framework`` fails, first on its record_pb2 with current
protobuf, then on ``collections.Mapping`` (_mapping.py line 151, which the image's Dockerfile patches with
sed). Each piece below names the lines it mirrors, from aws/sagemaker-containers (commit 526dda9)
and aws/sagemaker-xgboost-container (commit cb8df91):

- serving.py ``_user_module_transformer`` (lines 116-134) and ``main`` (lines 140-155);
- _transformer.py ``Transformer.__init__`` (126-173), ``transform`` (187-207), ``_default_transform_fn``
  (209-238);
- _functions.py ``error_wrapper`` (68-85), _errors.py ``ClientError`` (9-10);
- _worker.py ``Request.content_type`` / ``accept`` / ``content`` (176-216), ``Response`` (118-139);
- _env.py ``ServingEnv`` default_accept (line 903), _content_types.py (UTF8_TYPES);
- Flask's view handling: a raised exception is a 500, a Response is sent as it is, a str is a text/html 200;
  werkzeug's ``get_content_type`` adds ``; charset=utf-8`` to text/* types; ``get_data(as_text=True)``
  decodes UTF-8 with ``errors="replace"``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


class ClientError(Exception):
    """_errors.py: the class every user function's exception is re-raised as."""


class UserError(Exception):
    """sagemaker_algorithm_toolkit.exceptions.UserError, raised by serving.py at start."""


def error_wrapper(fn, error_class):
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - mirrors the container
            raise error_class(e).with_traceback(sys.exc_info()[2]) from None

    return wrapper


def get_content_type(mimetype: str) -> str:
    charset_types = {
        "application/ecmascript",
        "application/javascript",
        "application/sql",
        "application/xml",
        "application/xml-dtd",
        "application/xml-external-parsed-entity",
    }
    if mimetype.startswith("text/") or mimetype in charset_types or mimetype.endswith("+xml"):
        return f"{mimetype}; charset=utf-8"
    return mimetype


class Response:
    """_worker.Response on werkzeug: default mimetype application/json."""

    def __init__(self, response=None, accept=None, status=200, headers=None, mimetype=None):
        self.status_code = status
        self.headers = {"Content-Type": get_content_type(mimetype or "application/json")}
        self._data = response.encode("utf-8") if isinstance(response, str) else bytes(response or b"")

    def get_data(self) -> bytes:
        return self._data


class Request:
    def __init__(self, body: bytes, headers: dict[str, str], default_accept: str):
        self._headers = {name.lower(): value for name, value in headers.items()}
        self._body = body
        self._default_accept = default_accept

    @property
    def content_type(self) -> str:
        return self._headers.get("contenttype") or self._headers.get("content-type") or "application/json"

    @property
    def accept(self) -> str:
        accept = self._headers.get("accept")
        if not accept or accept == "*/*":
            return self._default_accept
        return accept

    @property
    def content(self):
        as_text = self.content_type in ["application/json", "text/csv"]
        return self._body.decode("utf-8", "replace") if as_text else self._body


class Transformer:
    def __init__(self, model_fn=None, input_fn=None, predict_fn=None, output_fn=None, transform_fn=None):
        self._model = None
        self._model_fn = error_wrapper(model_fn, ClientError)
        if transform_fn and (input_fn or predict_fn or output_fn):
            raise ValueError(
                "Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn"
            )
        if transform_fn is not None:
            self._transform_fn = error_wrapper(transform_fn, ClientError)
        else:
            self._transform_fn = self._default_transform_fn
        self._input_fn = error_wrapper(input_fn, ClientError)
        self._predict_fn = error_wrapper(predict_fn, ClientError)
        self._output_fn = error_wrapper(output_fn, ClientError)

    def initialize(self, model_dir: str) -> None:
        self._model = self._model_fn(model_dir)

    def transform(self, request: Request):
        result = self._transform_fn(self._model, request.content, request.content_type, request.accept)
        if isinstance(result, tuple):
            return Response(response=result[0], mimetype=result[1])
        return result

    def _default_transform_fn(self, model, content, content_type, accept):
        # The UnsupportedFormatError branches (415/406) catch only that toolkit class, which a project
        # handler never raises; every other exception propagates.
        data = self._input_fn(content, content_type)
        prediction = self._predict_fn(data, model)
        return self._output_fn(prediction, accept)


def user_module_transformer(user_module) -> Transformer:
    model_fn = getattr(user_module, "model_fn", None)
    input_fn = getattr(user_module, "input_fn", None)
    predict_fn = getattr(user_module, "predict_fn", None)
    output_fn = getattr(user_module, "output_fn", None)
    transform_fn = getattr(user_module, "transform_fn", None)
    if transform_fn and (input_fn or predict_fn or output_fn):
        raise UserError("Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn")
    if transform_fn is not None:
        return Transformer(model_fn=model_fn, transform_fn=transform_fn)
    return Transformer(model_fn=model_fn, input_fn=input_fn, predict_fn=predict_fn, output_fn=output_fn)


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str


class Worker:
    """``POST /invocations`` of the container's Flask worker, called in-process."""

    def __init__(self, user_module, model_dir: str, default_accept: str = "application/json"):
        self.transformer = user_module_transformer(user_module)
        self.transformer.initialize(model_dir)
        self.default_accept = default_accept

    def invoke(self, body: bytes, headers: dict[str, str]) -> Answer:
        request = Request(body, headers, self.default_accept)
        try:
            result = self.transformer.transform(request)
        except Exception:  # noqa: BLE001 - Flask answers an exception from a view with a 500
            return Answer(500, b"Internal Server Error", "text/html; charset=utf-8")
        if isinstance(result, str):
            return Answer(200, result.encode("utf-8"), "text/html; charset=utf-8")
        return Answer(result.status_code, result.get_data(), result.headers["Content-Type"])
