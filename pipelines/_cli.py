"""What the build CLIs share: argument parsing that fails in one line, JSON options, loading the
pipeline module, checking ``--kwargs`` against its factory, and turning errors into exit codes."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import io
import json
import logging
import os
import pkgutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pipelines
from pipelines.errors import TemplateError, UsageError, did_you_mean, unknown_names
from pipelines.local_home import STORAGE_ERRNOS, storage_error


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ``Error:`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"Error: {message} (see {self.prog} --help)\n")
        sys.exit(UsageError.exit_code)


def add_module_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--module-name",
        required=True,
        help="module that defines get_pipeline(**kwargs), e.g. pipelines.churn.pipeline",
    )
    parser.add_argument(
        "--kwargs",
        default="{}",
        help="JSON object of keyword arguments for get_pipeline, e.g. "
        '\'{"region": "us-east-1", "default_bucket": "my-bucket"}\'',
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the SageMaker SDK's own log")


def parse_json(text: str, option: str, expected: type | tuple[type, ...], example: str):
    """Parse a JSON command-line option, naming the option and an example when it is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{option} is not valid JSON ({err}); pass e.g. {example}") from None
    if not isinstance(value, expected):
        kinds = expected if isinstance(expected, tuple) else (expected,)
        wanted = " or ".join({dict: "object", list: "array"}.get(k, k.__name__) for k in kinds)
        raise UsageError(f"{option} must be a JSON {wanted}, got {type(value).__name__}; pass e.g. {example}")
    return value


def known_pipeline_modules() -> list[str]:
    """The ``pipelines.<model>.pipeline`` modules of this package, for 'did you mean' hints."""
    found = []
    for info in pkgutil.iter_modules(pipelines.__path__):
        if info.ispkg:
            try:
                spec = importlib.util.find_spec(f"pipelines.{info.name}.pipeline")
            except ModuleNotFoundError:
                spec = None
            if spec is not None:
                found.append(f"pipelines.{info.name}.pipeline")
    return sorted(found)


def load_pipeline_module(name: str) -> ModuleType:
    """Import the module named by --module-name; it must define ``get_pipeline``."""
    if not all(part.isidentifier() for part in name.split(".")):
        # import_module raises ValueError for '' and TypeError for a relative name such as '.churn'.
        known = known_pipeline_modules()
        raise UsageError(
            f"--module-name {name!r} is not an absolute module name (dotted, e.g. "
            f"pipelines.churn.pipeline).{did_you_mean(name, known)} Known pipeline modules: "
            f"{', '.join(known) or 'none'}"
        )
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        # Only a missing *requested* module is a usage error; a missing dependency inside it is a bug.
        if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
            raise
        known = known_pipeline_modules()
        raise UsageError(
            f"--module-name {name!r}: no such module.{did_you_mean(name, known)} "
            f"Known pipeline modules: {', '.join(known) or 'none'}"
        ) from None
    if not callable(getattr(module, "get_pipeline", None)):
        raise UsageError(f"--module-name {name!r} does not define get_pipeline(**kwargs)")
    return module


def check_kwargs(func: Callable, kwargs: dict, option: str = "--kwargs") -> None:
    """Reject keyword arguments the factory does not take, before anything runs."""
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    problem = unknown_names(f"{option} for {func.__module__}.{func.__name__}", "argument(s)", kwargs, params)
    if problem:
        raise UsageError(problem)


def parameter_options(items: Sequence[str]) -> dict:
    """``--parameters`` as given: one JSON object, or ``Name=Value`` pairs (values kept as text, to be
    read as the type the definition declares)."""
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        return parse_json(items[0], "--parameters", dict, "'{\"MaxTuningJobs\": 4}' or MaxTuningJobs=4")
    values: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise UsageError(
                f"--parameters: {item!r} is not Name=Value; pass e.g. MaxTuningJobs=4 AucThreshold=0.75"
            )
        if name in values:
            raise UsageError(f"--parameters: {name!r} is given twice")
        values[name] = value
    return values


def write_atomically(path: Path, text: str, option: str) -> None:
    """Write via a temporary file in the same directory: a reader never sees half a file."""
    if not path.parent.is_dir():
        raise UsageError(f"{option} {str(path)!r}: directory {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # mkstemp makes the file owner-only; a build artifact should have ordinary permissions.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def configure_logging(verbose: bool) -> None:
    """Our own progress lines on stderr; the SDK's chatter only with --verbose.

    The SDK sets levels on its own loggers, so a filter on the handler is what holds: it drops
    records from ``sagemaker.*`` below ERROR (e.g. every field it leaves out of a definition).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_sdk)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _quiet_sdk(record: logging.LogRecord) -> bool:
    from_sdk = record.name == "sagemaker" or record.name.startswith("sagemaker.")
    return not from_sdk or record.levelno >= logging.ERROR


#: What a CLI exits with when its reader went away: the status of a process killed by SIGPIPE.
BROKEN_PIPE_EXIT = 128 + 13


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a CLI body: a ``TemplateError`` becomes ``Error: ...`` on stderr and its exit code.

    Output piped into a reader that stops early (``| head``) ends the command quietly, as
    SIGPIPE ends ``cat``: no traceback, exit status 141.
    """
    try:
        try:
            status = main(argv)
        except SystemExit as stop:  # argparse after --help or a usage error
            if not isinstance(stop.code, int | None):
                raise
            status = stop.code or 0
        # Flushed here, not at interpreter exit, where a closed pipe can no longer be caught.
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        silence_stdout()
        return BROKEN_PIPE_EXIT
    except TemplateError as err:
        sys.stderr.write(f"Error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted\n")
        return 130
    except OSError as err:
        # A read-only file system or a full disk is the machine's state, not a bug: one line.
        problem = storage_error(err.filename, err) if err.errno in STORAGE_ERRNOS else None
        if problem is None:
            raise
        sys.stderr.write(f"Error: {problem}\n")
        return problem.exit_code


def silence_stdout() -> None:
    """Point standard output at the null device once its reader has gone, so that nothing
    written afterwards (and Python's own flush at exit) raises BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    # A stdout with no file descriptor (a test's capture) has nothing left to flush at exit.
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
