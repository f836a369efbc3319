"""Step code as content-addressed S3 objects, and the explicit upload of them.

A bundle's S3 key is derived from the bytes of its source files, never from a clock, so the same
code gives a byte-identical pipeline definition, and a change to one step's script changes that
step's arguments alone: SageMaker's step cache is invalidated exactly where it should be.
Building the definition only computes keys; ``upload_bundles`` is the separate, idempotent action.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import logging
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import steps
from pipelines.errors import ConfigError

logger = logging.getLogger(__name__)

#: Where the step code lives in the repository (and in the installed package).
STEPS_DIR = Path(steps.__file__).resolve().parent

#: The archive name SageMaker's training toolkit and framework serving containers expect.
SOURCEDIR_ARCHIVE = "sourcedir.tar.gz"


@dataclass(frozen=True)
class CodeBundle:
    """One step's code: named files stored under ``<key_prefix>/code/<digest>/``.

    ``files`` maps the name a file has inside the container to its source path. With
    ``archive`` set, the files travel as one deterministic tar.gz of that name (what the
    training toolkit and the serving containers unpack); otherwise each file is its own object.
    """

    name: str
    files: Mapping[str, Path]
    archive: str | None = None
    entry_point: str | None = None
    _sources: dict[str, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sources: dict[str, bytes] = {}
        missing = []
        for arcname, path in sorted(self.files.items()):
            try:
                sources[arcname] = Path(path).read_bytes()
            except FileNotFoundError:
                missing.append(str(path))
        if missing:
            raise ConfigError(
                f"code bundle {self.name!r}: source file(s) not found: {', '.join(missing)}; "
                "run from a checkout of the project or reinstall it"
            )
        object.__setattr__(self, "_sources", sources)

    @property
    def entry(self) -> str:
        """The script a container runs, or the file it reads: ``entry_point``, or the one file."""
        if self.entry_point is not None:
            return self.entry_point
        if len(self.files) != 1:
            raise ValueError(f"code bundle {self.name!r} has {len(self.files)} files, not one entry")
        return next(iter(self.files))

    @cached_property
    def digest(self) -> str:
        """SHA-256 over the file names and contents (and the archive name), in name order."""
        h = hashlib.sha256()
        h.update(f"archive={self.archive or ''}\0".encode())
        for arcname, content in self._sources.items():
            h.update(f"{arcname}\0{len(content)}\0".encode())
            h.update(content)
        return h.hexdigest()

    def key_prefix(self, key_prefix: str) -> str:
        """The S3 key 'directory' holding this bundle, e.g. ``ChurnPipeline/code/<digest>``."""
        return f"{key_prefix.strip('/')}/code/{self.digest}"

    def uri(self, bucket: str, key_prefix: str, name: str | None = None) -> str:
        """S3 URI of the bundle directory (with a trailing slash), or of one object in it."""
        base = f"s3://{bucket}/{self.key_prefix(key_prefix)}/"
        return base + name if name else base

    def objects(self) -> dict[str, bytes]:
        """The objects to store under the bundle directory: the files, or the one archive."""
        if self.archive is None:
            return dict(self._sources)
        return {self.archive: deterministic_targz(self._sources)}


def script_bundle(name: str, script: Path, archive: str | None = None) -> CodeBundle:
    """A step script with the ``steps`` modules it imports (and theirs) from its own folder, each at
    ``steps/<module>.py`` beside it: in the container the script's folder is on ``sys.path``, so
    ``from steps.x import`` finds them there as it finds them in this package. ``archive``: the files
    travel as one tar.gz of that name (a serving container's ``sourcedir.tar.gz``)."""
    folder = Path(script).parent
    files = {Path(script).name: Path(script)}
    pending = [Path(script)]
    while pending:
        for module in _steps_imports(pending.pop()):
            arcname = f"steps/{module}.py"
            if arcname not in files:
                files[arcname] = folder / f"{module}.py"
                pending.append(files[arcname])
    return CodeBundle(name, files, archive=archive, entry_point=Path(script).name)


def _steps_imports(path: Path) -> set[str]:
    """The modules of ``steps`` a source file imports (``from steps.x import``, ``import steps.x``,
    ``from steps import x``)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise ConfigError(f"code bundle: source file not found: {path}") from None
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("steps."):
                found.add(node.module.split(".")[1])
            elif node.module == "steps":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("steps."))
    return found


def deterministic_targz(files: Mapping[str, bytes]) -> bytes:
    """A tar.gz whose bytes depend only on ``files``: fixed order, times, owners and modes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname in sorted(files):
            content = files[arcname]
            info = tarfile.TarInfo(arcname)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


@dataclass(frozen=True)
class UploadResult:
    """What ``upload_bundles`` did with one object."""

    uri: str
    uploaded: bool  # False when the content-addressed key was already there


@dataclass(frozen=True)
class CodeUpload:
    """The code one pipeline definition refers to, and where it goes."""

    bucket: str
    key_prefix: str
    bundles: tuple[CodeBundle, ...]
    kms_key_id: str | None = None

    def upload(self, s3_client) -> list[UploadResult]:
        return upload_bundles(s3_client, self.bucket, self.key_prefix, self.bundles, self.kms_key_id)


def upload_bundles(
    s3_client,
    bucket: str,
    key_prefix: str,
    bundles: Iterable[CodeBundle],
    kms_key_id: str | None = None,
) -> list[UploadResult]:
    """Put each bundle's objects in S3 unless its key already exists (the key is the content).

    ``s3_client`` is a boto3 S3 client. With ``kms_key_id`` the objects are encrypted with that
    customer key; otherwise the bucket's default encryption applies.
    """
    from botocore.exceptions import ClientError

    results = []
    for bundle in bundles:
        for name, body in bundle.objects().items():
            key = f"{bundle.key_prefix(key_prefix)}/{name}"
            uri = f"s3://{bucket}/{key}"
            try:
                s3_client.head_object(Bucket=bucket, Key=key)
                results.append(UploadResult(uri, uploaded=False))
                continue
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
            s3_client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
            logger.info("uploaded %s (%d bytes)", uri, len(body))
            results.append(UploadResult(uri, uploaded=True))
    return results
