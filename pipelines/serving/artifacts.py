"""Safe extraction of a model artifact (``model.tar.gz``) into the directory a local endpoint serves from.

An artifact is data, not code to trust: ``steps.tar_guard``'s rules (the same the evaluation step and
the local runner follow) check every member before anything is written, and the directory appears
whole or not at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pipelines.errors import ConfigError
from steps.tar_guard import MAX_BYTES, UnsafeArchiveError, check_tar, extract_tar

MAX_EXTRACTED_BYTES = MAX_BYTES


class ArtifactError(ConfigError):
    """The model archive is unreadable or holds a member that cannot be extracted safely."""

    exit_code = 1


def extract_model(archive_bytes: bytes, destination: Path, max_bytes: int = MAX_EXTRACTED_BYTES) -> Path:
    """Extract the tar archive ``archive_bytes`` (gzip or not) into ``destination``, which must not exist.

    The archive is extracted next to it, then renamed. Raises ArtifactError naming the first unsafe
    member, or saying why the archive cannot be read.
    """
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} exists; extract_model writes a new directory")
    try:
        check_tar(archive_bytes, "model archive", max_bytes=max_bytes)  # before any folder is made
    except UnsafeArchiveError as err:
        raise ArtifactError(str(err)) from None
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
    try:
        try:
            extract_tar(archive_bytes, staging, "model archive", max_bytes=max_bytes)
        except UnsafeArchiveError as err:
            raise ArtifactError(str(err)) from None
        os.rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination
