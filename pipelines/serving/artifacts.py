"""Safe extraction of a model artifact (``model.tar.gz``) into the directory a local endpoint serves from.

An artifact is data, not code to trust: every member is checked before anything is written, and a member
that would land outside the destination (an absolute path, ``..``, a link pointing out), or that is not a
plain file, directory or inside link (a device, a FIFO), is refused with one error naming it. Python's
``tarfile`` ``data`` filter then applies the same rules again while extracting.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path

from pipelines.errors import ConfigError

MAX_EXTRACTED_BYTES = 4 * 1024**3  # a gzip bomb stops here, not when the disk is full


class ArtifactError(ConfigError):
    """The model archive is unreadable or holds a member that cannot be extracted safely."""

    exit_code = 1


def extract_model(archive_bytes: bytes, destination: Path, max_bytes: int = MAX_EXTRACTED_BYTES) -> Path:
    """Extract the tar archive ``archive_bytes`` (gzip or not) into ``destination``, which must not exist.

    The directory appears whole or not at all: the archive is extracted next to it, then renamed.
    Raises ArtifactError naming the first unsafe member, or saying why the archive cannot be read.
    """
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} exists; extract_model writes a new directory")
    try:
        archive = tarfile.open(fileobj=io.BytesIO(archive_bytes), mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ArtifactError(f"model archive is not a readable tar archive: {err}") from None
    with archive:
        try:
            members = archive.getmembers()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ArtifactError(f"model archive is truncated or corrupt: {err}") from None
        check_members(members, max_bytes)
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
        try:
            try:
                archive.extractall(staging, members=members, filter="data")
            except tarfile.FilterError as err:
                # Caught here only what the checks above let through, e.g. a link reached via another link.
                raise ArtifactError(_refusal(err.tarinfo.name, f"is unsafe ({err})")) from None
            except (tarfile.TarError, EOFError) as err:
                raise ArtifactError(f"model archive is truncated or corrupt: {err}") from None
            os.rename(staging, destination)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return destination


def check_members(members: list[tarfile.TarInfo], max_bytes: int = MAX_EXTRACTED_BYTES) -> None:
    """Refuse the first member that could write outside the destination or is not ordinary data."""
    total = 0
    for member in members:
        name = member.name
        if not name or "\x00" in name:
            raise ArtifactError(_refusal(name, "has an empty name or a NUL byte"))
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise ArtifactError(_refusal(name, "has an absolute path"))
        if ".." in name.replace("\\", "/").split("/"):
            raise ArtifactError(_refusal(name, "has a '..' component"))
        if member.isdev():
            kind = "a FIFO" if member.isfifo() else "a device file"
            raise ArtifactError(_refusal(name, f"is {kind}"))
        if member.issym():
            target = member.linkname
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise ArtifactError(_refusal(name, f"is a symlink to {target!r}, outside the archive"))
        elif member.islnk():
            target = posixpath.normpath(member.linkname)
            if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
                raise ArtifactError(
                    _refusal(name, f"is a hard link to {member.linkname!r}, outside the archive")
                )
        elif not (member.isfile() or member.isdir()):
            raise ArtifactError(_refusal(name, "is not a file, directory or link"))
        total += max(member.size, 0)
        if total > max_bytes:
            raise ArtifactError(
                f"model archive: members up to {name!r} add up to more than {max_bytes} bytes; refusing"
                " to extract"
            )


def _refusal(name: str, reason: str) -> str:
    return f"model archive: member {name!r} {reason}; refusing to extract it"
