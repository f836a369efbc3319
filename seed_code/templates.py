"""The CloudFormation templates of ``seed_code/``: read them (short-form intrinsics included) and
render one for given parameter values, as CloudFormation would resolve it, for tests and checks.

Rendering covers what these templates use: Ref, Fn::GetAtt, Fn::Sub, Fn::If and the condition
functions, Fn::Join, Fn::FindInMap and AWS::NoValue. Physical names are the ones the templates set;
a resource without one gets ``<logical id>-id``, as in the ARNs of KMS keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project.yaml"
BOOTSTRAP = HERE / "bootstrap.yaml"
TEMPLATES = (PROJECT, BOOTSTRAP)

_NO_VALUE = object()
_SUB = re.compile(r"\$\{([^}!]+)\}")
_SHORT_FORMS = ("Ref", "Condition", "GetAtt", "Sub", "If", "Equals", "Not", "And", "Or", "Join", "FindInMap")


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (``!Ref X`` is ``{"Ref": "X"}``)."""


def _short_form(name: str):
    key = name if name in ("Ref", "Condition") else f"Fn::{name}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _name in _SHORT_FORMS:
    _Loader.add_constructor(f"!{_name}", _short_form(_name))


def load(path: Path) -> dict:
    """A template as plain data, short forms turned into their long forms."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (a SafeLoader)


def render(template: dict, parameters: dict[str, str], *, account: str, region: str) -> dict:
    """The resources and outputs of ``template`` resolved for ``parameters`` (defaults filled in):
    resources whose condition is false are gone, every intrinsic is a value."""
    return _Renderer(template, parameters, account, region).render()


class _Renderer:
    def __init__(self, template: dict, parameters: dict[str, str], account: str, region: str):
        self.template = template
        declared = template.get("Parameters", {})
        unknown = set(parameters) - set(declared)
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}")
        self.params = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
        self.params.update(parameters)
        self.pseudo = {
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::StackName": "stack",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.conditions: dict[str, bool] = {}

    def render(self) -> dict:
        resources = {
            name: resource
            for name, resource in self.template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }
        self.resources = resources
        rendered = {name: self.value(resource) for name, resource in resources.items()}
        outputs = {
            name: self.value(output["Value"])
            for name, output in self.template.get("Outputs", {}).items()
            if "Condition" not in output or self.condition(output["Condition"])
        }
        return {"Resources": rendered, "Outputs": outputs}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = self.truth(self.template["Conditions"][name])
        return self.conditions[name]

    def truth(self, node: Any) -> bool:
        ((function, args),) = node.items()
        if function == "Condition":
            return self.condition(args)
        if function == "Fn::Equals":
            return self.value(args[0]) == self.value(args[1])
        if function == "Fn::Not":
            return not self.truth(args[0])
        if function == "Fn::And":
            return all(self.truth(arg) for arg in args)
        if function == "Fn::Or":
            return any(self.truth(arg) for arg in args)
        raise ValueError(f"not a condition function: {function}")

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, args),) = node.items()
            if key == "Ref":
                return self.ref(args)
            if key == "Fn::GetAtt":
                return self.attribute(*args)
            if key == "Fn::Sub":
                return self.sub(args)
            if key == "Fn::If":
                return self.value(args[1] if self.condition(args[0]) else args[2])
            if key == "Fn::Join":
                return args[0].join(self.value(args[1]))
            if key == "Fn::FindInMap":
                mapping, top, second = (self.value(arg) for arg in args)
                return self.template["Mappings"][mapping][top][second]
        out = {}
        for key, item in node.items():
            item = self.value(item)
            if item is not _NO_VALUE:
                out[key] = item
        return out

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        kind = self._resource(name)["Type"]
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.pseudo['AWS::Region']}.amazonaws.com/{self.pseudo['AWS::AccountId']}/{self.physical_name(name)}"
        if kind == "AWS::StepFunctions::StateMachine":
            return self.attribute(name, "Arn")
        return self.physical_name(name)

    def physical_name(self, logical: str) -> str:
        resource = self._resource(logical)
        props = resource.get("Properties", {})
        for key in (
            "BucketName",
            "RoleName",
            "Name",
            "QueueName",
            "RepositoryName",
            "LogGroupName",
            "AliasName",
            "ModelPackageGroupName",
            "CodeRepositoryName",
            "StateMachineName",
        ):
            if key in props:
                return self.value(props[key])
        return f"{logical}-id"

    def attribute(self, logical: str, attribute: str) -> str:
        kind = self._resource(logical)["Type"]
        name = self.physical_name(logical)
        account, region = self.pseudo["AWS::AccountId"], self.pseudo["AWS::Region"]
        if attribute == "Arn":
            service, resource = {
                "AWS::S3::Bucket": ("s3", f":::{name}"),
                "AWS::KMS::Key": ("kms", f":{region}:{account}:key/{name}"),
                "AWS::IAM::Role": ("iam", f"::{account}:role/{name}"),
                "AWS::CodeBuild::Project": ("codebuild", f":{region}:{account}:project/{name}"),
                "AWS::SQS::Queue": ("sqs", f":{region}:{account}:{name}"),
                "AWS::CodeCommit::Repository": ("codecommit", f":{region}:{account}:{name}"),
                "AWS::Logs::LogGroup": ("logs", f":{region}:{account}:log-group:{name}:*"),
                "AWS::Events::Rule": ("events", f":{region}:{account}:rule/{name}"),
                "AWS::StepFunctions::StateMachine": ("states", f":{region}:{account}:stateMachine:{name}"),
            }[kind]
            return f"arn:aws:{service}{resource}"
        if kind == "AWS::CodeCommit::Repository" and attribute == "CloneUrlHttp":
            return f"https://git-codecommit.{region}.amazonaws.com/v1/repos/{name}"
        if kind == "AWS::CodeCommit::Repository" and attribute == "Name":
            return name
        raise ValueError(f"no rendering of {logical}.{attribute} ({kind})")

    def sub(self, args: Any) -> str:
        text, variables = (args, {}) if isinstance(args, str) else (args[0], self.value(args[1]))

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return str(self.attribute(*name.split(".", 1)))
            return str(self.ref(name))

        return _SUB.sub(replace, text)

    def _resource(self, logical: str) -> dict:
        if logical not in self.resources:
            raise ValueError(f"{logical} is not a resource of the rendered template (condition false?)")
        return self.resources[logical]
