"""Read access to step outputs: the local object store or S3, behind one small interface."""

from __future__ import annotations

import abc

from pipelines.local.store import MissingObjectError, ObjectStore, StoreError, parse_uri


class ObjectMissing(Exception):
    """Nothing readable at a URI; ``reason`` says why in a few words."""

    def __init__(self, uri: str, reason: str = "not found"):
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason


class Objects(abc.ABC):
    @abc.abstractmethod
    def get(self, uri: str) -> bytes:
        """The object's bytes; ObjectMissing if it is not there or cannot be read."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """URIs of the objects whose key starts with the prefix's key, sorted."""


class LocalObjects(Objects):
    def __init__(self, store: ObjectStore):
        self.store = store

    def get(self, uri: str) -> bytes:
        try:
            return self.store.get_bytes(uri)
        except (MissingObjectError, StoreError) as err:
            raise ObjectMissing(
                uri, "not in the local object store" if isinstance(err, MissingObjectError) else str(err)
            ) from None
        except OSError as err:
            raise ObjectMissing(uri, err.strerror or str(err)) from None

    def list(self, prefix: str) -> list[str]:
        try:
            location = parse_uri(prefix)
            return [f"s3://{location.bucket}/{key}" for key, _ in self.store.list(prefix)]
        except (StoreError, OSError):
            return []


class S3Objects(Objects):
    def __init__(self, s3):
        self.s3 = s3

    def get(self, uri: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            location = parse_uri(uri)
            return self.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        except StoreError as err:
            raise ObjectMissing(uri, str(err)) from None
        except ClientError as err:
            raise ObjectMissing(uri, err.response.get("Error", {}).get("Code", "error")) from None
        except BotoCoreError as err:
            raise ObjectMissing(uri, str(err)) from None

    def list(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            location = parse_uri(prefix)
            found = []
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=location.bucket, Prefix=location.key
            )
            for page in pages:
                found += [f"s3://{location.bucket}/{item['Key']}" for item in page.get("Contents", [])]
            return sorted(found)
        except (StoreError, ClientError, BotoCoreError):
            return []
