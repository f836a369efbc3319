"""The train split written as several part files, the objects a ShardedByS3Key channel deals out to the
instances of a distributed training job: the same rows as one file, dealt evenly."""

import pytest

from steps import preprocess


@pytest.fixture
def table(tmp_path, repo_root):
    lines = (repo_root / "data" / "churn" / "churn.csv").read_text().splitlines(keepends=True)
    path = tmp_path / "raw" / "churn.csv"
    path.parent.mkdir()
    path.write_text("".join(lines[:601]))
    return path


def run(run_main, repo_root, table, out, *extra):
    spec = repo_root / "pipelines" / "churn" / "dataset.json"
    argv = ["--input", table, "--spec", spec, "--output-dir", out, "--chunk-rows", "97", *extra]
    return run_main(preprocess.main, argv)


def test_parts_hold_the_rows_of_the_single_train_file_dealt_round_robin(tmp_path, repo_root, table, run_main):
    assert run(run_main, repo_root, table, tmp_path / "one").code == 0
    result = run(run_main, repo_root, table, tmp_path / "three", "--train-parts", "3")

    assert result.code == 0, result.err
    single = (tmp_path / "one" / "train" / "train.csv").read_text().splitlines(keepends=True)
    names = sorted(p.name for p in (tmp_path / "three" / "train").iterdir())
    assert names == ["train-part-0000.csv", "train-part-0001.csv", "train-part-0002.csv"]
    parts = [(tmp_path / "three" / "train" / name).read_text().splitlines(keepends=True) for name in names]
    # Row r of the split is in part r % 3, whatever the chunk boundaries.
    assert parts == [single[k::3] for k in range(3)]
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    for folder in ("validation", "test", "schema", "baseline"):
        for path in (tmp_path / "one" / folder).iterdir():
            assert (tmp_path / "three" / folder / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("parts", ["0", "1001"])
def test_a_train_part_count_out_of_range_is_one_line(tmp_path, repo_root, table, run_main, parts):
    result = run(run_main, repo_root, table, tmp_path / "out", "--train-parts", parts)

    assert result.code == 2
    assert result.error_lines == [f"error: arguments: --train-parts must be 1 to 1000, got {parts}"]
    assert not (tmp_path / "out").exists()
