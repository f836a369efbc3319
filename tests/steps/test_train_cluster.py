"""The training script as one instance of a multi-instance job: what it reads of the cluster, and how
it refuses a cluster it cannot train in."""

import json

import pytest
from training_channels import argv

from steps import train
from steps.train import Cluster, TrainingError


def test_the_resource_config_gives_the_hosts_in_rank_order_and_this_host():
    cluster = train.parse_resource_config(
        json.dumps({"current_host": "algo-2", "hosts": ["algo-3", "algo-1", "algo-2"]})
    )

    assert cluster == Cluster(("algo-1", "algo-2", "algo-3"), "algo-2")
    assert (cluster.rank, cluster.size, cluster.master, cluster.is_master) == (1, 3, "algo-1", False)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}', "does not name this instance"),
        ('{"current_host": "algo-1"}', "no 'hosts' list"),
        ('{"current_host": "algo-1", "hosts": ["algo-1", "algo-1"]}', "more than once"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_resource_config_is_named(text, problem):
    with pytest.raises(TrainingError, match=problem):
        train.parse_resource_config(text)


def test_a_resource_config_that_does_not_name_the_host_exits_2_with_one_line_and_no_model(
    channels, write, run_main
):
    config = write(
        channels / "config" / "resourceconfig.json",
        json.dumps({"current_host": "algo-9", "hosts": ["algo-1", "algo-2"]}),
    )

    result = run_main(train.main, [*argv(channels), "--resource-config", config])

    assert result.code == 2
    assert result.error_lines == [
        f"error: {config}: resource config does not name this instance: current_host 'algo-9' is not "
        "one of its hosts (algo-1, algo-2)"
    ]
    assert not (channels / "model").exists()


def test_one_host_in_the_resource_config_trains_alone_without_a_tracker(channels, write, run_main):
    config = write(
        channels / "config" / "resourceconfig.json",
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}),
    )

    result = run_main(train.main, [*argv(channels, "--num_round", "5"), "--resource-config", config])

    assert result.code == 0, result.err
    assert (channels / "model" / train.MODEL_FILENAME).is_file()


def test_the_tracker_is_the_first_host_on_the_containers_port_unless_the_launcher_says_otherwise():
    cluster = Cluster(("algo-1", "algo-2"), "algo-2")

    launched = train.tracker_address(cluster, {"DMLC_TRACKER_URI": "127.0.0.1", "DMLC_TRACKER_PORT": "40123"})

    assert launched == ("127.0.0.1", 40123)
    assert train.DEFAULT_TRACKER_PORT == 9099
