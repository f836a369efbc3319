"""Run a local endpoint in the foreground:

    python -m pipelines.serving.server --model-dir DIR --port N [--host 127.0.0.1] [--handler-module M]

One uvicorn worker (httptools and uvloop when importable, no access log) serving :mod:`pipelines.serving.app`.
It listens on a loopback address only: the endpoint has no authentication, so by design nothing outside
this machine can reach it.
"""

from __future__ import annotations

import errno
import importlib.util
import ipaddress
import logging
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
        help="module with model_fn/input_fn/predict_fn/output_fn (default steps.inference)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    host = loopback_host(args.host)
    port = _port(args.port)
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
            http="httptools" if importlib.util.find_spec("httptools") else "auto",
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
