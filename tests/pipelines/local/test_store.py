"""The local object store: S3 URIs as files under one root, with S3's prefix semantics, and no
URI able to reach a path outside the root."""

import os

import pytest

from pipelines.errors import ConfigError, NotFoundError
from pipelines.local.store import Location, MissingObjectError, ObjectStore, StoreError, parse_uri


@pytest.fixture
def store(tmp_path):
    return ObjectStore(tmp_path / "root")


def put_all(store, objects):
    for key, body in objects.items():
        store.put_bytes(f"s3://bkt/{key}", body)


def tree(directory):
    """Every file under ``directory`` as {relative posix path: bytes}."""
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


# --- round trips


def test_bytes_put_at_a_uri_come_back_from_it(store):
    store.put_bytes("s3://bkt/data/train.csv", b"a,b\n1,2\n")
    assert store.get_bytes("s3://bkt/data/train.csv") == b"a,b\n1,2\n"
    assert store.path("s3://bkt/data/train.csv") == store.root / "bkt" / "data" / "train.csv"


def test_putting_again_replaces_the_object(store):
    store.put_bytes("s3://bkt/k", b"old")
    store.put_bytes("s3://bkt/k", b"new")
    assert store.get_bytes("s3://bkt/k") == b"new"
    assert [key for key, _ in store.list("s3://bkt/")] == ["k"]


def test_a_file_put_at_a_uri_comes_back_byte_for_byte(store, tmp_path):
    source = tmp_path / "blob.bin"
    source.write_bytes(bytes(range(256)) * 5000)
    store.put_file(source, "s3://bkt/blobs/blob.bin")
    assert store.get_bytes("s3://bkt/blobs/blob.bin") == source.read_bytes()


def test_a_tree_put_under_a_prefix_keeps_relative_paths(store, tmp_path):
    source = tmp_path / "src"
    (source / "sub" / "deeper").mkdir(parents=True)
    (source / "top.txt").write_text("top")
    (source / "sub" / "mid.txt").write_text("mid")
    (source / "sub" / "deeper" / "low.txt").write_text("low")

    assert store.put_tree(source, "s3://bkt/code/") == 3

    assert [key for key, _ in store.list("s3://bkt/code/")] == [
        "code/sub/deeper/low.txt",
        "code/sub/mid.txt",
        "code/top.txt",
    ]
    assert store.get_bytes("s3://bkt/code/sub/deeper/low.txt") == b"low"


def test_reading_a_missing_object_is_a_not_found_error_naming_the_uri(store):
    with pytest.raises(MissingObjectError, match="s3://bkt/nothing/here") as caught:
        store.get_bytes("s3://bkt/nothing/here")
    assert isinstance(caught.value, NotFoundError)


def test_a_prefix_is_not_an_object_to_read(store):
    store.put_bytes("s3://bkt/dir/file", b"x")
    with pytest.raises(MissingObjectError):
        store.get_bytes("s3://bkt/dir")


def test_exists_is_true_for_an_object_and_for_a_prefix_with_objects_only(store):
    store.put_bytes("s3://bkt/models/m1/model.tar.gz", b"x")
    assert store.exists("s3://bkt/models/m1/model.tar.gz")
    assert store.exists("s3://bkt/models/")
    assert store.exists("s3://bkt/models/m")
    assert not store.exists("s3://bkt/models/m2/")
    assert not store.exists("s3://other-bucket/models/")


# --- prefix semantics


PREFIX_OBJECTS = {
    "data/in/a.csv": b"a",
    "data/in/sub/b.csv": b"b",
    "data/in/sub/deeper/c.csv": b"c",
    "data/input.csv": b"i",
    "data/inner/d.csv": b"d",
    "data/other/e.csv": b"e",
    "database.csv": b"db",
}


def test_list_takes_every_key_starting_with_the_prefix_even_mid_segment(store):
    put_all(store, PREFIX_OBJECTS)
    keys = [key for key, _ in store.list("s3://bkt/data/in")]
    assert keys == [
        "data/in/a.csv",
        "data/in/sub/b.csv",
        "data/in/sub/deeper/c.csv",
        "data/inner/d.csv",
        "data/input.csv",
    ]


def test_list_with_a_trailing_slash_takes_only_that_folder(store):
    put_all(store, PREFIX_OBJECTS)
    assert [key for key, _ in store.list("s3://bkt/data/in/")] == [
        "data/in/a.csv",
        "data/in/sub/b.csv",
        "data/in/sub/deeper/c.csv",
    ]


def test_list_of_a_top_level_prefix_without_a_slash_matches_across_the_bucket(store):
    put_all(store, PREFIX_OBJECTS)
    assert [key for key, _ in store.list("s3://bkt/data")] == sorted(PREFIX_OBJECTS)
    assert [key for key, _ in store.list("s3://bkt/datab")] == ["database.csv"]
    assert [key for key, _ in store.list("s3://bkt/")] == sorted(PREFIX_OBJECTS)


def test_list_of_an_exact_key_gives_that_object_and_its_path(store):
    put_all(store, PREFIX_OBJECTS)
    ((key, path),) = store.list("s3://bkt/data/in/sub/b.csv")
    assert key == "data/in/sub/b.csv"
    assert path.read_bytes() == b"b"


def test_list_of_a_prefix_nothing_starts_with_is_empty(store):
    put_all(store, PREFIX_OBJECTS)
    assert store.list("s3://bkt/data/missing/") == []
    assert store.list("s3://bkt/nope") == []
    assert store.list("s3://empty-bucket/") == []


def test_fetch_of_a_folder_prefix_keeps_nested_keys_relative_to_it(store, tmp_path):
    put_all(store, PREFIX_OBJECTS)
    destination = tmp_path / "out"

    assert store.fetch("s3://bkt/data/in/", destination) == 3

    assert tree(destination) == {"a.csv": b"a", "sub/b.csv": b"b", "sub/deeper/c.csv": b"c"}


def test_fetch_of_a_prefix_not_ending_in_a_slash_places_keys_relative_to_it(store, tmp_path):
    put_all(store, {"runs/r1/train/part-0.csv": b"0", "runs/r1/train/nested/part-1.csv": b"1"})
    destination = tmp_path / "out"

    assert store.fetch("s3://bkt/runs/r1/train", destination) == 2

    assert tree(destination) == {"part-0.csv": b"0", "nested/part-1.csv": b"1"}


def test_fetch_of_an_exact_object_puts_it_under_its_own_name(store, tmp_path):
    put_all(store, PREFIX_OBJECTS)
    destination = tmp_path / "out"

    assert store.fetch("s3://bkt/data/in/sub/deeper/c.csv", destination) == 1

    assert tree(destination) == {"c.csv": b"c"}


def test_fetch_of_nothing_copies_nothing_and_says_so(store, tmp_path):
    destination = tmp_path / "out"
    assert store.fetch("s3://bkt/absent/", destination) == 0
    assert tree(destination) == {}


# --- ShardedByS3Key


@pytest.mark.parametrize("instances", [1, 2, 3, 7, 10])
def test_shards_are_disjoint_and_together_hold_every_object(store, tmp_path, instances):
    objects = {f"shards/part-{index:02d}.csv": str(index).encode() for index in range(7)}
    put_all(store, objects)
    seen = []
    counts = []
    for index in range(instances):
        destination = tmp_path / f"host-{index}"
        counts.append(store.fetch("s3://bkt/shards/", destination, shard=(index, instances)))
        seen.extend(tree(destination))

    assert len(seen) == len(set(seen)), "an object went to two instances"
    assert sorted(seen) == sorted(key.removeprefix("shards/") for key in objects)
    assert sum(counts) == 7
    assert max(counts) - min(counts) <= 1, "objects are spread evenly"


# --- digests


def test_the_digest_is_stable_and_changes_with_content(store):
    put_all(store, {"d/a": b"1", "d/b": b"2"})
    first = store.digest("s3://bkt/d/")
    assert store.digest("s3://bkt/d/") == first

    store.put_bytes("s3://bkt/d/b", b"3")
    changed = store.digest("s3://bkt/d/")
    assert changed != first

    store.put_bytes("s3://bkt/d/b", b"2")
    assert store.digest("s3://bkt/d/") == first


def test_the_digest_changes_with_key_names_for_the_same_bytes(store, tmp_path):
    other = ObjectStore(tmp_path / "other-root")
    store.put_bytes("s3://bkt/d/a.csv", b"same")
    other.put_bytes("s3://bkt/d/b.csv", b"same")
    assert store.digest("s3://bkt/d/") != other.digest("s3://bkt/d/")


def test_the_digest_does_not_confuse_a_key_boundary_with_content(store, tmp_path):
    other = ObjectStore(tmp_path / "other-root")
    put_all(store, {"d/a": b"xy", "d/b": b"z"})
    put_all(other, {"d/a": b"x", "d/b": b"yz"})
    assert store.digest("s3://bkt/d/") != other.digest("s3://bkt/d/")


def test_the_digest_changes_when_an_object_is_added_under_the_prefix(store):
    store.put_bytes("s3://bkt/d/a", b"1")
    before = store.digest("s3://bkt/d/")
    store.put_bytes("s3://bkt/d/new", b"")
    assert store.digest("s3://bkt/d/") != before


# --- hostile and malformed URIs


HOSTILE_URIS = [
    "s3://bkt/../outside",
    "s3://bkt/a/../../outside",
    "s3://bkt/a/..",
    "s3://bkt/../",
    "s3://bkt/./a",
    "s3://bkt/a/./b",
    "s3://bkt/a//b",
    "s3://bkt//a",
    "s3://bkt/a//",
    "s3://bkt/a\\..\\..\\outside",
    "s3://bkt/a\x00b",
    "s3://../outside",
    "s3://./outside",
    "s3://.../x",
    "s3:///etc/passwd",
    "s3://ab/x",
    "s3://Upper-Case/x",
    "s3://under_score/x",
    "s3://-leading/x",
    "s3://trailing-/x",
    "s3://dots..inside/x",
    "s3://" + "b" * 64 + "/x",
    "file:///etc/passwd",
    "https://bkt.s3.amazonaws.com/key",
    "S3://bkt/key",
    "s3:/bkt/key",
    "/absolute/path",
    "relative/path",
    "",
]


@pytest.mark.parametrize("uri", HOSTILE_URIS)
def test_a_hostile_or_malformed_uri_is_refused_everywhere_with_a_store_error(store, tmp_path, uri):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    source = tmp_path / "source.txt"
    source.write_text("payload")
    operations = {
        "parse_uri": lambda: parse_uri(uri),
        "path": lambda: store.path(uri),
        "put_bytes": lambda: store.put_bytes(uri, b"payload"),
        "put_file": lambda: store.put_file(source, uri),
        "get_bytes": lambda: store.get_bytes(uri),
        "list": lambda: store.list(uri),
        "exists": lambda: store.exists(uri),
        "fetch": lambda: store.fetch(uri, tmp_path / "fetched"),
        "digest": lambda: store.digest(uri),
    }
    for name, operation in operations.items():
        with pytest.raises(StoreError) as caught:
            operation()
        assert repr(uri) in str(caught.value), name
        assert isinstance(caught.value, ConfigError), name  # exit code 2 from the CLIs
    source.unlink()
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, "a refused URI wrote something"


def test_nothing_is_written_outside_the_root_by_escaping_keys(tmp_path):
    root = tmp_path / "deep" / "root"
    store = ObjectStore(root)
    store.put_bytes("s3://bkt/legit", b"ok")
    for uri in ("s3://bkt/../../../escaped", "s3://bkt/x/../../../../escaped", "s3://../../escaped"):
        with pytest.raises(StoreError):
            store.put_bytes(uri, b"pwned")
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"deep/root/bkt/legit"}


def test_a_symlink_inside_the_store_cannot_lead_a_key_outside_the_root(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    (store.root / "bkt").mkdir(parents=True)
    (store.root / "bkt" / "link").symlink_to(outside, target_is_directory=True)

    with pytest.raises(StoreError, match="outside"):
        store.get_bytes("s3://bkt/link/secret")
    with pytest.raises(StoreError, match="outside"):
        store.put_bytes("s3://bkt/link/planted", b"x")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


@pytest.mark.parametrize(
    ("uri", "location"),
    [
        ("s3://bkt/a/b.csv", Location("bkt", "a/b.csv")),
        ("s3://bkt/a/b/", Location("bkt", "a/b/")),
        ("s3://bkt/", Location("bkt", "")),
        ("s3://bkt", Location("bkt", "")),
        ("s3://my.bucket-1/x..y/z", Location("my.bucket-1", "x..y/z")),
        ("s3://bkt/.hidden/..data", Location("bkt", ".hidden/..data")),
    ],
)
def test_ordinary_uris_parse_into_bucket_and_key(uri, location):
    assert parse_uri(uri) == location
    assert location.uri == f"s3://{location.bucket}/{location.key}"


def test_a_uri_that_is_not_a_string_is_refused():
    with pytest.raises(StoreError, match="not an s3:// URI"):
        parse_uri(None)
    with pytest.raises(StoreError, match="not an s3:// URI"):
        parse_uri(b"s3://bkt/key")


@pytest.mark.parametrize("uri", ["s3://bkt/", "s3://bkt/dir/", "s3://bkt"])
def test_a_prefix_cannot_be_put_as_an_object(store, uri):
    with pytest.raises(StoreError, match="names a prefix, not an object"):
        store.put_bytes(uri, b"x")


# --- objects against prefixes


def test_putting_an_object_where_objects_already_sit_under_that_prefix_is_refused(store):
    store.put_bytes("s3://bkt/models/v1/model.tar.gz", b"model")
    with pytest.raises(StoreError, match="prefix"):
        store.put_bytes("s3://bkt/models/v1", b"clobber")
    assert store.get_bytes("s3://bkt/models/v1/model.tar.gz") == b"model"
    assert [key for key, _ in store.list("s3://bkt/models/")] == ["models/v1/model.tar.gz"]


def test_putting_an_object_under_an_existing_object_is_refused_with_a_store_error(store):
    store.put_bytes("s3://bkt/models/v1", b"object")
    with pytest.raises(StoreError, match="prefix"):
        store.put_bytes("s3://bkt/models/v1/model.tar.gz", b"nested")
    assert store.get_bytes("s3://bkt/models/v1") == b"object"


# --- atomic writes


def test_a_write_leaves_no_temporary_file_behind(store):
    store.put_bytes("s3://bkt/dir/a", b"1")
    store.put_bytes("s3://bkt/dir/a", b"2")
    assert sorted(os.listdir(store.root / "bkt" / "dir")) == ["a"]


def test_a_write_in_progress_is_not_listed_fetched_or_digested(store, tmp_path):
    store.put_bytes("s3://bkt/dir/done.csv", b"done")
    digest = store.digest("s3://bkt/dir/")
    # What a concurrent put looks like midway: its temporary file beside the finished objects.
    (store.root / "bkt" / "dir" / ".tmp-abc123").write_bytes(b"half of an obj")

    assert [key for key, _ in store.list("s3://bkt/dir/")] == ["dir/done.csv"]
    assert store.digest("s3://bkt/dir/") == digest
    assert store.fetch("s3://bkt/dir/", tmp_path / "out") == 1
    assert tree(tmp_path / "out") == {"done.csv": b"done"}


def test_a_failed_write_keeps_the_old_object_and_leaves_no_temporary_file(store, tmp_path):
    store.put_bytes("s3://bkt/dir/obj", b"old")
    with pytest.raises(FileNotFoundError):
        store.put_file(tmp_path / "does-not-exist", "s3://bkt/dir/obj")
    assert store.get_bytes("s3://bkt/dir/obj") == b"old"
    assert sorted(os.listdir(store.root / "bkt" / "dir")) == ["obj"]


def test_symlinked_files_inside_the_store_are_not_listed(store, tmp_path):
    store.put_bytes("s3://bkt/dir/real", b"real")
    (tmp_path / "elsewhere").write_text("elsewhere")
    (store.root / "bkt" / "dir" / "link").symlink_to(tmp_path / "elsewhere")
    assert [key for key, _ in store.list("s3://bkt/dir/")] == ["dir/real"]
