"""Hand-written pipeline definitions for the local runner's tests and benchmarks: Processing steps and
Training channels shaped as the SDK writes them (CreateProcessingJob's and CreateTrainingJob's
requests), and the definition around them."""

import json

SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1"
ROLE = "arn:aws:iam::000000000000:role/LocalPipelineRole"
CODE_DIR = "/opt/ml/processing/input/code"


def definition(*steps, parameters=()) -> str:
    """The definition JSON of ``steps`` (dicts as a pipeline definition holds them)."""
    return json.dumps(
        {"Version": "2020-12-01", "Metadata": {}, "Parameters": list(parameters), "Steps": list(steps)}
    )


def s3_input(name, uri, local, distribution="FullyReplicated"):
    return {
        "InputName": name,
        "AppManaged": False,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": local,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": distribution,
            "S3CompressionType": "None",
        },
    }


def s3_output(name, uri, local="/opt/ml/processing/output"):
    return {
        "OutputName": name,
        "AppManaged": False,
        "S3Output": {"S3Uri": uri, "LocalPath": local, "S3UploadMode": "EndOfJob"},
    }


def training_channel(name, uri, distribution="FullyReplicated"):
    """One entry of a training job's InputDataConfig: CSV objects under ``uri``."""
    return {
        "ChannelName": name,
        "ContentType": "text/csv",
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": distribution,
            }
        },
    }


def processing_step(
    name,
    script,
    code_uri,
    *,
    arguments=(),
    inputs=(),
    outputs=(),
    environment=None,
    instances=1,
    image=SKLEARN,
    role=ROLE,
    **extra,
):
    """A Processing step running ``python3 <script>``, staged from ``code_uri`` into the code
    directory; ``extra`` are step-level fields (DependsOn, CacheConfig, RetryPolicies...)."""
    arguments_ = {
        "ProcessingResources": {
            "ClusterConfig": {"InstanceType": "ml.m5.large", "InstanceCount": instances, "VolumeSizeInGB": 30}
        },
        "AppSpecification": {
            "ImageUri": image,
            "ContainerEntrypoint": ["python3", f"{CODE_DIR}/{script}"],
            # CreateProcessingJob takes no empty list here: the SDK leaves it out.
            **({"ContainerArguments": list(arguments)} if arguments else {}),
        },
        "RoleArn": role,
        "ProcessingInputs": [s3_input("code", code_uri, CODE_DIR), *inputs],
        "ProcessingOutputConfig": {"Outputs": list(outputs)},
    }
    if environment is not None:
        arguments_["Environment"] = environment
    return {"Name": name, "Type": "Processing", "Arguments": arguments_, **extra}
