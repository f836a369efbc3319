"""The local object store: ``s3://bucket/key`` as a file under one root directory.

Keys keep S3's prefix semantics (an ``S3Prefix`` input gets every object whose key starts with the
prefix), so a definition's URIs mean the same thing locally as in S3. No key can name a path outside
the root: ``..``, ``.``, empty segments and absolute keys are refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import ConfigError, NotFoundError

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class StoreError(ConfigError):
    """A URI the local store cannot take (not s3://, a bad bucket, a key escaping the store)."""


class MissingObjectError(NotFoundError):
    """Nothing is stored under a URI that had to exist."""


@dataclass(frozen=True)
class Location:
    bucket: str
    key: str  # may be "" (the whole bucket) or end in "/" (a prefix)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_uri(uri: str) -> Location:
    """``s3://bucket/key`` split and checked; StoreError naming the URI and the problem."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise StoreError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise StoreError(f"{uri!r}: {bucket!r} is not a valid bucket name")
    segments = key.split("/")
    inner = segments[:-1] if key.endswith("/") else segments
    if key and any(segment in ("", ".", "..") for segment in inner):
        raise StoreError(
            f"{uri!r}: key segments may not be empty, '.' or '..' (the key must stay inside the bucket)"
        )
    if "\x00" in key or "\\" in key:
        raise StoreError(f"{uri!r}: the key contains a NUL or a backslash")
    return Location(bucket, key)


class ObjectStore:
    """S3 buckets as directories under ``root``: ``s3://b/k`` is the file ``root/b/k``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, uri: str) -> Path:
        """Where the object (or prefix) ``uri`` lives; never outside the root."""
        location = parse_uri(uri)
        path = self.root / location.bucket / location.key
        # Belt and braces: parse_uri already refuses every escaping key.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise StoreError(f"{uri!r} resolves outside the local object store")
        return path

    def put_bytes(self, uri: str, data: bytes) -> None:
        target = self._object_path(uri)
        self._write(target, lambda handle: handle.write(data))

    def put_file(self, source: Path, uri: str) -> None:
        target = self._object_path(uri)

        def copy(handle):
            with open(source, "rb") as src:
                shutil.copyfileobj(src, handle, 1 << 20)

        self._write(target, copy)

    def put_tree(self, source: Path, uri: str) -> int:
        """Every file under ``source`` at ``uri/<relative path>``; returns how many."""
        prefix = uri.rstrip("/")
        count = 0
        for file in sorted(p for p in Path(source).rglob("*") if p.is_file() and not p.is_symlink()):
            self.put_file(file, f"{prefix}/{file.relative_to(source).as_posix()}")
            count += 1
        return count

    def get_bytes(self, uri: str) -> bytes:
        path = self.path(uri)
        if not path.is_file():
            raise MissingObjectError(f"no object at {uri} in the local object store ({self.root})")
        return path.read_bytes()

    def exists(self, uri: str) -> bool:
        return bool(self.list(uri))

    def list(self, uri: str) -> list[tuple[str, Path]]:
        """(key, file) of every object whose key starts with the URI's key, sorted by key."""
        location = parse_uri(uri)
        bucket_dir = self.root / location.bucket
        key = location.key
        # Walk only the deepest directory the prefix names; S3 prefixes need not end at a "/".
        start = bucket_dir / key.rsplit("/", 1)[0] if "/" in key else bucket_dir
        if not start.is_dir():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for filename in filenames:
                if filename.startswith(".tmp-"):
                    continue  # an upload in progress
                path = Path(dirpath) / filename
                if path.is_symlink():
                    continue
                object_key = path.relative_to(bucket_dir).as_posix()
                if object_key.startswith(key):
                    found.append((object_key, path))
        return sorted(found)

    def delete(self, uri: str) -> int:
        """Remove every object under ``uri`` (an object or a prefix); returns how many."""
        objects = self.list(uri)
        for _, path in objects:
            path.unlink()
        return len(objects)

    def fetch(self, uri: str, destination: Path, shard: tuple[int, int] | None = None) -> int:
        """Copy the objects under ``uri`` into ``destination`` as SageMaker's S3Prefix download does:
        each at its key relative to the prefix (an exact object at its own name). ``shard=(i, n)``
        takes every n-th object starting at i, the ShardedByS3Key split. Returns how many."""
        location = parse_uri(uri)
        objects = self.list(uri)
        if shard is not None:
            index, count = shard
            objects = objects[index::count]
        destination.mkdir(parents=True, exist_ok=True)
        for key, path in objects:
            relative = key[len(location.key) :].lstrip("/") or key.rsplit("/", 1)[-1]
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return len(objects)

    def digest(self, uri: str) -> str:
        """sha256 over the keys and contents under ``uri``: equal exactly when the data is."""
        total = hashlib.sha256()
        for key, path in self.list(uri):
            total.update(key.encode() + b"\0")
            with open(path, "rb") as handle:
                total.update(hashlib.file_digest(handle, "sha256").digest())
        return total.hexdigest()

    def _object_path(self, uri: str) -> Path:
        location = parse_uri(uri)
        if not location.key or location.key.endswith("/"):
            raise StoreError(f"{uri!r} names a prefix, not an object")
        return self.path(uri)

    @staticmethod
    def _write(target: Path, fill) -> None:
        # Write then rename: a reader sees the old object or the new one, never half of one.
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            # S3 keeps "a/b" and "a/b/c" side by side; as files, an object cannot also be a prefix.
            raise StoreError(
                f"{target}: an object is stored where this key needs a prefix; it cannot be both"
            ) from None
        if target.is_dir():
            raise StoreError(f"{target} is a prefix with objects under it; it cannot also be an object")
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=".tmp-", delete=False)
        try:
            with handle:
                fill(handle)
            os.replace(handle.name, target)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
