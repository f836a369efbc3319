"""The local runner's Transform step: a batch transform job run through the model's serving handler, with
SageMaker's record splitting, mini-batching, data processing (JSONPath filters, join) and output naming.
"""

# Sources: botocore's CreateTransformJob documentation, the AWS guide page "Associate Prediction Results
# with Input Records" (batch-transform-data-processing.html), and aws/sagemaker-xgboost-container
# algorithm_mode/serve.py for the built-in handler. Each rule below names its source.

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import NotFoundError
from pipelines.local.executor_base import Executor, StepResult, StepRun
from pipelines.local.jobs import StepFailure, arn, extract_archive, fresh_directory, now
from pipelines.local.runtimes import BUILTIN_XGBOOST, runtime_for, unknown_image
from pipelines.local.store import StoreError, parse_uri
from pipelines.serving.handler import ModelLoadError, Reply, load_handler

log = logging.getLogger(__name__)

MB = 1024 * 1024
DEFAULT_MAX_PAYLOAD_MB = 6  # botocore MaxPayloadInMB: "The default value is 6 MB"
MAX_PAYLOAD_MB = 100  # botocore MaxPayloadInMB: "cannot be greater than 100 MB"
MAX_JSONPATH = 63  # API_DataProcessing: InputFilter/OutputFilter "Maximum length of 63"
JSON_TYPES = ("application/json", "application/jsonlines", "application/x-jsonlines")
CSV_TYPE = "text/csv"
_MODEL_REFERENCE = re.compile(r"^Steps\.([A-Za-z0-9_-]+)\.ModelName$")
_import_lock = threading.Lock()


class JsonPathError(ValueError):
    """A filter outside SageMaker's JSONPath subset, or one that does not fit the record."""


# ------------------------------------------------------------------------------------------------ JSONPath
#
# SageMaker's subset (batch-transform-data-processing.html, "Supported JSONPath Operators"): ``$`` (the
# root, required first), ``.<name>``, ``*`` (wildcard), ``['<name>'(,'<name>')]``, ``[<number>(,<number>)]``
# (negative indexes count from the end), ``[<start>:<end>]`` (either end may be left out); the page's
# examples also combine an index and a slice in one bracket (``$[0,5:]``). No filters (``?()``), no
# recursive descent (``..``), and no nesting inside a multi-name bracket. botocore's DataProcessing
# documentation gives the examples the tests use: "$", "$[1:]", "$.features", "$[0,5:]",
# "$['id','SageMakerOutput']".


@dataclass(frozen=True)
class _Step:
    kind: str  # "name" (one key), "names" (several keys), "items" (indexes and slices), "all"
    names: tuple[str, ...] = ()
    items: tuple[int | tuple[int | None, int | None], ...] = ()

    @property
    def selects_many(self) -> bool:
        return self.kind != "name" and not (self.kind == "items" and _single_index(self.items))


def _single_index(items) -> bool:
    return len(items) == 1 and isinstance(items[0], int)


_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*|\*)")
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_QUOTED = re.compile(r"\s*'([^']*)'\s*$|\s*\"([^\"]*)\"\s*$")
_SLICE = re.compile(r"\s*(-?\d+)?\s*:\s*(-?\d+)?\s*$")
_INDEX = re.compile(r"\s*(-?\d+)\s*$")


def parse_jsonpath(path: str, where: str) -> tuple[_Step, ...]:
    """The steps of ``path``; JsonPathError naming ``where`` and the part that is not in the subset."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise JsonPathError(f"{where} {path!r}: a JSONPath must start with '$'")
    if len(path) > MAX_JSONPATH:
        raise JsonPathError(f"{where} {path!r}: longer than SageMaker's {MAX_JSONPATH} characters")
    steps, pos = [], 1
    while pos < len(path):
        if path.startswith("..", pos):
            raise JsonPathError(f"{where} {path!r}: recursive descent '..' is not supported by SageMaker")
        name = _NAME.match(path, pos)
        bracket = _BRACKET.match(path, pos + 1 if path.startswith(".[", pos) else pos)
        if name:
            steps.append(_Step("all") if name[1] == "*" else _Step("name", (name[1],)))
            pos = name.end()
        elif bracket:
            steps.append(_bracket_step(bracket[1], path, where))
            pos = bracket.end()
        else:
            raise JsonPathError(
                f"{where} {path!r}: cannot read {path[pos:]!r}; SageMaker supports $, .name, *, ['name',...],"
                " [n,...] and [start:end]"
            )
    for step in steps[:-1]:
        if step.selects_many:
            raise JsonPathError(f"{where} {path!r}: only the last part of a path may select several elements")
    return tuple(steps)


def _bracket_step(inner: str, path: str, where: str) -> _Step:
    if inner.strip() == "*":
        return _Step("all")
    parts = inner.split(",")
    quoted = [_QUOTED.match(part) for part in parts]
    if all(quoted):
        return _Step(
            "names" if len(parts) > 1 else "name", tuple(m[1] if m[1] is not None else m[2] for m in quoted)
        )
    items: list[int | tuple[int | None, int | None]] = []
    for part in parts:
        index, piece = _INDEX.match(part), _SLICE.match(part)
        if index:
            items.append(int(index[1]))
        elif piece:
            items.append((_int(piece[1]), _int(piece[2])))
        else:
            raise JsonPathError(
                f"{where} {path!r}: [{inner}] is not a name list, an index list or a slice"
                " (filter expressions and nested names are not supported by SageMaker)"
            )
    return _Step("items", items=tuple(items))


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)


def apply_jsonpath(steps: tuple[_Step, ...], value: Any, path: str) -> Any:
    """The part of ``value`` that ``steps`` select; JsonPathError when it does not fit the record."""
    for step in steps:
        if step.kind == "name":
            if not isinstance(value, dict) or step.names[0] not in value:
                raise JsonPathError(f"{path!r}: the record has no field {step.names[0]!r}")
            value = value[step.names[0]]
        elif step.kind == "names":
            if not isinstance(value, dict):
                raise JsonPathError(f"{path!r}: the record is not a JSON object")
            missing = [name for name in step.names if name not in value]
            if missing:
                raise JsonPathError(f"{path!r}: the record has no field {missing[0]!r}")
            value = {name: value[name] for name in step.names}
        elif step.kind == "all":
            value = list(value.values()) if isinstance(value, dict) else value
        else:
            if not isinstance(value, list):
                raise JsonPathError(f"{path!r}: the record is not an array")
            value = _select_items(value, step.items, path)
    return value


def _select_items(values: list, items, path: str) -> Any:
    if _single_index(items):
        return values[_index(values, items[0], path)]
    chosen = []
    for item in items:
        if isinstance(item, int):
            chosen.append(values[_index(values, item, path)])
        else:
            start, end = item
            chosen.extend(values[start:end])
    return chosen


def _index(values: list, index: int, path: str) -> int:
    # botocore OutputFilter: "If you specify indexes that aren't within the dimension size of the joined
    # dataset, you get an error."
    if not -len(values) <= index < len(values):
        raise JsonPathError(f"{path!r}: index {index} is outside a record of {len(values)} elements")
    return index


# ------------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class DataProcessing:
    input_filter: str = "$"
    output_filter: str = "$"
    join: bool = False

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> DataProcessing:
        spec = arguments.get("DataProcessing") or {}
        return cls(
            spec.get("InputFilter") or "$",
            spec.get("OutputFilter") or "$",
            spec.get("JoinSource", "None") == "Input",
        )

    @property
    def active(self) -> bool:
        return self.input_filter != "$" or self.output_filter != "$" or self.join


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_record(text: str, content_type: str | None) -> Any:
    """A record as SageMaker's data processing sees it: a CSV line as an array of its cells, a JSON
    record as its value (batch-transform-data-processing.html: "SageMaker takes each row as a JSON array")."""
    if _media(content_type) == CSV_TYPE:
        # Cells stay text: what is written back is exactly what was read.
        return next(csv.reader([text]), [])
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise JsonPathError(f"the record is not valid JSON ({err})") from None


def format_record(value: Any, content_type: str | None) -> str:
    if _media(content_type) == CSV_TYPE:
        cells = value if isinstance(value, list) else [value]
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(
            [json.dumps(c) if isinstance(c, (dict, list)) else c for c in cells]
        )
        return buffer.getvalue()
    return json.dumps(value, separators=(",", ":"))


def join_record(source: Any, output: Any, content_type: str | None) -> Any:
    """JoinSource Input (botocore DataProcessing.JoinSource): CSV rows get the output appended; a JSON
    object gets it as ``SageMakerOutput``; any other JSON record becomes ``{"SageMakerInput": ...,
    "SageMakerOutput": ...}``."""
    if _media(content_type) == CSV_TYPE:
        return [*source, *(output if isinstance(output, list) else [output])]
    if isinstance(source, dict):
        return {**source, "SageMakerOutput": output}
    return {"SageMakerInput": source, "SageMakerOutput": output}


def split_records(data: bytes, split_type: str) -> list[bytes]:
    """SplitType Line cuts on newlines (empty lines carry no record); None keeps the object whole."""
    if split_type == "Line":
        return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]
    return [data]


def mini_batches(records: list[bytes], strategy: str, max_bytes: int | None) -> Iterator[list[bytes]]:
    """SingleRecord: one record per request. MultiRecord: as many whole records, newline-separated, as fit
    in MaxPayloadInMB (botocore BatchStrategy). A record larger than the limit fails the job."""
    batch: list[bytes] = []
    size = 0
    for number, record in enumerate(records, start=1):
        if max_bytes is not None and len(record) > max_bytes:
            raise StepFailure(
                f"ClientError: record {number} is {len(record)} bytes, over MaxPayloadInMB "
                f"({max_bytes // MB} MB); raise MaxPayloadInMB or split the input into smaller records"
            )
        if strategy == "SingleRecord":
            yield [record]
            continue
        added = len(record) + (1 if batch else 0)
        if batch and max_bytes is not None and size + added > max_bytes:
            yield batch
            batch, size = [], 0
            added = len(record)
        batch.append(record)
        size += added
    if batch:
        yield batch


# ------------------------------------------------------------------------------------------------ handlers


class BuiltinXGBoostHandler:
    """The built-in XGBoost container's handler in a batch transform job (no SAGEMAKER_PROGRAM):
    aws/sagemaker-xgboost-container algorithm_mode/serve.py ``invocations`` with SAGEMAKER_BATCH set, for
    text/csv input (serve_utils.parse_content_data, encoder.csv_to_dmatrix, serve_utils.predict)."""

    def __init__(self, model_dir: Path, default_accept: str | None):
        import xgboost as xgb

        path = model_dir / "xgboost-model"
        if not path.is_file():
            raise ModelLoadError(
                f"no xgboost-model in the model archive ({sorted(p.name for p in model_dir.iterdir())})"
            )
        self.booster = xgb.Booster()
        try:
            # The container also unpickles; an artifact that needs unpickling is refused here (no pickle
            # for model artifacts), which the container would have loaded.
            self.booster.load_model(str(path))
        except xgb.core.XGBoostError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
            raise ModelLoadError(
                f"xgboost-model is not an XGBoost model file the runner loads: {first}"
            ) from None
        # serve.py _parse_accept: SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, else text/csv.
        self.default_accept = default_accept or CSV_TYPE

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Reply:
        import xgboost as xgb

        if len(body) == 0:
            return Reply(204, b"", "text/html; charset=utf-8")
        if _media(content_type) != CSV_TYPE:
            return _text(415, f"Content-type {content_type} is not supported.")
        try:
            text = body.strip().decode("utf-8")
            rows = [["nan" if cell == "" else cell for cell in line.split(",")] for line in text.split("\n")]
            data = xgb.DMatrix(np.array(rows).astype(float))
        except Exception as err:  # noqa: BLE001 - the container answers any parse failure with this 415
            return _text(
                415,
                "Loading csv data failed with Exception, please ensure data is in csv format:\n"
                f" {type(err)}\n {err}",
            )
        expected, got = self.booster.num_features(), data.num_col()
        if not (expected == got or expected == got + 1):
            return _text(
                400,
                "Unable to evaluate payload provided: Feature size of csv inference data "
                f"{got} is not consistent with feature size of trained model {expected}.",
            )
        predictions = self.booster.predict(data, validate_features=False)
        chosen = (accept or "").split(";", 1)[0].strip().lower()
        if not chosen or chosen == "*/*":
            chosen = self.default_accept
        supported = ["application/json", "application/jsonlines", "application/x-recordio-protobuf", CSV_TYPE]
        if chosen not in supported:
            return _text(
                406, f"Accept type {accept} is not supported. Please use supported accept types: {supported}."
            )
        # serve.py: with SAGEMAKER_BATCH, one str() of each prediction per line, whatever the Accept.
        body = "\n".join(map(str, predictions.tolist())) + "\n"
        content_type = f"{chosen}; charset=utf-8" if chosen.startswith("text/") else chosen
        return Reply(200, body.encode(), content_type)


def _text(status: int, message: str) -> Reply:
    return Reply(status, message.encode(), "text/html; charset=utf-8")


def load_model_handler(container: Mapping[str, Any], model_dir: Path, code_dir: Path, store) -> Any:
    """The handler the model's container serves with: its SAGEMAKER_PROGRAM through
    :mod:`pipelines.serving.handler` (script mode), or the built-in XGBoost handler."""
    environment = container.get("Environment") or {}
    default_accept = environment.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT")
    program = environment.get("SAGEMAKER_PROGRAM")
    if not program:
        return BuiltinXGBoostHandler(model_dir, default_accept)
    submit = environment.get("SAGEMAKER_SUBMIT_DIRECTORY") or "/opt/ml/model/code"
    if submit.startswith("s3://"):
        try:
            data = store.get_bytes(submit)
        except (StoreError, NotFoundError) as err:
            raise StepFailure(f"SAGEMAKER_SUBMIT_DIRECTORY: {err}") from None
        extract_archive(data, code_dir, f"SAGEMAKER_SUBMIT_DIRECTORY {submit}")
        source_dir = code_dir
    elif submit.startswith("/opt/ml/model/"):
        source_dir = model_dir / submit[len("/opt/ml/model/") :]
    else:
        raise StepFailure(
            f"SAGEMAKER_SUBMIT_DIRECTORY {submit!r} is neither an s3:// archive nor under /opt/ml/model"
        )
    script = source_dir / program
    if not script.is_file():
        raise StepFailure(f"SAGEMAKER_PROGRAM {program!r} is not in the code at {submit}")
    module_name = Path(program).stem
    module = _import_script(script, source_dir, module_name)
    return load_handler(module_name, model_dir, default_accept or "application/json", module=module)


def _import_script(script: Path, source_dir: Path, module_name: str):
    # A private module name: two jobs' inference.py never share an entry in sys.modules.
    unique = f"_transform_{abs(hash(str(script)))}_{module_name}"
    spec = importlib.util.spec_from_file_location(unique, script)
    module = importlib.util.module_from_spec(spec)
    with _import_lock:
        sys.path.insert(0, str(source_dir))  # the script's own sibling imports, as in the container
        # Registered while it runs, as an import registers it: a dataclass looks its module up there.
        sys.modules[unique] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - a user script failing at import fails the job, named
            raise StepFailure(
                f"AlgorithmError: importing {script.name} failed: {type(err).__name__}: {err}"
            ) from None
        finally:
            sys.path.remove(str(source_dir))
            sys.modules.pop(unique, None)
    return module


# ------------------------------------------------------------------------------------------------ the job


def _output_records(reply: Reply) -> list[str]:
    text = reply.body.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else [""]


def transform_object(
    data: bytes, arguments: Mapping[str, Any], handler: Any, key: str, log_lines: list[str]
) -> bytes:
    """One input object -> the bytes of its ``.out`` object; StepFailure on the first refused request."""
    source = arguments["TransformInput"]
    output = arguments["TransformOutput"]
    content_type = source.get("ContentType")
    accept = output.get("Accept")
    processing = DataProcessing.from_arguments(arguments)
    input_steps = parse_jsonpath(processing.input_filter, "InputFilter")
    output_steps = parse_jsonpath(processing.output_filter, "OutputFilter")
    max_mb = arguments.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)
    max_bytes = None if max_mb == 0 else int(max_mb) * MB
    split_type = source.get("SplitType") or "None"
    strategy = arguments.get("BatchStrategy") or "MultiRecord"
    assemble_lines = (output.get("AssembleWith") or "None") == "Line"

    # With SplitType None the object is one request; data processing still reads a CSV object's rows as
    # its records ("SageMaker takes each row as a JSON array").
    one_request = split_type == "None"
    csv_rows = processing.active and _media(content_type) == CSV_TYPE
    records = split_records(data, "Line" if csv_rows else split_type)
    parsed: list[Any] = []
    if processing.active:
        sent = []
        for number, record in enumerate(records, start=1):
            try:
                value = parse_record(record.decode("utf-8"), content_type)
                parsed.append(value)
                sent.append(
                    format_record(
                        apply_jsonpath(input_steps, value, processing.input_filter), content_type
                    ).encode()
                )
            except (JsonPathError, UnicodeDecodeError) as err:
                raise StepFailure(f"ClientError: {key}: record {number}: InputFilter: {err}") from None
        records = sent
    if one_request:
        size = sum(map(len, records)) + max(len(records) - 1, 0)
        if max_bytes is not None and size > max_bytes:
            raise StepFailure(
                f"ClientError: {key} is {size} bytes, over MaxPayloadInMB ({max_mb} MB) with "
                "SplitType None; set SplitType Line or raise MaxPayloadInMB"
            )
        batches: Any = [records]
    else:
        batches = mini_batches(records, strategy, max_bytes)
    outputs: list[str] = []
    chunks: list[bytes] = []
    done = 0
    for batch in batches:
        body = b"\n".join(batch)
        reply = handler.invoke(body, content_type, accept)
        if reply.status != 200:
            message = reply.body.decode("utf-8", "replace").strip().splitlines()
            kind = "ClientError" if 400 <= reply.status < 500 else "Bad HTTP status received from algorithm"
            log_lines.append(f"[sagemaker logs]: {key}: {kind}: {reply.status}")
            log_lines.append(f"[sagemaker logs]: {key}: Message:")
            log_lines.extend(f"[sagemaker logs]: {key}: {line}" for line in message)
            raise StepFailure(
                f"AlgorithmError: See job logs for more information ({key}: {kind}: {reply.status}: "
                f"{message[0] if message else ''})"
            )
        if processing.active or assemble_lines:
            answers = _output_records(reply)
            if processing.active and len(answers) != len(batch):
                raise StepFailure(
                    f"ClientError: {key}: the model answered {len(answers)} lines for a mini-batch of "
                    f"{len(batch)} records; joining and filtering need one answer line per record"
                )
            for offset, answer in enumerate(answers):
                if processing.active:
                    answer = _process_output(
                        answer,
                        parsed[done + offset],
                        processing,
                        output_steps,
                        content_type,
                        reply.content_type,
                        key,
                        done + offset + 1,
                    )
                outputs.append(answer)
        else:
            chunks.append(reply.body)
        done += len(batch)
    if processing.active or assemble_lines:
        # AssembleWith Line (botocore AssemblyType): "add a newline character at the end of every
        # transformed record".
        return "".join(f"{line}\n" for line in outputs).encode()
    return b"".join(chunks)


def _process_output(answer, source, processing, output_steps, content_type, answer_type, key, number) -> str:
    try:
        value = parse_record(answer, answer_type)
        if processing.join:
            value = join_record(source, value, content_type)
        value = apply_jsonpath(output_steps, value, processing.output_filter)
    except JsonPathError as err:
        raise StepFailure(f"ClientError: {key}: record {number}: OutputFilter: {err}") from None
    return format_record(value, content_type if processing.join else answer_type)


class TransformExecutor(Executor):
    type = "Transform"
    cacheable = True

    def problems(self, step) -> list[str]:
        args = step.arguments
        problems = []
        reference = args.get("ModelName")
        if not (isinstance(reference, dict) and _MODEL_REFERENCE.match(str(reference.get("Get", "")))):
            problems.append(
                "ModelName must be a Model step's ModelName ({'Get': 'Steps.<step>.ModelName'}): models made "
                "outside the pipeline do not exist locally"
            )
        source = (args.get("TransformInput") or {}).get("DataSource", {}).get("S3DataSource", {})
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            problems.append(
                f"TransformInput S3DataType {source.get('S3DataType')!r} is not supported locally; "
                "use S3Prefix"
            )
        transform_input = args.get("TransformInput") or {}
        if transform_input.get("CompressionType", "None") != "None":
            problems.append("TransformInput CompressionType Gzip is not supported locally")
        if transform_input.get("SplitType", "None") not in ("None", "Line"):
            problems.append(
                f"TransformInput SplitType {transform_input.get('SplitType')!r} is not supported locally; "
                "use None or Line"
            )
        payload = args.get("MaxPayloadInMB")
        if isinstance(payload, int) and not 0 <= payload <= MAX_PAYLOAD_MB:
            problems.append(f"MaxPayloadInMB {payload} is outside 0..{MAX_PAYLOAD_MB}")
        processing = args.get("DataProcessing") or {}
        for field in ("InputFilter", "OutputFilter"):
            path = processing.get(field)
            if isinstance(path, str) and path:
                try:
                    parse_jsonpath(path, f"DataProcessing.{field}")
                except JsonPathError as err:
                    problems.append(str(err))
        if DataProcessing.from_arguments(args).active:
            media = _media(transform_input.get("ContentType"))
            if media not in (CSV_TYPE, *JSON_TYPES):
                problems.append(
                    "DataProcessing needs CSV or JSON input (ContentType "
                    f"{transform_input.get('ContentType')!r}); SageMaker supports JSON and CSV input only"
                )
        return problems

    def cache_inputs(self, arguments):
        return [arguments["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]]

    def outputs(self, properties):
        return [properties["TransformOutput"]["S3OutputPath"]]

    def run(self, run: StepRun) -> StepResult:
        started = now()
        arguments = run.arguments
        container = _model_container(run)
        image = container.get("Image")
        if isinstance(image, str) and runtime_for(image) is None:
            raise StepFailure(unknown_image(image))
        if not (container.get("Environment") or {}).get("SAGEMAKER_PROGRAM") and not _builtin(image):
            raise StepFailure(f"model image {image!r} has no built-in handler locally; set SAGEMAKER_PROGRAM")
        job_dir = run.env.jobs_dir / run.job_name
        fresh_directory(job_dir)
        log_path = job_dir / "log.txt"
        log_lines: list[str] = []
        source_uri = arguments["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        try:
            objects = run.env.store.list(source_uri)
        except StoreError as err:
            raise StepFailure(f"TransformInput S3Uri: {err}") from None
        if not objects:
            raise StepFailure(
                f"ClientError: no object at TransformInput S3Uri {source_uri} in the local object store "
                f"({run.env.store.root}); check the input location"
            )
        model_dir = job_dir / "model"
        model_url = container.get("ModelDataUrl")
        if model_url:
            try:
                archive = run.env.store.get_bytes(model_url)
            except (StoreError, NotFoundError) as err:
                raise StepFailure(f"ModelDataUrl {model_url}: {err}") from None
            extract_archive(archive, model_dir, f"ModelDataUrl {model_url}")
        model_dir.mkdir(parents=True, exist_ok=True)
        try:
            handler = load_model_handler(container, model_dir, job_dir / "code", run.env.store)
        except ModelLoadError as err:
            raise StepFailure(f"AlgorithmError: the model's container did not start: {err}") from None
        output_path = arguments["TransformOutput"]["S3OutputPath"].rstrip("/")
        location = parse_uri(source_uri)
        prefix = location.key.rstrip("/")
        results: list[tuple[str, bytes]] = []
        failure: StepFailure | None = None
        for object_key, path in objects:
            # botocore TransformOutput.S3OutputPath: each input object's result is "<its name>.out" under
            # the output path, at its place relative to the input prefix.
            if object_key == prefix:
                relative = object_key.rsplit("/", 1)[-1]
            else:
                relative = object_key[len(prefix) :].lstrip("/")
            key = f"{location.bucket}/{object_key}"
            try:
                results.append(
                    (
                        f"{output_path}/{relative}.out",
                        transform_object(path.read_bytes(), arguments, handler, key, log_lines),
                    )
                )
            except StepFailure as err:
                failure = failure or err
        # Only wholly transformed objects are uploaded (botocore S3OutputPath: "Batch transform doesn't
        # upload partially processed objects"); a failed one fails the job after the others.
        for uri, data in results:
            run.env.store.put_bytes(uri, data)
        log_path.write_text("".join(f"{line}\n" for line in log_lines))
        if failure is not None:
            raise StepFailure(failure.reason, failure.exception_type, log_path)
        ended = now()
        description = {
            "TransformJobName": run.job_name,
            "TransformJobArn": arn("transform-job", run.job_name),
            "TransformJobStatus": "Completed",
            "ModelName": arguments["ModelName"],
            "MaxConcurrentTransforms": arguments.get("MaxConcurrentTransforms", 1),
            "MaxPayloadInMB": arguments.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB),
            "BatchStrategy": arguments.get("BatchStrategy", "MultiRecord"),
            "Environment": arguments.get("Environment", {}),
            "TransformInput": arguments["TransformInput"],
            "TransformOutput": arguments["TransformOutput"],
            "TransformResources": arguments["TransformResources"],
            "CreationTime": started.isoformat(),
            "TransformStartTime": started.isoformat(),
            "TransformEndTime": ended.isoformat(),
        }
        if "DataProcessing" in arguments:
            description["DataProcessing"] = arguments["DataProcessing"]
        return StepResult(description, {"TransformJob": {"Arn": description["TransformJobArn"]}}, log_path)


def _builtin(image: Any) -> bool:
    runtime = runtime_for(image) if isinstance(image, str) else None
    return runtime is not None and runtime.algorithm == BUILTIN_XGBOOST


def _model_container(run: StepRun) -> Mapping[str, Any]:
    reference = run.step.arguments.get("ModelName")
    match = _MODEL_REFERENCE.match(str(reference.get("Get", ""))) if isinstance(reference, dict) else None
    model = run.context.step_properties(match[1]) if match else None
    if not model:
        raise StepFailure(
            f"ModelName {run.arguments.get('ModelName')!r}: no model of that name in this execution"
        )
    containers = model.get("Containers") or [model.get("PrimaryContainer") or {}]
    if len(containers) != 1:
        raise StepFailure(
            f"model {model.get('ModelName')!r} has {len(containers)} containers; the local runner serves one"
        )
    return containers[0]
