"""The one directory where everything the template keeps locally lives (the local registry, ...)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from pipelines.errors import ConfigError, StorageError

ENV_VAR = "MLOPS_LOCAL_HOME"
DEFAULT = Path("~/.local/share/sagemaker-mlops-template")

#: The account and region that local ARNs carry (the registry's, the runner's, the endpoints').
LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "local"

# The local home's layout, each part named once.
OBJECT_STORE = "s3"  # s3://bucket/key is <home>/s3/bucket/key
EXECUTIONS_DB = "executions/executions.sqlite"
REGISTRY_DB = "registry.sqlite"
JOBS = "jobs"
ENDPOINTS = "endpoints"
ACCOUNTS = "accounts"  # one folder per stage account: <home>/accounts/<account>-<region>/
MLFLOW = "mlflow"
MONITORING = "monitoring"
MODEL_CARDS = "model-cards"


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
    except OSError as err:
        raise storage_error(home, err) or err from None
    return home


#: The errors of a write that say the storage, not the program, is at fault.
STORAGE_ERRNOS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
}


def storage_error(path: str | os.PathLike | None, err: Exception) -> StorageError | None:
    """One line naming ``path`` and the real cause of a failed write, or None when storage is not
    at fault. SQLite reports a full disk as "disk I/O error", so the file system is asked too."""
    cause = STORAGE_ERRNOS.get(getattr(err, "errno", None)) or _file_system_cause(path)
    if cause is None:
        return None
    fix = (
        "free some space and run it again"
        if cause != "read-only file system"
        else f"set {ENV_VAR} to a directory on a writable file system"
    )
    return StorageError(f"cannot write {path}: {cause}; {fix}")


def _file_system_cause(path: str | os.PathLike | None) -> str | None:
    if path is None:
        return None
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        stats = os.statvfs(probe)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return "read-only file system"
    if stats.f_bavail == 0:
        return "no space left on device"
    return None
