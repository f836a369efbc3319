"""The Model Registry in one SQLite file, safe to share between processes, for work without AWS.

Every write runs in a ``BEGIN IMMEDIATE`` transaction (one writer at a time, others wait up to
``BUSY_TIMEOUT_S``), so version numbers stay gap-free and unique when separate processes register
at once, and each status change lands together with its history row. Connections are opened and
closed per operation: nothing is held between calls.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

from pipelines.errors import ConfigError, NotFoundError, TemplateError
from pipelines.local_home import LOCAL_ACCOUNT, LOCAL_REGION, REGISTRY_DB, local_home, storage_error
from pipelines.registry.base import (
    APPROVED,
    ApprovalChange,
    ModelPackage,
    ModelPackageGroup,
    ModelRegistry,
    Registration,
    RegistryConflict,
    as_utc,
    group_arn,
    group_not_found,
    merged_metadata,
    now_utc,
    package_arn,
    package_not_found,
)

FILE_NAME = REGISTRY_DB
BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_package_groups (
    name        TEXT PRIMARY KEY,
    arn         TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created     TEXT NOT NULL
);
-- Package ARNs lower-case the group name, so two groups may not differ only in case.
CREATE UNIQUE INDEX IF NOT EXISTS model_package_groups_nocase
    ON model_package_groups (name COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS model_packages (
    group_name        TEXT NOT NULL REFERENCES model_package_groups (name),
    version           INTEGER NOT NULL CHECK (version >= 1),
    arn               TEXT NOT NULL UNIQUE,
    approval_status   TEXT NOT NULL
        CHECK (approval_status IN ('PendingManualApproval', 'Approved', 'Rejected')),
    created           TEXT NOT NULL,
    model_data_url    TEXT NOT NULL,
    image_uri         TEXT NOT NULL,
    environment       TEXT NOT NULL,  -- JSON object
    content_types     TEXT NOT NULL,  -- JSON array
    response_types    TEXT NOT NULL,  -- JSON array
    model_metrics     TEXT,           -- JSON object shaped like ModelMetrics, or NULL
    customer_metadata TEXT NOT NULL,  -- JSON object of strings
    description       TEXT NOT NULL,
    UNIQUE (group_name, version)
);
CREATE TABLE IF NOT EXISTS approval_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name  TEXT NOT NULL,
    version     INTEGER NOT NULL,
    time        TEXT NOT NULL,
    changed_by  TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    FOREIGN KEY (group_name, version) REFERENCES model_packages (group_name, version)
);
"""


class LocalModelRegistry(ModelRegistry):
    """The registry in a SQLite file: ``path``, by default ``local_home()/registry.sqlite``.

    ARNs use region ``local`` and account ``000000000000``. Unlike AWS, it keeps every approval
    change (who, when, from what, to what, why) in ``approval_history``.
    """

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else local_home() / FILE_NAME
        self._create_schema()

    def __repr__(self) -> str:
        return f"LocalModelRegistry({str(self.path)!r})"

    # ---- groups

    def _create_group(self, name: str, description: str) -> ModelPackageGroup:
        created = now_utc()
        with self._write() as db:
            taken = db.execute(
                "SELECT arn FROM model_package_groups WHERE name = ? COLLATE NOCASE", (name,)
            ).fetchone()
            if taken:
                raise RegistryConflict(
                    f"Model Package Group already exists: {taken[0]} (ValidationException); "
                    "ensure_group reuses an existing group"
                )
            db.execute(
                "INSERT INTO model_package_groups (name, arn, description, created) VALUES (?, ?, ?, ?)",
                (name, group_arn(name), description, created.isoformat()),
            )
        return ModelPackageGroup(name, group_arn(name), description, created)

    def _get_group(self, name: str) -> ModelPackageGroup:
        with self._read() as db:
            return _group(self._require_group(db, name))

    def list_groups(self) -> list[ModelPackageGroup]:
        with self._read() as db:
            rows = db.execute(
                "SELECT name, arn, description, created FROM model_package_groups ORDER BY name"
            ).fetchall()
        return [_group(row) for row in rows]

    # ---- versions

    def _register(self, group: str, registration: Registration, by: str) -> ModelPackage:
        r = registration
        created = now_utc().isoformat()
        with self._write() as db:
            self._require_group(db, group)
            # Safe only because BEGIN IMMEDIATE made this the sole writer; UNIQUE(group, version)
            # turns any mistake here into an error rather than a duplicate.
            (version,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM model_packages WHERE group_name = ?", (group,)
            ).fetchone()
            db.execute(
                "INSERT INTO model_packages (group_name, version, arn, approval_status, created, "
                "model_data_url, image_uri, environment, content_types, response_types, model_metrics, "
                "customer_metadata, description) VALUES (:group_name, :version, :arn, :approval_status, "
                ":created, :model_data_url, :image_uri, :environment, :content_types, :response_types, "
                ":model_metrics, :customer_metadata, :description)",
                {
                    "group_name": group,
                    "version": version,
                    "arn": package_arn(group, version),
                    "approval_status": r.approval_status,
                    "created": created,
                    "model_data_url": r.model_data_url,
                    "image_uri": r.image_uri,
                    "environment": json.dumps(dict(r.environment or {})),
                    "content_types": json.dumps(list(r.content_types)),
                    "response_types": json.dumps(list(r.response_types)),
                    "model_metrics": json.dumps(dict(r.model_metrics)) if r.model_metrics else None,
                    "customer_metadata": json.dumps(dict(r.customer_metadata or {})),
                    "description": r.description,
                },
            )
            _record_change(db, group, version, created, by, None, r.approval_status, "registered")
            return self._require_package(db, group, version)

    def _get_version(self, group: str, version: int) -> ModelPackage:
        with self._read() as db:
            return self._require_package(db, group, version)

    def _get_by_arn(self, arn: str) -> ModelPackage:
        with self._read() as db:
            row = db.execute("SELECT * FROM model_packages WHERE arn = ?", (arn,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"Model package {arn} does not exist in the local registry {self.path} (its ARNs look "
                f"like arn:aws:sagemaker:{LOCAL_REGION}:{LOCAL_ACCOUNT}:model-package/<group>/<version>)"
            )
        return _package(row)

    def _list_versions(self, group: str, approval_status: str | None) -> list[ModelPackage]:
        with self._read() as db:
            self._require_group(db, group)
            rows = db.execute(
                "SELECT * FROM model_packages WHERE group_name = :group "
                "AND (:status IS NULL OR approval_status = :status) ORDER BY version",
                {"group": group, "status": approval_status},
            ).fetchall()
        return [_package(row) for row in rows]

    def _latest_approved(self, group: str) -> ModelPackage | None:
        with self._read() as db:
            self._require_group(db, group)
            row = db.execute(
                "SELECT * FROM model_packages WHERE group_name = ? AND approval_status = ? "
                "ORDER BY version DESC LIMIT 1",
                (group, APPROVED),
            ).fetchone()
        return _package(row) if row else None

    # ---- approval and metadata

    def _update_approval(self, group: str, version: int, status: str, by: str, reason: str) -> ModelPackage:
        with self._write() as db:
            before = self._require_package(db, group, version)
            db.execute(
                "UPDATE model_packages SET approval_status = ? WHERE group_name = ? AND version = ?",
                (status, group, version),
            )
            now = now_utc().isoformat()
            _record_change(db, group, version, now, by, before.approval_status, status, reason)
            return self._require_package(db, group, version)

    def _approval_history(self, group: str, version: int) -> list[ApprovalChange]:
        with self._read() as db:
            self._require_package(db, group, version)
            rows = db.execute(
                "SELECT time, changed_by, from_status, to_status, reason FROM approval_history "
                "WHERE group_name = ? AND version = ? ORDER BY id",
                (group, version),
            ).fetchall()
        return [
            ApprovalChange(as_utc(r["time"]), r["changed_by"], r["from_status"], r["to_status"], r["reason"])
            for r in rows
        ]

    def _update_metadata(
        self, group: str, version: int, customer_metadata: Mapping[str, str]
    ) -> ModelPackage:
        with self._write() as db:
            merged = merged_metadata(self._require_package(db, group, version), customer_metadata)
            db.execute(
                "UPDATE model_packages SET customer_metadata = ? WHERE group_name = ? AND version = ?",
                (json.dumps(merged), group, version),
            )
            return self._require_package(db, group, version)

    # ---- storage

    def _require_group(self, db: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = db.execute(
            "SELECT name, arn, description, created FROM model_package_groups WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            existing = [n for (n,) in db.execute("SELECT name FROM model_package_groups")]
            raise group_not_found(name, existing)
        return row

    def _require_package(self, db: sqlite3.Connection, group: str, version: int) -> ModelPackage:
        row = db.execute(
            "SELECT * FROM model_packages WHERE group_name = ? AND version = ?",
            (group, version),
        ).fetchone()
        if row is None:
            self._require_group(db, group)
            query = "SELECT version FROM model_packages WHERE group_name = ?"
            versions = [v for (v,) in db.execute(query, (group,))]
            raise package_not_found(group, version, versions)
        return _package(row)

    def _create_schema(self) -> None:
        with self._connect() as db:
            (found,) = db.execute("PRAGMA user_version").fetchone()
            if found > SCHEMA_VERSION:
                raise ConfigError(
                    f"local registry {self.path} has schema version {found}, newer than this code "
                    f"({SCHEMA_VERSION}); upgrade the template or point MLOPS_LOCAL_HOME elsewhere"
                )
            if found < SCHEMA_VERSION:
                # One script, one transaction: processes starting together create the tables once.
                db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            # isolation_level=None: we issue BEGIN ourselves, so each transaction is explicit.
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.OperationalError as err:
            raise storage_error(self.path, err) or ConfigError(
                f"cannot open the local registry {self.path} ({err}); its directory must exist and be "
                "writable (the default one is $MLOPS_LOCAL_HOME)"
            ) from None
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys = ON")
            yield db
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise TemplateError(
                    f"the local registry {self.path} is locked by another process (waited up to "
                    f"{BUSY_TIMEOUT_S:g} s); retry when it has finished"
                ) from None
            raise storage_error(self.path, err) or err from None
        except sqlite3.DatabaseError as err:
            if "not a database" in str(err):
                raise ConfigError(
                    f"{self.path} is not a registry database; move it away or set MLOPS_LOCAL_HOME elsewhere"
                ) from None
            raise
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            yield db
            # Reached only without an exception; otherwise closing the connection rolls back.
            db.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN")  # one snapshot for the several SELECTs of one operation
            yield db
            db.execute("COMMIT")


def _record_change(db, group, version, time, by, from_status, to_status, reason) -> None:
    db.execute(
        "INSERT INTO approval_history (group_name, version, time, changed_by, from_status, to_status, "
        "reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (group, version, time, by, from_status, to_status, reason),
    )


def _group(row: sqlite3.Row) -> ModelPackageGroup:
    return ModelPackageGroup(row["name"], row["arn"], row["description"], as_utc(row["created"]))


def _package(row: sqlite3.Row) -> ModelPackage:
    return ModelPackage(
        group=row["group_name"],
        version=row["version"],
        arn=row["arn"],
        approval_status=row["approval_status"],
        created=as_utc(row["created"]),
        model_data_url=row["model_data_url"],
        image_uri=row["image_uri"],
        environment=json.loads(row["environment"]),
        content_types=tuple(json.loads(row["content_types"])),
        response_types=tuple(json.loads(row["response_types"])),
        model_metrics=json.loads(row["model_metrics"]) if row["model_metrics"] else None,
        customer_metadata=json.loads(row["customer_metadata"]),
        description=row["description"],
    )
