"""Extracting model.tar.gz: a good archive appears whole; a hostile one is refused, naming the member,
with nothing written."""

import io
import tarfile

import pytest

from pipelines.serving.artifacts import ArtifactError, extract_model


def archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            handle.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"x", linkname: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, data if kind == tarfile.REGTYPE else None


def test_a_model_archive_is_extracted_whole(model_archive, tmp_path):
    target = extract_model(model_archive.read_bytes(), tmp_path / "model-abc")
    assert target == tmp_path / "model-abc"
    assert [p.name for p in target.iterdir()] == ["xgboost-model.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model-abc"]  # no staging folder left


def test_links_and_folders_that_stay_inside_are_extracted(tmp_path):
    data = archive(
        member("code", tarfile.DIRTYPE),
        member("code/inference.py", data=b"print(1)"),
        member("code/alias.py", tarfile.SYMTYPE, linkname="inference.py"),
        member("copy.py", tarfile.LNKTYPE, linkname="code/inference.py"),
    )
    target = extract_model(data, tmp_path / "model")
    assert (target / "code" / "alias.py").read_text() == "print(1)"
    assert (target / "copy.py").read_text() == "print(1)"


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        (member("/etc/cron.d/evil"), "has an absolute path"),
        (member("../evil"), "has a '..' component"),
        (member("code/../../evil"), "has a '..' component"),
        (
            member("link", tarfile.SYMTYPE, linkname="/etc/passwd"),
            "is a symlink to '/etc/passwd', outside the archive",
        ),
        (
            member("code/link", tarfile.SYMTYPE, linkname="../../outside"),
            "is a symlink to '../../outside', outside the archive",
        ),
        (
            member("hard", tarfile.LNKTYPE, linkname="/etc/passwd"),
            "is a hard link to '/etc/passwd', outside the archive",
        ),
        (
            member("hard", tarfile.LNKTYPE, linkname="../outside"),
            "is a hard link to '../outside', outside the archive",
        ),
        (member("pipe", tarfile.FIFOTYPE), "is a FIFO"),
        (member("tty", tarfile.CHRTYPE), "is a device file"),
        (member("disk", tarfile.BLKTYPE), "is a device file"),
    ],
    ids=[
        "absolute",
        "dotdot",
        "nested-dotdot",
        "symlink-abs",
        "symlink-up",
        "hardlink-abs",
        "hardlink-up",
        "fifo",
        "chardev",
        "blockdev",
    ],  # fmt: skip
)
def test_a_hostile_member_is_refused_by_name_and_nothing_is_written(tmp_path, hostile, reason):
    data = archive(member("xgboost-model.json", data=b"{}"), hostile)
    with pytest.raises(ArtifactError) as caught:
        extract_model(data, tmp_path / "out" / "model")
    name = hostile[0].name
    assert str(caught.value) == f"model archive: member {name!r} {reason}; refusing to extract it"
    assert not (tmp_path / "out").exists()


def test_a_link_that_escapes_through_another_link_is_refused(tmp_path):
    # "d/up" -> ".." looks like it stays inside, but "d" -> "." puts it at the top: it points out.
    data = archive(
        member("d", tarfile.SYMTYPE, linkname="."),
        member("d/up", tarfile.SYMTYPE, linkname=".."),
    )
    with pytest.raises(
        ArtifactError,
        match="^model archive: member 'd/up' lies under the symlink 'd'; refusing to extract it$",
    ):
        extract_model(data, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_what_is_not_a_tar_archive_is_refused_in_one_line(tmp_path):
    with pytest.raises(ArtifactError, match="^model archive is not a readable tar archive: "):
        extract_model(b"not a tarball", tmp_path / "model")


def test_members_adding_up_past_the_size_limit_are_refused(tmp_path):
    data = archive(member("a", data=b"x" * 600), member("b", data=b"x" * 600))
    with pytest.raises(ArtifactError, match="members up to 'b' add up to more than 1000 bytes"):
        extract_model(data, tmp_path / "model", max_bytes=1000)


def test_an_existing_destination_is_never_overwritten(model_archive, tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(FileExistsError):
        extract_model(model_archive.read_bytes(), tmp_path / "model")
