"""The local endpoint's ASGI application: SageMaker's inference contract (``GET /ping``,
``POST /invocations``) over a framework handler module (``model_fn``, ``input_fn``, ``predict_fn``,
``output_fn``).

A plain ASGI callable, no web framework: a single-row request spends its time in the handler, not in
routing. What it keeps from the serving containers: the model is loaded once, before the first request; the
response Content-Type is the one ``output_fn`` returns; a missing or ``*/*`` Accept becomes
``$SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` when that is set (else the handler picks its own default); a
handler error carrying a 4xx ``status_code`` is answered with that status and its message. Any other
exception is a 500 with a generic message; its traceback goes to the server log, never to the client.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from pathlib import Path
from types import ModuleType

from pipelines.errors import ConfigError
from pipelines.serving.capture import CaptureWriter, writer_from_environment

log = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker's real-time limit, when the handler names none
DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
HANDLERS = ("model_fn", "input_fn", "predict_fn", "output_fn")
# Bodies up to this size are answered on the event loop (no thread hop: the single-row case stays fast);
# larger ones in a worker thread, so that /ping and small requests keep answering meanwhile.
INLINE_BYTES = 64 * 1024
# A refused body is still read (and dropped, never buffered) up to this much before the answer goes out:
# a client that sends its whole body before reading (urllib with "Connection: close") would otherwise get
# a connection reset instead of the 413, as closing a socket with unread data resets it.
DRAIN_BYTES = 64 * 1024 * 1024
MAX_MESSAGE_CHARS = 500
INTERNAL_ERROR = "internal error while answering the request; the endpoint's log has the details"

_TEXT = b"text/plain; charset=utf-8"
_ROUTES = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",)}


class ModelLoadError(ConfigError):
    """The handler module or the model could not be loaded; the server cannot start."""


class RequestError(Exception):
    """A request the endpoint refuses before the handler sees it: ``status`` and a one-line message."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = (), drain: bool = False
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.drain = drain  # read and drop the rest of the body before answering


class _ClientGone(Exception):
    """The client disconnected before its body arrived: nobody is left to answer."""


def create_app(
    model_dir: Path, handler_module: str = "steps.inference", default_accept: str | None = None
) -> InferenceApp:
    """Import the handler, load the model once with its ``model_fn``, and return the ASGI application.

    ``default_accept`` replaces a missing or ``*/*`` Accept; ``None`` reads
    ``$SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (unset: the handler's own default applies).
    Raises ModelLoadError naming the module or the model directory.
    """
    try:
        handler = importlib.import_module(handler_module)
    except ModuleNotFoundError as err:
        raise ModelLoadError(f"handler module {handler_module!r} cannot be imported: {err}") from None
    missing = [name for name in HANDLERS if not callable(getattr(handler, name, None))]
    if missing:
        raise ModelLoadError(f"handler module {handler_module!r} does not define {', '.join(missing)}")
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {str(model_dir)!r} does not exist")
    try:
        model = handler.model_fn(str(model_dir))
    except Exception as err:  # noqa: BLE001 - any failure of a user's model_fn means "cannot start"
        log.exception("model_fn failed on %s", model_dir)
        raise ModelLoadError(
            f"{handler_module}.model_fn could not load the model in {model_dir}: {_first_line(err)}"
        ) from None
    if default_accept is None:
        default_accept = os.environ.get(DEFAULT_ACCEPT_ENV) or None
    return InferenceApp(handler, model, default_accept, capture=writer_from_environment())


class InferenceApp:
    """The ASGI callable; build it with :func:`create_app`."""

    def __init__(
        self,
        handler: ModuleType,
        model: object,
        default_accept: str | None = None,
        capture: CaptureWriter | None = None,
    ):
        self.handler = handler
        self.capture = capture
        self.model = model
        self.default_accept = default_accept
        self.max_payload = int(getattr(handler, "MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES))
        # Checked before the body is read, when the handler says what it takes; input_fn decides otherwise.
        content_types = getattr(handler, "CONTENT_TYPES", None)
        self.content_types = tuple(t.lower() for t in content_types) if content_types else None
        num_features = getattr(model, "num_features", None)
        self.num_features = num_features() if callable(num_features) else None
        self._input_fn = handler.input_fn
        self._predict_fn = handler.predict_fn
        self._output_fn = handler.output_fn
        self._content_type_headers: dict[str, bytes] = {}

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        # websocket: not part of the contract; returning without accepting refuses it.

    # ------------------------------------------------------------------------------------------ routing

    async def _http(self, scope, receive, send) -> None:
        path, method = scope["path"], scope["method"]
        try:
            allowed = _ROUTES.get(path)
            if allowed is None:
                raise RequestError(
                    404,
                    f"no such path {path!r}; the endpoint serves GET /ping and POST /invocations",
                    drain=not _expects_continue(scope["headers"]),
                )
            if method not in allowed:
                raise RequestError(
                    405,
                    f"{method} is not allowed on {path}; use {' or '.join(allowed)}",
                    ((b"allow", ", ".join(allowed).encode()),),
                    drain=not _expects_continue(scope["headers"]),
                )
            if path == "/ping":
                await _respond(send, 200, b"", _TEXT)
                return
            body, content_type = await self._invoke(scope, receive)
        except RequestError as err:
            if err.drain:
                await _drain(receive)
            await _respond(send, err.status, _message_body(err.message), _TEXT, err.headers)
            return
        except _ClientGone:
            return
        except Exception as err:  # noqa: BLE001 - the server boundary: a handler error becomes a status
            status = getattr(err, "status_code", None)
            if isinstance(status, int) and 400 <= status < 500:
                message = getattr(err, "message", None) or str(err) or type(err).__name__
                log.info("%s %s -> %d: %s", method, path, status, _one_line(message))
                await _respond(send, status, _message_body(message), _TEXT)
            else:
                log.exception("%s %s failed", method, path)
                await _respond(send, 500, INTERNAL_ERROR.encode(), _TEXT)
            return
        await _respond(send, 200, body, self._content_type_header(content_type))

    async def _invoke(self, scope, receive) -> tuple[bytes, str]:
        content_type = accept = content_length = None
        expects_continue = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value
            elif name == b"expect":
                expects_continue = value.lower() == b"100-continue"
        # Refusals decided before the body is read; a client waiting for "100 Continue" never sends it.
        drain = not expects_continue
        if self.content_types is not None:
            media_type = (content_type or "").split(";", 1)[0].strip().lower()
            if media_type not in self.content_types:
                supported = ", ".join(self.content_types)
                message = f"unsupported content type {content_type!r} (supported: {supported})"
                raise RequestError(415, message, drain=drain)
        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                message = f"Content-Length {content_length[:40]!r} is not a number"
                raise RequestError(400, message, drain=drain) from None
            if declared > self.max_payload:
                raise self._too_large(f"{declared} bytes", drain=drain)
        body = await self._read_body(receive)
        if self.default_accept and (accept is None or accept.strip() in ("", "*/*")):
            accept = self.default_accept
        if len(body) <= INLINE_BYTES:
            answer = self._infer(body, content_type, accept)
        else:
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(None, self._infer, body, content_type, accept)
        if self.capture is not None:
            self.capture.record(body, content_type, *answer)
        return answer

    async def _read_body(self, receive) -> bytes:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        body = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > self.max_payload:
                raise self._too_large(f"{len(body)} bytes")
            return body
        # A chunked (or split) body: counted as it arrives, refused as soon as it passes the limit.
        chunks, size = [body], len(body)
        while message.get("more_body", False):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_payload:
                raise self._too_large(f"more than {self.max_payload} bytes", drain=True)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, size: str, drain: bool = False) -> RequestError:
        return RequestError(413, f"payload of {size} is over the {self.max_payload}-byte limit", drain=drain)

    # ------------------------------------------------------------------------------------------ handler

    def _infer(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        data = self._input_fn(body, content_type)
        if self.num_features is not None:
            shape = getattr(data, "shape", None)
            if shape is not None and len(shape) == 2 and shape[1] != self.num_features:
                raise RequestError(400, f"each row must have {self.num_features} features, got {shape[1]}")
        prediction = self._predict_fn(data, self.model)
        result = self._output_fn(prediction, accept)
        # The toolkit's convention: (body, content_type), or a bare body sent as the Accept type.
        if isinstance(result, tuple):
            payload, response_type = result
        else:
            payload, response_type = result, accept or "application/octet-stream"
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return bytes(payload), response_type

    def _content_type_header(self, content_type: str) -> bytes:
        header = self._content_type_headers.get(content_type)
        if header is None:
            header = content_type.encode("latin-1")
            # Bounded: a handler that echoes the Accept header would otherwise let clients grow it.
            if len(self._content_type_headers) < 32:
                self._content_type_headers[content_type] = header
        return header


async def _respond(send, status: int, body: bytes, content_type: bytes, extra=()) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _expects_continue(headers) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in headers)


async def _drain(receive) -> None:
    """Read and drop the rest of a request body; only called before the body has been read to its end."""
    dropped = 0
    while dropped <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_MESSAGE_CHARS else line[: MAX_MESSAGE_CHARS - 3] + "..."


def _first_line(err: BaseException) -> str:
    # Native libraries append their stack traces (xgboost: "Stack trace: [bt] ..."): the traceback in the
    # log keeps them, the one-line error does not.
    lines = str(err).strip().splitlines()
    return _one_line(lines[0] if lines else type(err).__name__)


def _message_body(message: str) -> bytes:
    return _one_line(message).encode("utf-8")
