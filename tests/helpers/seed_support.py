"""Constants and helpers of the project template's tests (tests/seed_code); not seeded into projects."""

ACCOUNT = "111111111111"  # the dev/tooling account, where the project lives
REGION = "eu-west-1"
STAGING = "222222222222"
PROD = "333333333333"
NAME, PROJECT_ID = "churn", "p-abc123def456"
PROJECT = {
    "SageMakerProjectName": NAME,
    "SageMakerProjectId": PROJECT_ID,
    "StagingAccountId": STAGING,
    "ProdAccountId": PROD,
}
GROUP = f"{NAME}-{PROJECT_ID}"  # also the SageMaker pipeline's name
BUCKET = f"sagemaker-mlops-{PROJECT_ID}-{ACCOUNT}-{REGION}"
PIPELINE_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{GROUP}"


def of_type(resources: dict, kind: str) -> dict:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def statements(document: dict) -> list[dict]:
    return as_list(document["Statement"])


def role_statements(role: dict) -> list[dict]:
    return [
        s for policy in role["Properties"].get("Policies", []) for s in statements(policy["PolicyDocument"])
    ]


def resource_policies(resources: dict) -> list[dict]:
    found = []
    for resource in resources.values():
        props = resource.get("Properties", {})
        for key in ("KeyPolicy", "PolicyDocument", "ModelPackageGroupPolicy"):
            if key in props:
                found.append(props[key])
    return found


#: Actions that take no resource ARN, each allowed on "*" only where named here.
RESOURCELESS = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",  # with a namespace condition
    "sagemaker:ListModelPackages",
    "application-autoscaling:RegisterScalableTarget",  # with a service-namespace condition
    "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:DeleteScalingPolicy",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScheduledActions",
    "cloudwatch:GetMetricData",  # what a target-tracking policy's handler reads
}


def identity_statements(resources: dict) -> list[tuple[str, dict]]:
    return [
        (name, statement)
        for name, role in of_type(resources, "AWS::IAM::Role").items()
        for statement in role_statements(role)
    ]


def assert_least_privilege(resources: dict) -> None:
    roles = of_type(resources, "AWS::IAM::Role")
    assert roles
    for name, role in roles.items():
        assert "ManagedPolicyArns" not in role["Properties"], f"{name} has managed policies"
    assert not of_type(resources, "AWS::IAM::ManagedPolicy")
    for name, statement in identity_statements(resources):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{name} {statement.get('Sid')}: wildcard action {action}"
        if "*" in as_list(statement["Resource"]):
            extra = set(as_list(statement["Action"])) - RESOURCELESS
            assert not extra, f"{name} {statement.get('Sid')}: {sorted(extra)} on every resource"
    for document in resource_policies(resources):
        for statement in statements(document):
            if statement["Effect"] == "Deny":
                continue
            for action in as_list(statement["Action"]):
                service, _, verb = action.partition(":")
                assert action != "*" and verb != "*", f"{statement.get('Sid')}: {action}"
                # Prefix wildcards only in the account's own key administration.
                if "*" in verb and service == "kms" and statement["Sid"] not in ("AccountAdministersTheKey",):
                    assert verb.rstrip("*") in (
                        "ReEncrypt",
                        "GenerateDataKey",
                        "Encrypt",
                        "Decrypt",
                        "Describe",
                    )
