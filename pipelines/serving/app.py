"""The local endpoint's ASGI application: SageMaker's inference contract (``GET /ping``,
``POST /invocations``) over a handler module, called as the XGBoost container calls it
(:mod:`pipelines.serving.handler`): a status the handler returns is sent as it is, an exception is a 500.

A plain ASGI callable, no web framework: a single-row request spends its time in the handler, not in
routing. A 500's traceback goes to the server log, never to the client.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pipelines.serving.capture import CaptureWriter, writer_from_environment
from pipelines.serving.handler import Reply, ServingHandler, load_handler

log = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # SageMaker's real-time limit, when the handler names none
# Bodies up to this size are answered on the event loop (no thread hop: the single-row case stays fast);
# larger ones in a worker thread, so that /ping and small requests keep answering meanwhile.
INLINE_BYTES = 64 * 1024
# A refused body is still read (and dropped, never buffered) up to this much before the answer goes out:
# a client that sends its whole body before reading (urllib with "Connection: close") would otherwise get
# a connection reset instead of the 413, as closing a socket with unread data resets it.
DRAIN_BYTES = 64 * 1024 * 1024
MAX_MESSAGE_CHARS = 500

_TEXT = b"text/plain; charset=utf-8"
_ROUTES = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",)}


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
    ``$SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (unset: application/json, as in the container).
    Raises ModelLoadError naming the module or the model directory.
    """
    handler = load_handler(handler_module, model_dir, default_accept)
    return InferenceApp(handler, capture=writer_from_environment())


class InferenceApp:
    """The ASGI callable; build it with :func:`create_app`."""

    def __init__(self, handler: ServingHandler, capture: CaptureWriter | None = None):
        self.handler = handler
        self.capture = capture  # data capture, when the endpoint's environment asks for it
        module = handler.module
        self.max_payload = int(getattr(module, "MAX_PAYLOAD_BYTES", DEFAULT_MAX_PAYLOAD_BYTES))
        # Refused before the body is read when the handler declares what it takes; the handler itself
        # answers these types with the same 415, so the status is the container's.
        content_types = getattr(module, "CONTENT_TYPES", None)
        self.content_types = tuple(t.lower() for t in content_types) if content_types else None
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
            reply = await self._invoke(scope, receive)
        except RequestError as err:
            if err.drain:
                await _drain(receive)
            await _respond(send, err.status, _message_body(err.message), _TEXT, err.headers)
            return
        except _ClientGone:
            return
        if reply.status >= 400:
            log.info(
                "%s %s -> %d: %s",
                method,
                path,
                reply.status,
                _one_line(reply.body.decode("utf-8", "replace")),
            )
        await _respond(send, reply.status, reply.body, self._content_type_header(reply.content_type))

    async def _invoke(self, scope, receive) -> Reply:
        content_type = aws_content_type = accept = content_length = None
        expects_continue = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"contenttype":
                aws_content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value
            elif name == b"expect":
                expects_continue = value.lower() == b"100-continue"
        # The worker reads a "ContentType" header (used by some AWS services) before "Content-Type".
        content_type = aws_content_type or content_type
        # Refusals decided before the body is read; a client waiting for "100 Continue" never sends it.
        drain = not expects_continue
        if self.content_types is not None:
            media_type = (content_type or "application/json").split(";", 1)[0].strip().lower()
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
        if len(body) <= INLINE_BYTES:
            reply = self.handler.invoke(body, content_type, accept)
        else:
            invoke = self.handler.invoke
            reply = await asyncio.get_running_loop().run_in_executor(None, invoke, body, content_type, accept)
        if self.capture is not None and reply.status == 200:
            self.capture.record(body, content_type, reply.body, reply.content_type)
        return reply

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


def _message_body(message: str) -> bytes:
    return _one_line(message).encode("utf-8")
