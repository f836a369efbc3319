"""The churn definition trains on TrainingInstanceCount instances: Train and Tune's trials take the
count from the parameter, the train channel is sharded by object, and Preprocess writes one train
file per instance so that every instance gets a shard."""

PARAMETER = {"Get": "Parameters.TrainingInstanceCount"}


def steps(definition) -> dict:
    return {step["Name"]: step for step in definition["Steps"]}


def distributions(channels) -> dict:
    return {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3DataDistributionType"] for c in channels}


def test_train_and_tunings_trials_run_on_the_parameters_instance_count(churn_definition):
    by_name = steps(churn_definition)
    train = by_name["Train"]["Arguments"]
    trial = by_name["Tune"]["Arguments"]["TrainingJobDefinition"]

    assert train["ResourceConfig"]["InstanceCount"] == PARAMETER
    assert trial["ResourceConfig"]["InstanceCount"] == PARAMETER
    expected = {"train": "ShardedByS3Key", "validation": "FullyReplicated", "code": "FullyReplicated"}
    assert distributions(train["InputDataConfig"]) == expected
    assert distributions(trial["InputDataConfig"]) == expected


def test_preprocess_writes_one_train_part_per_training_instance(churn_definition):
    arguments = steps(churn_definition)["Preprocess"]["Arguments"]["AppSpecification"]["ContainerArguments"]

    parts = arguments[arguments.index("--train-parts") + 1]

    assert parts == {"Std:Join": {"On": "", "Values": [PARAMETER]}}
