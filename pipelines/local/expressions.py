"""The expressions of a pipeline definition (Get, Std:Join, Std:JsonGet, conditions): checked and evaluated.

Values come from a ``Context`` the runner fills in as steps finish; step properties are shaped like
the AWS Describe* answers, so an expression reads the same locally as it does on SageMaker.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.errors import TemplateError

PARAMETERS, EXECUTION, STEPS = "Parameters", "Execution", "Steps"

#: Every ``Execution.<name>`` SageMaker defines (the SDK's ``ExecutionVariables``).
EXECUTION_VARIABLES = (
    "PipelineExecutionId",
    "PipelineExecutionArn",
    "PipelineName",
    "PipelineArn",
    "StartDateTime",
    "CurrentDateTime",
    "TrainingJobName",
    "ProcessingJobName",
)

FUNCTIONS = ("Std:Join", "Std:JsonGet")

_ORDERINGS = {
    "GreaterThan": operator.gt,
    "GreaterThanOrEqualTo": operator.ge,
    "LessThan": operator.lt,
    "LessThanOrEqualTo": operator.le,
}
CONDITION_TYPES = ("Equals", *_ORDERINGS, "In", "Not", "Or")

#: The field that names an element of a Describe* list, in the order tried, and what the element
#: is called in messages. ``Outputs['train']`` means the element whose name field is 'train'.
NAME_KEYS = {
    "OutputName": "output",
    "InputName": "input",
    "MetricName": "metric",
    "ChannelName": "channel",
    "Name": "element",
    "Key": "element",
}

_NAME = r"[^.\[\]'\"]+"
_TOKEN = re.compile(rf"""\.(?P<attr>{_NAME})|\[(?P<index>\d+)\]|\['(?P<key>[^']*)'\]|\["(?P<dkey>[^"]*)"\]""")
_JSON_GET_SHAPE = '{"PropertyFile": {"Get": "Steps.<step>.PropertyFiles.<name>"}, "Path": "<json path>"}'


class ExpressionError(TemplateError):
    """An expression is malformed or cannot be evaluated; the message starts with the expression."""


@dataclass(frozen=True)
class Context:
    """What expressions read. The runner supplies it; the two callables return None for nothing recorded.

    ``step_properties(step)`` is the step's properties shaped like the AWS Describe* answer (lists
    stay lists); ``property_file(step, name)`` is the parsed JSON of a property file it wrote.
    """

    parameters: Mapping[str, Any]
    execution: Mapping[str, Any]
    step_properties: Callable[[str], Mapping[str, Any] | None]
    property_file: Callable[[str, str], Any]


@dataclass(frozen=True)
class _Token:
    kind: str  # "attr", "index" or "key"
    value: str | int
    end: int  # offset in the path just past this token, to quote the path up to a failure


def _tokens(path: str) -> list[_Token]:
    """``.a['b'][0]`` as tokens; ValueError naming the part that cannot be read."""
    tokens, pos = [], 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None:
            raise ValueError(f"cannot read {path[pos:]!r} (expected .name, [n] or ['name'])")
        if match["attr"] is not None:
            tokens.append(_Token("attr", match["attr"], match.end()))
        elif match["index"] is not None:
            tokens.append(_Token("index", int(match["index"]), match.end()))
        else:
            key = match["key"] if match["key"] is not None else match["dkey"]
            tokens.append(_Token("key", key, match.end()))
        pos = match.end()
    return tokens


@dataclass(frozen=True)
class Reference:
    """A parsed ``{"Get": text}``: ``root`` is Parameters, Execution or Steps; ``path`` follows the step."""

    text: str
    root: str
    name: str
    path: str = ""

    @functools.cached_property
    def tokens(self) -> list[_Token]:
        # Tokenized once: a reference is read several times by the checks of a long definition.
        return _tokens(self.path)

    @property
    def property_file(self) -> str | None:
        """The property file's name for ``Steps.<step>.PropertyFiles.<name>``, else None."""
        tokens = self.tokens
        if self.reads_property_files and len(tokens) == 2 and tokens[1].kind != "index":
            return str(tokens[1].value)
        return None

    @property
    def reads_property_files(self) -> bool:
        """Whether the path starts at ``PropertyFiles`` (only Std:JsonGet may read those)."""
        tokens = self.tokens
        return bool(tokens) and tokens[0].kind == "attr" and tokens[0].value == "PropertyFiles"


def parse_reference(text: Any) -> Reference:
    """Parse a Get string; ExpressionError when it is not Parameters.X, Execution.X or Steps.S[.path]."""
    if not isinstance(text, str):
        raise ExpressionError(f"Get: expected a string, got {_describe(text)}")
    root, dot, rest = text.partition(".")
    if root == STEPS and dot:
        name = re.match(_NAME, rest)
        if name is None:
            raise ExpressionError(f"Get {text!r}: no step name after 'Steps.'")
        path = rest[name.end() :]
        try:
            _tokens(path)
        except ValueError as exc:
            raise ExpressionError(f"Get {text!r}: {exc}") from None
        return Reference(text, root, name.group(), path)
    if root in (PARAMETERS, EXECUTION) and re.fullmatch(_NAME, rest):
        return Reference(text, root, rest)
    raise ExpressionError(
        f"Get {text!r}: expected Parameters.<name>, Execution.<name> or Steps.<step>.<property path>"
    )


def references(expr: Any) -> set[str]:
    """Every Get string in ``expr``, wherever it sits (inside Std:Join, Std:JsonGet, conditions)."""
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            if _function(value) == "Get" and isinstance(value["Get"], str):
                found.add(value["Get"])
                return
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    visit(expr)
    return found


def expression_problems(expr: Any, where: str = "") -> list[str]:
    """Problems of form in ``expr`` (a malformed Get, Join or JsonGet, an unknown function), each prefixed
    with where it sits below ``where``. Nothing is evaluated, so this runs before any step does."""
    problems: list[str] = []

    def visit(value: Any, here: str) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, f"{here}[{index}]")
            return
        if not isinstance(value, dict):
            return
        function = _function(value)
        if function is None:
            for key, item in value.items():
                visit(item, f"{here}.{key}" if here else key)
            return
        try:
            if function == "Get":
                _step_or_value_reference(value["Get"])
            elif function == "Std:Join":
                _, values = _join_spec(value[function])
                for index, item in enumerate(values):
                    visit(item, f"{here}.Std:Join.Values[{index}]" if here else f"Std:Join.Values[{index}]")
            elif function == "Std:JsonGet":
                _json_get_spec(value[function])
            else:
                _unknown_function(function)
        except ExpressionError as exc:
            problems.append(f"{here}: {exc}" if here else str(exc))

    visit(expr, where)
    return problems


def evaluate(expr: Any, ctx: Context) -> Any:
    """``expr`` with every Get, Std:Join and Std:JsonGet replaced by its value; plain values pass through."""
    if isinstance(expr, dict):
        function = _function(expr)
        if function == "Get":
            return _get(expr["Get"], ctx)
        if function == "Std:Join":
            return _join(expr[function], ctx)
        if function == "Std:JsonGet":
            return _json_get(expr[function], ctx)
        if function is not None:
            _unknown_function(function)
        return {key: evaluate(value, ctx) for key, value in expr.items()}
    if isinstance(expr, list):
        return [evaluate(value, ctx) for value in expr]
    return expr


def evaluate_conditions(conditions: Any, ctx: Context, *, where: str = "Conditions") -> bool:
    """A Condition step's ``Conditions``: true when all are (they are a conjunction, as on AWS)."""
    if not isinstance(conditions, list):
        raise ExpressionError(f"{where}: expected a list of conditions, got {_describe(conditions)}")
    return all(
        evaluate_condition(condition, ctx, where=f"{where}[{index}]")
        for index, condition in enumerate(conditions)
    )


def evaluate_condition(condition: Any, ctx: Context, *, where: str = "Condition") -> bool:
    """One condition of any type in ``CONDITION_TYPES``; ExpressionError names ``where`` and the values."""
    kind = _condition_type(condition, where)
    here = f"{where} ({kind})"
    if kind == "Not":
        return not evaluate_condition(condition["Condition"], ctx, where=f"{where}.Condition")
    if kind == "Or":
        return any(
            evaluate_condition(inner, ctx, where=f"{where}.Conditions[{index}]")
            for index, inner in enumerate(condition["Conditions"])
        )
    if kind == "In":
        query = evaluate(condition["QueryValue"], ctx)
        return any(
            _comparable(query, value) and query == value for value in evaluate(condition["Values"], ctx)
        )
    left, right = evaluate(condition["LeftValue"], ctx), evaluate(condition["RightValue"], ctx)
    if kind == "Equals":
        if not _comparable(left, right):
            raise ExpressionError(f"{here}: cannot compare {_describe(left)} with {_describe(right)}")
        return left == right
    if not (_is_number(left) and _is_number(right)):
        raise ExpressionError(
            f"{here}: compares numbers, got LeftValue {_describe(left)} and RightValue {_describe(right)}"
        )
    return _ORDERINGS[kind](left, right)


def condition_problems(condition: Any, where: str = "Condition") -> list[str]:
    """Problems of form in a condition (unknown type, missing operands), nested ones included."""
    try:
        kind = _condition_type(condition, where)
    except ExpressionError as exc:
        return [str(exc)]
    if kind == "Not":
        return condition_problems(condition["Condition"], f"{where}.Condition")
    if kind == "Or":
        return [
            problem
            for index, inner in enumerate(condition["Conditions"])
            for problem in condition_problems(inner, f"{where}.Conditions[{index}]")
        ]
    return []


def _condition_type(condition: Any, where: str) -> str:
    """The condition's Type once its operands are there in the right form; ExpressionError otherwise."""
    if not isinstance(condition, dict):
        raise ExpressionError(f"{where}: expected a condition object, got {_describe(condition)}")
    kind = condition.get("Type")
    if kind not in CONDITION_TYPES:
        raise ExpressionError(
            f"{where}: unknown condition type {kind!r}; supported: {', '.join(CONDITION_TYPES)}"
        )
    needs = {
        "Not": {"Condition": dict},
        "Or": {"Conditions": list},
        "In": {"QueryValue": object, "Values": list},
    }
    for key, form in needs.get(kind, {"LeftValue": object, "RightValue": object}).items():
        if key not in condition:
            raise ExpressionError(f"{where} ({kind}): missing {key}")
        if form is not object and not isinstance(condition[key], form):
            wanted = "a list" if form is list else "an object"
            raise ExpressionError(
                f"{where} ({kind}): {key} must be {wanted}, got {_describe(condition[key])}"
            )
    return kind


def function_of(expr: dict) -> str | None:
    """The function a one-key object calls (``Get`` or ``Std:...``); None for a plain object."""
    return _function(expr)


def _function(expr: dict) -> str | None:
    """The function a one-key object calls (``Get`` or ``Std:...``); None for a plain object."""
    if len(expr) == 1:
        (key,) = expr
        if key == "Get" or (isinstance(key, str) and key.startswith("Std:")):
            return key
    return None


def _unknown_function(function: str) -> None:
    raise ExpressionError(f"unknown function {function!r}; supported: {', '.join(FUNCTIONS)}")


def _step_or_value_reference(text: Any) -> Reference:
    """A Get's reference; property files are only read through Std:JsonGet, as on AWS."""
    reference = parse_reference(text)
    if reference.root == STEPS and reference.reads_property_files:
        raise ExpressionError(
            f"Get {text!r}: a property file is read with Std:JsonGet {_JSON_GET_SHAPE}, not with Get"
        )
    return reference


def _get(text: Any, ctx: Context) -> Any:
    reference = _step_or_value_reference(text)
    if reference.root in (PARAMETERS, EXECUTION):
        values, noun = (
            (ctx.parameters, "parameter")
            if reference.root == PARAMETERS
            else (ctx.execution, "execution variable")
        )
        if reference.name not in values:
            raise ExpressionError(f"{text}: no {noun} {reference.name!r}; known: {_names(values)}")
        return values[reference.name]
    properties = ctx.step_properties(reference.name)
    if properties is None:
        raise ExpressionError(
            f"{text}: step {reference.name!r} has no recorded properties (it has not run, or did not succeed)"
        )
    try:
        return _walk(properties, _tokens(reference.path))
    except _PathError as exc:
        prefix = f"{STEPS}.{reference.name}{reference.path[: exc.end]}"
        raise ExpressionError(f"{prefix}: {exc.reason}") from None


def _join_spec(spec: Any) -> tuple[str, list]:
    if not (
        isinstance(spec, dict) and isinstance(spec.get("On"), str) and isinstance(spec.get("Values"), list)
    ):
        raise ExpressionError(f'Std:Join: expected {{"On": "<separator>", "Values": [...]}}, got {spec!r}')
    return spec["On"], spec["Values"]


def _join(spec: Any, ctx: Context) -> str:
    separator, values = _join_spec(spec)
    return separator.join(_render(evaluate(value, ctx), index) for index, value in enumerate(values))


def _render(value: Any, index: int) -> str:
    """A joined value written as SageMaker writes it: JSON-like booleans, shortest float form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    raise ExpressionError(f"Std:Join Values[{index}]: cannot join {_describe(value)}")


def _json_get_spec(spec: Any) -> tuple[Reference, str, str, list[_Token]]:
    """(property file reference, its file name, Path, Path's tokens) of a Std:JsonGet, checked."""
    if isinstance(spec, dict) and "S3Uri" in spec:
        raise ExpressionError(
            "Std:JsonGet: reading S3Uri (the output of a @step function) is not supported; "
            f"use a property file: {_JSON_GET_SHAPE}"
        )
    property_file = spec.get("PropertyFile") if isinstance(spec, dict) else None
    reference = None
    if isinstance(property_file, dict) and _function(property_file) == "Get":
        reference = parse_reference(property_file["Get"])
    if reference is None or reference.root != STEPS or reference.property_file is None:
        raise ExpressionError(f"Std:JsonGet: expected {_JSON_GET_SHAPE}, got {spec!r}")
    path = spec.get("Path")
    if not isinstance(path, str) or not path:
        raise ExpressionError(f"Std:JsonGet {reference.text}: Path must be a non-empty string, got {path!r}")
    try:
        tokens = _tokens(_dotted(path))
    except ValueError as exc:
        raise ExpressionError(f"Std:JsonGet {reference.text} Path {path!r}: {exc}") from None
    return reference, reference.property_file, path, tokens


def _dotted(json_path: str) -> str:
    """A JsonGet Path (``a.b[0]``) in the form of a property path (``.a.b[0]``)."""
    return json_path if json_path.startswith("[") else f".{json_path}"


def _json_get(spec: Any, ctx: Context) -> Any:
    reference, name, path, tokens = _json_get_spec(spec)
    document = ctx.property_file(reference.name, name)
    if document is None:
        raise ExpressionError(
            f"{reference.text}: step {reference.name!r} has no property file {name!r} recorded "
            "(it has not run, or did not write it)"
        )
    try:
        return _walk(document, tokens)
    except _PathError as exc:
        # The tokens were read from the dotted form; quote the Path as the user wrote it.
        offset = len(_dotted(path)) - len(path)
        raise ExpressionError(f"{reference.text} Path {path[: exc.end - offset]!r}: {exc.reason}") from None


class _PathError(Exception):
    def __init__(self, reason: str, end: int):
        super().__init__(reason)
        self.reason, self.end = reason, end


def _walk(value: Any, tokens: list[_Token]) -> Any:
    for token in tokens:
        value = _step_into(value, token)
    return value


def _step_into(value: Any, token: _Token) -> Any:
    if token.kind == "index":
        if not isinstance(value, list):
            raise _PathError(f"[{token.value}] needs a list, found {_describe(value)}", token.end)
        if token.value >= len(value):
            raise _PathError(f"index {token.value} is out of range: the list has {len(value)}", token.end)
        return value[token.value]
    if isinstance(value, dict):
        if token.value not in value:
            raise _PathError(f"no key {token.value!r}; keys: {_names(value)}", token.end)
        return value[token.value]
    if isinstance(value, list) and token.kind == "key":
        return _select_by_name(value, str(token.value), token.end)
    if isinstance(value, list):
        raise _PathError(
            f"cannot read {token.value!r} from a list; select an element with [n] or ['<name>']", token.end
        )
    raise _PathError(f"cannot read {token.value!r} from {_describe(value)}", token.end)


def _select_by_name(items: list, name: str, end: int) -> Any:
    names, noun = [], None
    for item in items:
        key = next((key for key in NAME_KEYS if isinstance(item, dict) and key in item), None)
        if key is None:
            continue
        if item[key] == name:
            return item
        names.append(str(item[key]))
        noun = noun or NAME_KEYS[key]
    if noun is None:
        why = "the list is empty" if not items else f"its elements have none of {', '.join(NAME_KEYS)}"
        raise _PathError(f"no element named {name!r}: {why}", end)
    raise _PathError(f"no {noun} named {name!r}; {noun}s: {', '.join(names)}", end)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _comparable(left: Any, right: Any) -> bool:
    """Numbers compare with numbers (1 == 1.0); anything else only with its own type (True != 1)."""
    return (_is_number(left) and _is_number(right)) or type(left) is type(right)


def _names(values: Mapping) -> str:
    return ", ".join(map(str, values)) or "(none)"


def _describe(value: Any) -> str:
    """A value with its pipeline type, for messages: ``Float 0.71``, ``String 'abc'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"Boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"Integer {value}"
    if isinstance(value, float):
        return f"Float {value!r}"
    if isinstance(value, str):
        return f"String {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
