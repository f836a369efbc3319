"""Run a local endpoint in the foreground:

    python -m pipelines.serving.server --model-dir DIR --port N [--host 127.0.0.1] [--handler-module M]
        [--header-timeout S]

One uvicorn worker (httptools, uvloop when importable, no access log) serving :mod:`pipelines.serving.app`.
It listens on a loopback address only: the endpoint has no authentication, so by design nothing outside
this machine can reach it.
"""

from __future__ import annotations

import errno
import importlib.util
import ipaddress
import logging
import math
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines._cli import ArgumentParser, run
from pipelines.errors import ConfigError, UsageError

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5  # in-flight requests get this long after SIGTERM
# One OpenMP thread per prediction unless the user says otherwise: a request is a row or a few, and a
# second OpenMP thread contending with the event loop for two cores put p99 at 8 connections in the
# hundreds of milliseconds (measured with wrk); with one thread it stays under 10 ms. Read by the OpenMP
# runtime when the handler first imports xgboost, so it is set before that import.
OMP_THREADS_DEFAULT = "1"
# A connection must finish a request's line and headers within this many seconds of opening (or of the
# request's first byte); uvicorn arms no timer before a first response, so a client that never finishes
# its headers would otherwise hold a connection for ever.
HEADER_TIMEOUT_S = 10.0


class PortInUseError(ConfigError):
    """The port is taken by another process; the message names it."""

    exit_code = 1


def loopback_host(host: str) -> str:
    """The address to bind for ``host``, which must be loopback: 127.0.0.0/8, ::1 or localhost."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise UsageError(
            f"--host {host!r} is not a loopback address: local endpoints listen on loopback only "
            "(127.0.0.0/8, ::1 or localhost) by design"
        )
    return str(address)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; a taken port is a PortInUseError naming it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a previous endpoint's connections in TIME_WAIT must not block a restart on its port.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise PortInUseError(f"port {port} on {host} is already in use by another process") from None
        raise ConfigError(f"cannot listen on {host} port {port}: {err.strerror}") from None
    return sock


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"--port {text!r} is not a number") from None
    if not 1 <= value <= 65535:
        raise UsageError(f"--port {value} is outside 1-65535")
    return value


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m pipelines.serving.server",
        description="Serve a model directory over SageMaker's inference contract on a loopback address.",
    )
    parser.add_argument("--model-dir", required=True, type=Path, help="the extracted model.tar.gz")
    parser.add_argument("--port", required=True, help="the port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument(
        "--handler-module",
        default="steps.inference",
        help="module with model_fn and transform_fn (or input_fn, predict_fn, output_fn); "
        "default steps.inference",
    )
    parser.add_argument(
        "--header-timeout",
        default=HEADER_TIMEOUT_S,
        type=float,
        help=f"seconds a request's line and headers may take to arrive (default {HEADER_TIMEOUT_S:g})",
    )
    return parser


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's httptools protocol with a deadline for each request's line and headers: on expiry the
    client gets a 408 and the connection is closed."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    message = b"request headers not received in time"
    answer = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(message), message)
    )

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._disarm_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                log.info("closed a connection whose request headers took over %g s", seconds)
                self.transport.write(answer)
                self.transport.close()

    return HeaderTimeoutProtocol


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    host = loopback_host(args.host)
    port = _port(args.port)
    if not 0 < args.header_timeout < math.inf:
        raise UsageError(f"--header-timeout {args.header_timeout:g} must be a number of seconds above 0")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    os.environ.setdefault("OMP_NUM_THREADS", OMP_THREADS_DEFAULT)
    # Bind first: a taken port fails at once, before seconds of model loading.
    sock = bind(host, port)
    try:
        import uvicorn

        from pipelines.serving.app import create_app

        app = create_app(args.model_dir, args.handler_module)
        config = uvicorn.Config(
            app,
            http=header_timeout_protocol(args.header_timeout),
            loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
            access_log=False,
            log_config=None,  # our basicConfig above; uvicorn's records propagate to it
            lifespan="on",
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            workers=1,
        )
        url_host = f"[{host}]" if ":" in host else host
        log.info("serving %s with %s at http://%s:%d", args.model_dir, args.handler_module, url_host, port)
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(run(main, None))
