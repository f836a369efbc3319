"""The one directory where everything the template keeps locally lives (the local registry, ...)."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.errors import ConfigError

ENV_VAR = "MLOPS_LOCAL_HOME"
DEFAULT = Path("~/.local/share/sagemaker-mlops-template")


def local_home() -> Path:
    """``$MLOPS_LOCAL_HOME`` if set (and not empty), else ``~/.local/share/sagemaker-mlops-template``.

    The directory is created on first use with mode 0o700: it holds registry records that only
    their owner should change. A path that cannot be a directory is a ``ConfigError`` naming it.
    """
    configured = os.environ.get(ENV_VAR)
    home = Path(configured or DEFAULT).expanduser()
    source = f"${ENV_VAR}" if configured else "the default local home"
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(
            f"{source} {str(home)!r} exists and is not a directory; set {ENV_VAR} to a directory"
        ) from None
    except PermissionError:
        raise ConfigError(
            f"{source} {str(home)!r} cannot be created (permission denied); set {ENV_VAR} to a "
            "directory you can write"
        ) from None
    return home
