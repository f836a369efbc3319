"""One set of rules for unpacking a tar archive that is data, not trusted code (a model.tar.gz, a
sourcedir.tar.gz): the evaluation step in its container, the local runner and the local endpoint.

Every member is checked before anything is written. Refused: absolute names, ``..``, devices and
FIFOs, links pointing outside, members under a symlink, and archives past a size or member cap
(a decompression bomb stops at the cap, not when the disk is full). It relies on no ``tarfile``
extraction filter, which the Pythons of older SageMaker images lack.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import tarfile
from pathlib import Path, PurePosixPath

MAX_BYTES = 4 * 1024**3
MAX_MEMBERS = 100_000


class UnsafeArchiveError(Exception):
    """The archive cannot be read, or a member cannot be extracted safely; the message is one line
    naming the archive and the member."""


def extract_tar(
    source: bytes | Path,
    destination: Path,
    what: str = "archive",
    max_bytes: int = MAX_BYTES,
    max_members: int = MAX_MEMBERS,
) -> list[str]:
    """Extract the tar archive ``source`` (bytes or a file; gzip or not) into ``destination``.

    Returns the member names. ``what`` names the archive in errors. Raises UnsafeArchiveError
    before writing anything when a member breaks a rule.
    """
    with _open(source, what) as archive:
        members = read_members(archive, what, max_bytes, max_members)
        _extract(archive, members, Path(destination), what)
    return [m.name for m in members]


def check_tar(
    source: bytes | Path,
    what: str = "archive",
    max_bytes: int = MAX_BYTES,
    max_members: int = MAX_MEMBERS,
) -> list[str]:
    """The member names, after the checks ``extract_tar`` makes; nothing is written."""
    with _open(source, what) as archive:
        return [m.name for m in read_members(archive, what, max_bytes, max_members)]


def _open(source: bytes | Path, what: str) -> tarfile.TarFile:
    try:
        if isinstance(source, bytes):
            return tarfile.open(fileobj=io.BytesIO(source), mode="r:*")
        return tarfile.open(str(source), mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UnsafeArchiveError(f"{what} is not a readable tar archive: {_first_line(err)}") from None


def read_members(
    archive: tarfile.TarFile, what: str, max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS
) -> list[tarfile.TarInfo]:
    """Every member, read one at a time so a flood of them stops at ``max_members``, each checked."""
    members: list[tarfile.TarInfo] = []
    regular = set()
    symlinks = set()
    total = 0
    try:
        while True:
            member = archive.next()
            if member is None:
                break
            if len(members) >= max_members:
                raise UnsafeArchiveError(
                    f"{what} has more than {max_members} members; refusing to extract it"
                )
            _check(member, what, regular)
            total += max(member.size, 0) if member.isfile() else 0
            if total > max_bytes:
                raise UnsafeArchiveError(
                    f"{what}: members up to {member.name!r} add up to more than {max_bytes} bytes;"
                    " refusing to extract it"
                )
            if member.isfile():
                regular.add(_normal(member.name))
            elif member.issym():
                symlinks.add(_normal(member.name))
            members.append(member)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UnsafeArchiveError(f"{what} is truncated or corrupt: {_first_line(err)}") from None
    # A path through a symlink can land anywhere the link (or a chain of links) points.
    for member in members:
        parents = PurePosixPath(_normal(member.name)).parents
        under = next((str(p) for p in parents if str(p) in symlinks), None)
        if under is not None:
            raise UnsafeArchiveError(_refusal(what, member.name, f"lies under the symlink {under!r}"))
    return members


def _check(member: tarfile.TarInfo, what: str, regular: set) -> None:
    name = member.name
    if not name or "\x00" in name:
        raise UnsafeArchiveError(_refusal(what, name, "has an empty name or a NUL byte"))
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(_refusal(what, name, "has an absolute path"))
    if ".." in name.replace("\\", "/").split("/"):
        raise UnsafeArchiveError(_refusal(what, name, "has a '..' component"))
    if member.isdev():
        kind = "a FIFO" if member.isfifo() else "a device file"
        raise UnsafeArchiveError(_refusal(what, name, f"is {kind}"))
    if member.issym():
        target = member.linkname
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(_refusal(what, name, f"is a symlink to {target!r}, outside the archive"))
    elif member.islnk():
        target = posixpath.normpath(member.linkname.replace("\\", "/"))
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise UnsafeArchiveError(
                _refusal(what, name, f"is a hard link to {member.linkname!r}, outside the archive")
            )
        if _normal(member.linkname) not in regular:
            raise UnsafeArchiveError(
                _refusal(what, name, f"is a hard link to {member.linkname!r}, not a file before it")
            )
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(_refusal(what, name, "is not a file, directory or link"))


def _extract(archive: tarfile.TarFile, members: list[tarfile.TarInfo], destination: Path, what: str) -> None:
    # Files and folders first, links last: no write ever goes through a link made from the archive.
    destination.mkdir(parents=True, exist_ok=True)
    try:
        for member in members:
            target = destination.joinpath(*PurePosixPath(_normal(member.name)).parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                with source, open(target, "wb") as handle:
                    shutil.copyfileobj(source, handle, 1 << 20)
        for member in members:
            target = destination.joinpath(*PurePosixPath(_normal(member.name)).parts)
            if member.islnk():
                original = destination.joinpath(*PurePosixPath(_normal(member.linkname)).parts)
                shutil.copyfile(original, target)
            elif member.issym():
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_file() and not target.is_symlink():
                    target.unlink()  # a later member of the same name replaces it, as tar does
                os.symlink(member.linkname, target)
    except (tarfile.TarError, EOFError) as err:
        raise UnsafeArchiveError(f"{what} is truncated or corrupt: {_first_line(err)}") from None
    except OSError as err:
        raise UnsafeArchiveError(
            f"{what}: cannot extract it into {destination}: {_first_line(err)}"
        ) from None


def _normal(name: str) -> str:
    return posixpath.normpath(name.replace("\\", "/")).lstrip("/")


def _refusal(what: str, name: str | None, reason: str) -> str:
    return f"{what}: member {name!r} {reason}; refusing to extract it"


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
