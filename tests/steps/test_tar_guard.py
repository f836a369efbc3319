"""The one set of archive rules the evaluation step, the local runner and the local endpoint share."""

import io
import tarfile

import pytest

from steps.tar_guard import UnsafeArchiveError, check_tar, extract_tar


def archive(*members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            handle.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name, kind=tarfile.REGTYPE, data=b"x", linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, data if kind == tarfile.REGTYPE else None


def test_a_decompression_bomb_is_refused_at_the_size_cap_before_anything_is_written(tmp_path):
    bomb = archive(member("weights.bin", data=bytes(8 * 1024 * 1024)))
    assert len(bomb) < 64 * 1024  # a few kilobytes that would unpack to 8 MiB
    with pytest.raises(UnsafeArchiveError) as caught:
        extract_tar(bomb, tmp_path / "out", "model archive", max_bytes=1024 * 1024)
    assert str(caught.value) == (
        "model archive: members up to 'weights.bin' add up to more than 1048576 bytes; refusing to extract it"
    )
    assert not (tmp_path / "out").exists()


def test_a_flood_of_members_is_refused_at_the_member_cap(tmp_path):
    flood = archive(*(member(f"f{i}", data=b"") for i in range(11)))
    with pytest.raises(UnsafeArchiveError, match="^code: has more than 10 members; refusing to extract it$"):
        extract_tar(flood, tmp_path / "out", "code:", max_members=10)
    assert check_tar(flood, max_members=11) == [f"f{i}" for i in range(11)]


def test_links_that_stay_inside_are_extracted_after_the_files(tmp_path):
    data = archive(
        member("code/alias.py", tarfile.SYMTYPE, linkname="inference.py"),
        member("code/inference.py", data=b"print(1)"),
        member("copy.py", tarfile.LNKTYPE, linkname="code/inference.py"),
    )
    extract_tar(data, tmp_path)
    assert (tmp_path / "code" / "alias.py").is_symlink()
    assert (tmp_path / "code" / "alias.py").read_text() == "print(1)"
    assert (tmp_path / "copy.py").read_text() == "print(1)"


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        (
            [member("d", tarfile.SYMTYPE, linkname="."), member("d/up", tarfile.SYMTYPE, linkname="..")],
            "member 'd/up' lies under the symlink 'd'",
        ),
        (
            [member("out", tarfile.SYMTYPE, linkname="sub"), member("out/evil.py", data=b"x")],
            "member 'out/evil.py' lies under the symlink 'out'",
        ),
        (
            [member("copy", tarfile.LNKTYPE, linkname="later"), member("later")],
            "member 'copy' is a hard link to 'later', not a file before it",
        ),
        ([member("C:/evil")], "member 'C:/evil' has an absolute path"),
        ([member("a\\..\\..\\evil")], "member 'a\\\\..\\\\..\\\\evil' has a '..' component"),
    ],
    ids=["link-chain", "write-through-link", "hard-link-forward", "drive", "backslash-dotdot"],
)
def test_members_reaching_outside_through_links_or_odd_names_are_refused(tmp_path, members, reason):
    with pytest.raises(UnsafeArchiveError) as caught:
        extract_tar(archive(*members), tmp_path / "out", "archive")
    assert str(caught.value) == f"archive: {reason}; refusing to extract it"
    assert not (tmp_path / "out").exists()


def test_a_truncated_archive_is_one_line(tmp_path):
    data = archive(member("a", data=b"y" * 100_000))
    with pytest.raises(
        UnsafeArchiveError, match="^archive is (truncated or corrupt|not a readable tar archive): "
    ):
        extract_tar(data[: len(data) // 2], tmp_path / "out")
