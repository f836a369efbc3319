"""``package-template``: zip this repository's code to seed new projects, and publish it with the
project and bootstrap templates to an S3 bucket, for Studio (an S3 project template or a Service
Catalog product). ``--dry-run`` writes the same files locally and calls no AWS API.

The zip holds only what a project needs (the pipeline package, the step code, buildspecs, stage
configs, sample data, tests, packaging and CI files), never local junk (virtual environments,
caches, build output), and is byte-identical for the same files: sorted entries, fixed timestamps.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import stat
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipelines import _cli
from pipelines import aws_names as names
from pipelines.__version__ import __version__
from pipelines.aws_calls import aws_error, client_config
from pipelines.errors import ConfigError, NotFoundError, UsageError

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent

#: What a project is seeded with: these files and directories of the repository, nothing else.
SEED_FILES = (".ci/run", ".gitignore", "LICENSE", "README.md", "pyproject.toml", "setup.py")
SEED_DIRECTORIES = ("codebuild", "data", "deploy", "docs", "pipelines", "steps", "tests")
#: Inside those directories, what a project does not get: the template's own tests need seed_code/,
#: and the benchmark figures are the template's benchmarks/.
LEFT_OUT = ("tests/seed_code", "tests/helpers/seed_support.py", "docs/benchmarks.md")
#: Never seeded, wherever they are: environments, caches, build output, editor and OS droppings.
JUNK_DIRECTORIES = {
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".ipynb_checkpoints",
    ".git",
    "build",
    "dist",
    "node_modules",
}
JUNK_SUFFIXES = (".pyc", ".pyo", ".egg-info", "~", ".swp")
JUNK_NAMES = {".DS_Store", ".coverage"}

TEMPLATES = {"project": "project.yaml", "bootstrap": "bootstrap.yaml"}
#: The project template's parameters whose defaults this command fills (marked in project.yaml).
SEED_PARAMETERS = ("SeedCodeBucket", "SeedCodeKey")
#: S3 object tag that makes Studio list an S3 project template.
STUDIO_VISIBILITY_TAG = "sagemaker:studio-visibility=true"

#: README.md and docs/*.md lines between these two marker lines are about the template itself (its
#: project template, benchmarks): a seeded project's copies leave them out.
TEMPLATE_ONLY_START = "<!-- template-only -->"
TEMPLATE_ONLY_END = "<!-- /template-only -->"
#: An HTML comment opened by this line and closed by a line "-->" is hidden in the template's
#: README.md (or docs/*.md) and is plain text in a seeded project's: what it reads in their place.
SEED_ONLY_START = "<!-- seed-only"
SEED_ONLY_END = "-->"

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: the same bytes on every build
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9!_.*'()-]+$")


@dataclass(frozen=True)
class Package:
    """What gets published: the seed zip and the two templates, as bytes, and where they go."""

    bucket: str
    prefix: str
    seed_zip: bytes
    seed_files: tuple[str, ...]
    templates: dict[str, bytes]  # file name -> content

    @property
    def seed_key(self) -> str:
        return f"{self.prefix}seed-code-{hashlib.sha256(self.seed_zip).hexdigest()[:16]}.zip"

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"


def is_junk(relative: PurePosixPath) -> bool:
    """True for paths a project must never be seeded with (checked on every path component)."""
    for part in relative.parts:
        if part in JUNK_DIRECTORIES or part in JUNK_NAMES or part.startswith(".venv"):
            return True
        if part.endswith(JUNK_SUFFIXES):
            return True
    return False


def seed_files(source: Path) -> list[str]:
    """The repository-relative paths (POSIX, sorted) that seed a project."""
    missing = [name for name in (*SEED_FILES, *SEED_DIRECTORIES) if not (source / name).exists()]
    if missing:
        raise ConfigError(
            f"--source-dir {str(source)!r} is not this template's repository: it lacks {', '.join(missing)}"
        )
    found = [PurePosixPath(name) for name in SEED_FILES]
    for directory in SEED_DIRECTORIES:
        for root, dirs, files in os.walk(source / directory):
            here = PurePosixPath(Path(root).relative_to(source).as_posix())
            dirs[:] = sorted(d for d in dirs if not _left_out(here / d))
            found.extend(here / name for name in files if not _left_out(here / name))
    for path in found:
        if (source / path).is_symlink():
            raise ConfigError(f"{path} is a symbolic link; the seed code takes plain files only")
    return sorted(str(path) for path in found)


def _left_out(relative: PurePosixPath) -> bool:
    return is_junk(relative) or any(relative.is_relative_to(PurePosixPath(p)) for p in LEFT_OUT)


def is_marked(name: str) -> bool:
    """True for the seeded files that may hold template-only and seed-only regions."""
    path = PurePosixPath(name)
    return name == "README.md" or (path.parent == PurePosixPath("docs") and path.suffix == ".md")


def seed_readme(text: str, where: str = "README.md") -> str:
    """``text`` without its template-only regions and with its seed-only comments uncommented;
    ConfigError for a marker without its pair."""
    closing = {TEMPLATE_ONLY_START: TEMPLATE_ONLY_END, SEED_ONLY_START: SEED_ONLY_END}
    kept: list[str] = []
    region, start = None, 0
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        marker = line.strip()
        if marker in closing:
            if region is not None:
                raise ConfigError(
                    f"{where}:{number}: {marker} inside the region opened at line {start}; "
                    f"close that one with {closing[region]} first"
                )
            region, start = marker, number
        elif region is not None and marker == closing[region]:
            if region == TEMPLATE_ONLY_START and kept and kept[-1].strip() == "":
                kept.pop()  # one blank line stays between what was around the region, not two
            region = None
        elif marker == TEMPLATE_ONLY_END:
            raise ConfigError(
                f"{where}:{number}: {TEMPLATE_ONLY_END} without a {TEMPLATE_ONLY_START} before it"
            )
        elif region != TEMPLATE_ONLY_START:
            kept.append(line)
    if region is not None:
        raise ConfigError(f"{where}:{start}: {region} is never closed by {closing[region]}")
    return "".join(kept)


def seed_zip(source: Path, files: Sequence[str]) -> bytes:
    """The files as a zip, byte-identical for identical contents and modes; README.md and docs/*.md
    as ``seed_readme`` makes them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            path = source / name
            body = path.read_bytes()
            if is_marked(name):
                body = seed_readme(body.decode("utf-8"), str(path)).encode("utf-8")
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.create_system = 3  # Unix, so the permission bits below are read back
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = ((stat.S_IFREG | (0o755 if executable else 0o644)) & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, body, compresslevel=9)
    return buffer.getvalue()


def project_template(text: str, bucket: str, key: str) -> str:
    """project.yaml with the seed-code defaults set, so Studio's form needs nothing about them."""
    for parameter, value in zip(SEED_PARAMETERS, (bucket, key), strict=True):
        marker = f'Default: "" # package-template: {parameter}'
        if text.count(marker) != 1:
            raise ConfigError(
                f"seed_code/{TEMPLATES['project']} must contain the line {marker!r} exactly once "
                f"(found {text.count(marker)})"
            )
        text = text.replace(marker, f"Default: {json.dumps(value)}")
    return text


def build(source: Path, bucket: str, prefix: str) -> Package:
    """Everything to publish, built locally; no AWS call."""
    files = seed_files(source)
    archive = seed_zip(source, files)
    package = Package(bucket, prefix, archive, tuple(files), {})
    project = (HERE / TEMPLATES["project"]).read_text(encoding="utf-8")
    package.templates[TEMPLATES["project"]] = project_template(project, bucket, package.seed_key).encode()
    package.templates[TEMPLATES["bootstrap"]] = (HERE / TEMPLATES["bootstrap"]).read_bytes()
    return package


def check_prefix(prefix: str) -> str:
    """``--prefix`` as a key prefix ending in '/' ('' for the bucket's top)."""
    if not prefix:
        return ""
    trimmed = prefix.removesuffix("/")
    bad = [s for s in trimmed.split("/") if not _PREFIX_SEGMENT.match(s) or s in (".", "..")]
    if prefix.startswith("/") or bad:
        raise UsageError(
            f"--prefix {prefix!r} is not an S3 key prefix: use segments of letters, digits and !_.*'()- "
            f"separated by '/', e.g. sagemaker-mlops-template/{__version__}/"
        )
    return f"{trimmed}/"


def write(package: Package, output_dir: Path) -> list[Path]:
    """The dry run: the seed zip and the templates in ``output_dir``."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, content in [
            (PurePosixPath(package.seed_key).name, package.seed_zip),
            *package.templates.items(),
        ]:
            path = output_dir / name
            path.write_bytes(content)
            written.append(path)
    except OSError as err:
        raise UsageError(
            f"--output-dir {str(output_dir)!r} cannot be written: {err.strerror or err}"
        ) from None
    return written


def upload(package: Package, region: str | None) -> str:
    """Put the zip and the templates in the bucket; returns the bucket's region."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client("s3", region_name=region, config=client_config())
    doing = f"finding bucket {package.bucket}"
    try:
        found = s3.get_bucket_location(Bucket=package.bucket).get("LocationConstraint") or "us-east-1"
        objects = [(package.seed_key, package.seed_zip, "application/zip", None)]
        for name, content in package.templates.items():
            tagging = STUDIO_VISIBILITY_TAG if name == TEMPLATES["project"] else None
            objects.append((package.key(name), content, "text/yaml", tagging))
        for key, body, content_type, tagging in objects:
            doing = f"uploading s3://{package.bucket}/{key}"
            extra = {"Tagging": tagging} if tagging else {}
            s3.put_object(Bucket=package.bucket, Key=key, Body=body, ContentType=content_type, **extra)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise NotFoundError(
                f"bucket {package.bucket!r} does not exist; create it in the projects' region "
                "or pass another --bucket"
            ) from None
        raise aws_error(err, doing, region_hint="pass --region or set AWS_REGION") from None
    except BotoCoreError as err:
        raise aws_error(err, doing, region_hint="pass --region or set AWS_REGION") from None
    return found


def https_url(bucket: str, key: str, region: str | None) -> str:
    host = f"{bucket}.s3.{region}.amazonaws.com" if region else f"{bucket}.s3.amazonaws.com"
    return f"https://{host}/{key}"


def report(package: Package, region: str | None) -> str:
    """Where everything is (or would be), and what to do with it."""
    project_url = https_url(package.bucket, package.key(TEMPLATES["project"]), region)
    lines = [
        f"seed code: {len(package.seed_files)} files, {len(package.seed_zip):,} bytes",
        f"  s3://{package.bucket}/{package.seed_key}",
        f"project template (tagged {STUDIO_VISIBILITY_TAG}):",
        f"  s3://{package.bucket}/{package.key(TEMPLATES['project'])}",
        f"  {project_url}",
        "bootstrap template (deploy once in the dev/tooling, staging and prod accounts):",
        f"  s3://{package.bucket}/{package.key(TEMPLATES['bootstrap'])}",
        f"  {https_url(package.bucket, package.key(TEMPLATES['bootstrap']), region)}",
        "S3 project template: Studio lists it from the bucket (see docs/aws.md).",
        "Service Catalog product version:",
        "  aws servicecatalog create-provisioning-artifact --product-id <product id> --parameters "
        f"Name={__version__},Type=CLOUD_FORMATION_TEMPLATE,Info={{LoadTemplateFromURL={project_url}}}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.ArgumentParser(
        prog="package-template",
        description="Zip the seed code and publish it with the project and bootstrap templates to S3.",
        epilog="Exit codes: 0 done, 2 bad input, 3 AWS failure, 4 no such bucket.",
    )
    parser.add_argument("--bucket", required=True, help="bucket to publish to (in the projects' region)")
    parser.add_argument(
        "--prefix",
        default="sagemaker-mlops-template/",
        help="key prefix of the published files (default: sagemaker-mlops-template/)",
    )
    parser.add_argument("--region", default=None, help="AWS region of the client (default: boto3's)")
    parser.add_argument(
        "--source-dir",
        type=Path,
        default=REPOSITORY,
        help="the repository to zip (default: the one this command belongs to)",
    )
    parser.add_argument("--dry-run", action="store_true", help="write the files locally; no AWS call")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("build/seed-code"),
        help="where --dry-run writes (default: build/seed-code)",
    )
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if not names.BUCKET.match(args.bucket):
        raise UsageError(f"--bucket {args.bucket!r} is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    if args.region and not names.REGION.match(args.region):
        raise UsageError(f"--region {args.region!r} is not an AWS region such as eu-west-1")
    prefix = check_prefix(args.prefix)
    package = build(args.source_dir.resolve(), args.bucket, prefix)
    if args.dry_run:
        written = write(package, args.output_dir)
        print("dry run: nothing uploaded; wrote")
        print("\n".join(f"  {path}" for path in written))
        region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        print(report(package, region))
        return 0
    region = upload(package, args.region)
    print(report(package, region))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return _cli.run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
