"""A step's Arguments checked against the request of the SageMaker API call the step makes, as
botocore's service model describes it: members, types, required members, bounds and enums.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from pipelines.errors import did_you_mean

#: Step type -> (the API call SageMaker makes for it, the request member the pipeline fills in
#: itself). A step type not listed has no API request to check.
STEP_REQUESTS: dict[str, tuple[str, str | None]] = {
    "Processing": ("CreateProcessingJob", "ProcessingJobName"),
    "Training": ("CreateTrainingJob", "TrainingJobName"),
    "Tuning": ("CreateHyperParameterTuningJob", "HyperParameterTuningJobName"),
    "Transform": ("CreateTransformJob", "TransformJobName"),
    "Model": ("CreateModel", "ModelName"),
    "RegisterModel": ("CreateModelPackage", None),
}


class _Unknown:
    """The value of an expression that is only known once the execution runs."""

    def __repr__(self) -> str:
        return "<known at run time>"


#: What a resolver answers for an expression whose value is not known before the run.
UNKNOWN = _Unknown()

#: An expression (a one-key object such as {"Get": ...}) -> (its value or UNKNOWN, where the value
#: came from, e.g. "parameter MaxTuningJobs"); None when the object is not an expression.
Resolver = Callable[[dict], "tuple[Any, str] | None"]

#: Enums longer than this (instance types) are not listed in full in a message.
_LISTED = 12
_NUMBERS = {"integer": int, "long": int, "float": (int, float), "double": (int, float)}
_KINDS = {
    "structure": "an object",
    "map": "an object",
    "list": "a list",
    "string": "a string",
    "boolean": "a boolean",
    "integer": "a whole number",
    "long": "a whole number",
    "float": "a number",
    "double": "a number",
    "blob": "a string",
    "timestamp": "a timestamp",
}


def request_problems(step_type: str, arguments: Mapping[str, Any], resolve: Resolver) -> list[str]:
    """Every way ``arguments`` (a step's Arguments) is not a valid request of its step type's API
    call, each naming where; [] for a type with no API request. Expressions are replaced by what
    ``resolve`` knows of them before the run; what is known only at run time is not checked."""
    if step_type not in STEP_REQUESTS:
        return []
    operation, filled_in = STEP_REQUESTS[step_type]
    shape = _input_shape(operation)
    problems: list[str] = []
    _check(arguments, shape, "Arguments", resolve, problems, skip_required=filled_in)
    return [f"{problem} ({operation})" for problem in problems]


@functools.cache
def _input_shape(operation: str):
    return _service_model().operation_model(operation).input_shape


@functools.lru_cache(maxsize=1)
def _service_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def _check(value, shape, where, resolve, problems, skip_required=None, source=None) -> None:
    if isinstance(value, dict):
        resolved = resolve(value)
        if resolved is not None:
            value, source = resolved
            if value is UNKNOWN:
                return
    given = _Given(value, source)
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{where}: expected {_KINDS[kind]}, got {_kind(value, given)}")
            return
        members = shape.members
        for name in shape.required_members:
            if name != skip_required and name not in value:
                problems.append(f"{where}: required member {name!r} is missing")
        for name, item in value.items():
            if name not in members:
                hint = did_you_mean(name, members) or f" Known: {', '.join(members)}"
                problems.append(f"{where}: unknown member {name!r}.{hint}")
            else:
                _check(item, members[name], f"{where}.{name}", resolve, problems)
    elif kind == "list":
        if not isinstance(value, list):
            problems.append(f"{where}: expected {_KINDS[kind]}, got {_kind(value, given)}")
            return
        _bounds(len(value), shape.metadata, where, "items", problems)
        for index, item in enumerate(value):
            _check(item, shape.member, f"{where}[{index}]", resolve, problems)
    elif kind == "map":
        if not isinstance(value, dict):
            problems.append(f"{where}: expected {_KINDS[kind]}, got {_kind(value, given)}")
            return
        _bounds(len(value), shape.metadata, where, "entries", problems)
        for key, item in value.items():
            _check(key, shape.key, f"{where} key", resolve, problems)
            _check(item, shape.value, f"{where}[{key!r}]", resolve, problems)
    elif kind in ("string", "blob"):
        if not isinstance(value, str):
            if source is None:  # how SageMaker renders a parameter of another type is its own
                problems.append(f"{where}: expected {_KINDS[kind]}, got {_kind(value, given)}")
            return
        _bounds(len(value), shape.metadata, where, "characters", problems, given)
        if shape.enum and value not in shape.enum:
            allowed = (
                f"one of {', '.join(shape.enum)}"
                if len(shape.enum) <= _LISTED
                else f"a valid {shape.name} ({len(shape.enum)} values, e.g. {', '.join(shape.enum[:3])})"
            )
            problems.append(f"{where}: {given} is not {allowed}.{did_you_mean(value, shape.enum)}")
    elif kind in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, _NUMBERS[kind]):
            if source is None:
                problems.append(f"{where}: expected {_KINDS[kind]}, got {_kind(value, given)}")
            return
        metadata = shape.metadata
        if "min" in metadata and value < metadata["min"]:
            problems.append(f"{where}: {given} is below the minimum {metadata['min']}")
        if "max" in metadata and value > metadata["max"]:
            problems.append(f"{where}: {given} is above the maximum {metadata['max']}")
    elif kind == "boolean":
        if not isinstance(value, bool) and source is None:
            problems.append(f"{where}: expected {_KINDS[kind]}, got {_kind(value, given)}")
    elif kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            problems.append(f"{where}: expected {_KINDS[kind]}, got {_kind(value, given)}")


def _bounds(
    length: int, metadata: Mapping, where: str, unit: str, problems: list, given: object = ""
) -> None:
    what = f"{given} has" if given else "has"
    if "min" in metadata and length < metadata["min"]:
        problems.append(f"{where}: {what} {length} {unit}, fewer than the minimum {metadata['min']}")
    if "max" in metadata and length > metadata["max"]:
        problems.append(f"{where}: {what} {length} {unit}, more than the maximum {metadata['max']}")


class _Given:
    """How a value is quoted in a message ("parameter X=5", "'text'"), built only for a problem."""

    def __init__(self, value: Any, source: str | None):
        self.value, self.source = value, source

    def __str__(self) -> str:
        if self.source:
            return f"{self.source}={_shown(self.value)}"
        return "" if isinstance(self.value, dict | list) else _shown(self.value)

    def __bool__(self) -> bool:
        return bool(self.source) or not isinstance(self.value, dict | list)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _kind(value: Any, given: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    noun = {str: "a string", bool: "a boolean"}.get(type(value), "a number")
    return f"{noun} {given}" if given else noun
