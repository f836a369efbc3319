"""A pipeline definition JSON read into steps and parameters, and checked whole before any step runs.

Nothing here is specific to one template: any definition SageMaker accepts, written by any SDK
version, parses the same way; the runner decides which step types it can execute.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from pipelines.errors import ConfigError, did_you_mean, join_problems
from pipelines.local.expressions import (
    EXECUTION,
    EXECUTION_VARIABLES,
    PARAMETERS,
    STEPS,
    ExpressionError,
    condition_problems,
    expression_problems,
    function_of,
    parse_reference,
    references,
)
from pipelines.local.shapes import UNKNOWN, request_problems

PARAMETER_TYPES = ("Boolean", "Float", "Integer", "String")
CONDITION = "Condition"
#: Step fields beside Arguments that may hold expressions (QualityCheck and ClarifyCheck steps):
#: validated and followed for dependencies like Arguments.
CHECK_STEP_FIELDS = (
    "CheckType", "ModelPackageGroupName", "SkipCheck", "FailOnViolation", "RegisterNewBaseline",
    "SuppliedBaselineStatistics", "SuppliedBaselineConstraints", "ModelName",
)  # fmt: skip
#: Where a Condition step keeps its branches, and the label each branch has in ``StepSpec.branch``.
BRANCHES = {"IfSteps": "if", "ElseSteps": "else"}


class DefinitionError(ConfigError):
    """The definition or the parameters given for it are invalid; nothing was run.

    ``problems`` lists every problem found; the message holds them all on one line.
    """

    def __init__(self, message: str, problems: Iterable[str] = ()):
        super().__init__(message)
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Parameter:
    """A declared pipeline parameter; ``default`` is None when the definition gives none."""

    name: str
    type: str
    default: str | int | float | bool | None = None


@dataclass(frozen=True)
class PropertyFileSpec:
    """A JSON file a step writes into one of its outputs, which Std:JsonGet can read."""

    name: str
    output_name: str
    file_path: str


@dataclass(frozen=True)
class StepSpec:
    """One step as the definition declares it, arguments still unevaluated.

    A Condition step's ``arguments`` lack IfSteps and ElseSteps: its branch steps are steps of
    their own, each with ``branch`` set to (condition step name, "if" or "else"). ``raw`` is the
    step's JSON as written; ``location`` is where it sits, e.g. ``Steps[4].Arguments.IfSteps[0]``.
    """

    name: str
    type: str
    arguments: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    property_files: tuple[PropertyFileSpec, ...] = ()
    cache_config: dict[str, Any] | None = None
    retry_policies: tuple[dict[str, Any], ...] = ()
    branch: tuple[str, str] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    location: str = ""


@dataclass(frozen=True)
class Definition:
    """A parsed definition. ``steps`` holds every step, branch steps included, in definition order
    (a Condition step comes just before its branches); a step whose name was already taken is kept
    apart in ``duplicate_steps`` for ``validate`` to report."""

    source: str
    parameters: tuple[Parameter, ...]
    steps: dict[str, StepSpec]
    duplicate_steps: tuple[StepSpec, ...] = ()


#: Far beyond any definition the SDK writes (about ten levels), far within Python's recursion limit.
MAX_NESTING = 100


def _nesting(document: Any) -> int:
    """How deep lists and objects nest in ``document``, found without recursion."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def parse_definition(text: str, source: str) -> Definition:
    """Read a definition JSON; DefinitionError naming ``source`` and where for malformed JSON or shape."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"{source}: not valid JSON: {exc}") from None
    except RecursionError:
        raise DefinitionError(
            f"{source}: nested deeper than Python's JSON reader can follow; a pipeline definition "
            f"nests a few levels (at most {MAX_NESTING} here)"
        ) from None
    depth = _nesting(document)
    if depth > MAX_NESTING:
        # The runner walks expressions and request shapes recursively: refuse what would overflow.
        raise DefinitionError(
            f"{source}: nested {depth} levels deep; a pipeline definition nests a few levels "
            f"(at most {MAX_NESTING} here)"
        )
    reader = _Reader(source)
    reader.expect(document, dict, "the definition")
    parameters = tuple(
        reader.parameter(item, f"Parameters[{index}]")
        for index, item in enumerate(reader.expect(document.get("Parameters", []), list, "Parameters"))
    )
    steps: dict[str, StepSpec] = {}
    duplicates: list[StepSpec] = []
    for step in reader.steps(document.get("Steps"), "Steps", None):
        if step.name in steps:
            duplicates.append(step)
        else:
            steps[step.name] = step
    return Definition(source, parameters, steps, tuple(duplicates))


class _Reader:
    """Shape checks of the definition; the first problem ends the parse with its location."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, reason: str) -> NoReturn:
        raise DefinitionError(f"{self.source}: {where}: {reason}")

    def expect(self, value: Any, form: type, where: str) -> Any:
        if not isinstance(value, form):
            wanted = {dict: "an object", list: "a list", str: "a string"}[form]
            self.fail(where, f"expected {wanted}, got {_json_kind(value)}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not (isinstance(value, str) and value):
            self.fail(where, f"expected a non-empty string, got {_json_kind(value)}")
        return value

    def parameter(self, item: Any, where: str) -> Parameter:
        self.expect(item, dict, where)
        name = self.text(item.get("Name"), f"{where}.Name")
        kind = item.get("Type")
        if kind not in PARAMETER_TYPES:
            self.fail(
                f"{where}.Type",
                f"{kind!r} is not a parameter type; expected one of {', '.join(PARAMETER_TYPES)}",
            )
        default = item.get("DefaultValue")
        if default is not None:
            default = typed_value(default, kind)
            if default is None:
                self.fail(f"{where}.DefaultValue", f"{item['DefaultValue']!r} is not {_TYPE_HELP[kind]}")
        return Parameter(name, kind, default)

    def steps(self, items: Any, where: str, branch: tuple[str, str] | None) -> Iterable[StepSpec]:
        for index, item in enumerate(self.expect(items, list, where)):
            step = self.step(item, f"{where}[{index}]", branch)
            yield step
            if step.type == CONDITION:
                arguments = step.raw.get("Arguments", {})
                for key, label in BRANCHES.items():
                    yield from self.steps(
                        arguments.get(key, []), f"{step.location}.Arguments.{key}", (step.name, label)
                    )

    def step(self, item: Any, where: str, branch: tuple[str, str] | None) -> StepSpec:
        self.expect(item, dict, where)
        name = self.text(item.get("Name"), f"{where}.Name")
        kind = self.text(item.get("Type"), f"{where}.Type")
        arguments = dict(self.expect(item.get("Arguments", {}), dict, f"{where}.Arguments"))
        if kind == CONDITION:
            self.expect(arguments.get("Conditions"), list, f"{where}.Arguments.Conditions")
            for key in BRANCHES:
                arguments.pop(key, None)
        depends_on = []
        for index, entry in enumerate(self.expect(item.get("DependsOn", []), list, f"{where}.DependsOn")):
            if isinstance(entry, dict):
                # SDK run conditions ({"Step": ..., "Trigger": "Failed"}) need failure semantics
                # the runner does not have; refusing is better than running on the wrong outcome.
                self.fail(
                    f"{where}.DependsOn[{index}]",
                    f"run conditions ({entry!r}) are not supported; expected a step name",
                )
            depends_on.append(self.text(entry, f"{where}.DependsOn[{index}]"))
        property_files = tuple(
            self.property_file(entry, f"{where}.PropertyFiles[{index}]")
            for index, entry in enumerate(
                self.expect(item.get("PropertyFiles", []), list, f"{where}.PropertyFiles")
            )
        )
        cache_config = item.get("CacheConfig")
        if cache_config is not None:
            self.expect(cache_config, dict, f"{where}.CacheConfig")
        retry_policies = self.expect(item.get("RetryPolicies", []), list, f"{where}.RetryPolicies")
        for index, policy in enumerate(retry_policies):
            self.expect(policy, dict, f"{where}.RetryPolicies[{index}]")
        return StepSpec(
            name=name,
            type=kind,
            arguments=arguments,
            depends_on=tuple(depends_on),
            property_files=property_files,
            cache_config=cache_config,
            retry_policies=tuple(retry_policies),
            branch=branch,
            raw=item,
            location=where,
        )

    def property_file(self, entry: Any, where: str) -> PropertyFileSpec:
        self.expect(entry, dict, where)
        return PropertyFileSpec(
            name=self.text(entry.get("PropertyFileName"), f"{where}.PropertyFileName"),
            output_name=self.text(entry.get("OutputName"), f"{where}.OutputName"),
            file_path=self.text(entry.get("FilePath"), f"{where}.FilePath"),
        )


def resolve_parameters(definition: Definition, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared parameter's value: the override (a CLI string, read as the declared type) or the
    default. DefinitionError listing every unknown name, badly typed value and missing value."""
    values, problems = _resolve_parameters(definition, overrides)
    if problems:
        raise DefinitionError(
            f"invalid parameters for {definition.source}: {join_problems(problems)}", problems
        )
    return values


def _resolve_parameters(
    definition: Definition, overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    declared = {parameter.name: parameter for parameter in definition.parameters}
    values, problems = {}, []
    for name, value in overrides.items():
        if name not in declared:
            problems.append(f"unknown parameter {name!r}.{_hint(name, declared, 'Declared parameters')}")
            continue
        parameter = declared[name]
        typed = typed_value(value, parameter.type, from_text=True)
        if typed is None:
            problems.append(f"parameter {name}={value!r} is not {_TYPE_HELP[parameter.type]}")
        else:
            values[name] = typed
    for parameter in definition.parameters:
        if parameter.name in values or parameter.name in overrides:
            continue
        if parameter.default is None:
            problems.append(
                f"parameter {parameter.name!r} has no default and no value was given: pass "
                f"{parameter.name}=<{parameter.type}>"
            )
        else:
            values[parameter.name] = parameter.default
    # Declared order, whatever the order of the overrides.
    return {name: values[name] for name in declared if name in values}, problems


_TYPE_HELP = {
    "String": "a String",
    "Integer": "an Integer (a whole number such as 8)",
    "Float": "a Float (a number such as 0.75)",
    "Boolean": "a Boolean (true or false)",
}
_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def typed_value(value: Any, kind: str, from_text: bool = False) -> Any:
    """``value`` as a ``kind`` parameter value, or None when it is not one. With ``from_text``, a
    string is read as a CLI value ("8", "0.75", "true") rather than taken as a String."""
    if from_text and isinstance(value, str) and kind != "String":
        text = value.strip()
        if kind == "Integer" and _INTEGER.fullmatch(text):
            return int(text)
        if kind == "Float" and _FLOAT.fullmatch(text) and math.isfinite(float(text)):
            return float(text)  # "1e999" reads as inf: refused, as a JSON number that large is
        if kind == "Boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        return None
    if kind == "String":
        return value if isinstance(value, str) else None
    if kind == "Boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if kind == "Integer":
        return value if isinstance(value, int) else None
    return float(value) if math.isfinite(value) else None


def dependencies(step: StepSpec) -> set[str]:
    """The steps ``step`` must wait for: those its arguments read, its DependsOn, and for a branch
    step, its Condition step. Names are returned as written, known or not."""
    names = set(step.depends_on)
    for text in references([step.arguments, *(step.raw.get(f) for f in CHECK_STEP_FIELDS)]):
        try:
            reference = parse_reference(text)
        except ExpressionError:
            continue  # a malformed Get is reported by validate; it names no step to wait for
        if reference.root == STEPS:
            names.add(reference.name)
    if step.branch is not None:
        names.add(step.branch[0])
    return names


def topological_order(definition: Definition) -> list[str]:
    """Step names in an order where each comes after everything it depends on; among steps ready at
    the same time, definition order decides. DefinitionError naming the steps of every cycle."""
    order, cycles = _order(definition)
    if cycles:
        raise DefinitionError(f"{definition.source}: {join_problems(cycles)}", cycles)
    return order


def validate(
    definition: Definition,
    overrides: Mapping[str, Any],
    supported_types: Iterable[str],
    extra_checks: Callable[[StepSpec], list[str]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Check the whole definition and the parameter overrides; return (parameter values, run order).

    Every problem is collected first and one DefinitionError lists them all. ``extra_checks`` adds
    a runner's own problems for a step of a supported type; each is prefixed with the step's name.
    """
    supported = sorted(set(supported_types))
    steps = definition.steps
    problems = [
        f"duplicate step name {step.name!r} at {steps[step.name].location} and {step.location}"
        for step in definition.duplicate_steps
    ]
    declared: dict[str, Parameter] = {}
    for parameter in definition.parameters:
        if parameter.name in declared:
            problems.append(f"parameter {parameter.name!r} is declared twice")
        declared[parameter.name] = parameter
    values, parameter_problems = _resolve_parameters(definition, overrides)
    resolve = _parameter_resolver(values)
    for step in steps.values():
        problems += [
            f"step {step.name!r}: {problem}"
            for problem in _step_problems(step, definition, declared, supported)
        ]
        # Checked with the parameter values of this run: SageMaker refuses the step's API call
        # for a value out of its bounds, but only when the step is reached, hours in.
        shape_problems = request_problems(step.type, step.arguments, resolve)
        problems += [f"step {step.name!r}: {problem}" for problem in shape_problems]
        # A runner's own checks read the arguments as its API request; they need a well-formed one.
        if extra_checks is not None and step.type in supported and not shape_problems:
            problems += [f"step {step.name!r}: {problem}" for problem in extra_checks(step)]
    order, cycles = _order(definition)
    problems += cycles + parameter_problems
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise DefinitionError(f"{definition.source}: {count}: {join_problems(problems)}", problems)
    return values, order


def _parameter_resolver(values: Mapping[str, Any]):
    """What is known of an expression before the run: a parameter's value, nothing else."""

    def resolve(expr: dict) -> tuple[Any, str] | None:
        function = function_of(expr)
        if function is None:
            return None
        if function == "Get":
            try:
                reference = parse_reference(expr["Get"])
            except ExpressionError:
                return UNKNOWN, ""  # reported by expression_problems
            if reference.root == PARAMETERS and reference.name in values:
                return values[reference.name], f"parameter {reference.name}"
        return UNKNOWN, ""

    return resolve


def _step_problems(
    step: StepSpec, definition: Definition, declared: Mapping[str, Parameter], supported: list[str]
) -> list[str]:
    steps = definition.steps
    problems = []
    if step.type not in supported:
        problems.append(f"unsupported step type {step.type!r}; supported types: {', '.join(supported)}")
    problems += expression_problems(step.arguments, "Arguments")
    for name in CHECK_STEP_FIELDS:
        problems += expression_problems(step.raw.get(name), name)
    if step.type == CONDITION:
        for index, condition in enumerate(step.arguments["Conditions"]):
            problems += condition_problems(condition, f"Arguments.Conditions[{index}]")
    seen = set()
    for text in sorted(references([step.arguments, *(step.raw.get(f) for f in CHECK_STEP_FIELDS)])):
        try:
            reference = parse_reference(text)
        except ExpressionError:
            continue  # already reported by expression_problems
        key = (reference.root, reference.name, reference.property_file)
        if key in seen:
            continue  # one problem per missing thing, however often it is read
        seen.add(key)
        if reference.root == PARAMETERS and reference.name not in declared:
            hint = _hint(reference.name, declared, "Declared parameters")
            problems.append(f"reads undeclared parameter {reference.name!r}.{hint}")
        elif reference.root == EXECUTION and reference.name not in EXECUTION_VARIABLES:
            hint = _hint(reference.name, EXECUTION_VARIABLES)
            problems.append(f"reads unknown execution variable {reference.name!r}.{hint}")
        elif reference.root == STEPS and reference.name not in steps:
            problems.append(
                f"reads unknown step {reference.name!r} in {text!r}.{_hint(reference.name, steps)}"
            )
        elif reference.root == STEPS and reference.property_file is not None:
            declares = [spec.name for spec in steps[reference.name].property_files]
            if reference.property_file not in declares:
                problems.append(
                    f"reads property file {reference.property_file!r} that step {reference.name!r} does not "
                    f"declare.{_hint(reference.property_file, declares)}"
                )
    for name in step.depends_on:
        if name not in steps:
            problems.append(f"DependsOn unknown step {name!r}.{_hint(name, steps)}")
    return problems


def _hint(word: str, candidates: Iterable[str], noun: str = "Known") -> str:
    """' Did you mean X?' when one is close, else the full list: the user always sees the fix."""
    candidates = list(candidates)
    return did_you_mean(word, candidates) or f" {noun}: {', '.join(candidates) or '(none)'}."


def _order(definition: Definition) -> tuple[list[str], list[str]]:
    """(Kahn's order of the steps not caught in a cycle, one problem per cycle)."""
    position = {name: index for index, name in enumerate(definition.steps)}
    needs = {
        name: {dependency for dependency in dependencies(step) if dependency in position}
        for name, step in definition.steps.items()
    }
    users: dict[str, list[str]] = {name: [] for name in position}
    for name, dependencies_ in needs.items():
        for dependency in dependencies_:
            users[dependency].append(name)
    waiting = {name: len(dependencies_) for name, dependencies_ in needs.items()}
    ready = [position[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    names = list(position)
    order = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, position[user])
    ordered = set(order)  # built once: a set per element made a 10,000-step definition take seconds
    stuck = [name for name in names if name not in ordered]
    return order, _cycles(stuck, users, position)


def _cycles(stuck: list[str], users: Mapping[str, list[str]], position: Mapping[str, int]) -> list[str]:
    """One ``cycle: A -> B -> A`` per cycle among the stuck steps (an arrow points from a step to one
    that needs it), starting from the earliest step in definition order."""
    members = set(stuck)
    problems, reported = [], set()
    for start in stuck:
        if start in reported:
            continue
        path = _shortest_loop(start, users, members, position)
        if path is None:
            continue  # it only waits on a cycle without being on one
        reported.update(path)
        problems.append(f"cycle: {' -> '.join(path)}")
    return problems


def _shortest_loop(
    start: str, users: Mapping[str, list[str]], members: set[str], position: Mapping[str, int]
) -> list[str] | None:
    """The shortest path from ``start`` back to itself through ``members``, breadth first."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for name in frontier:
            for user in sorted(users[name], key=position.__getitem__):
                if user not in members:
                    continue
                if user == start:
                    path = [name]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if user not in came_from:
                    came_from[user] = name
                    following.append(user)
        frontier = following
    return None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )
