"""Archives for tests: a gzipped tar of named members, as SageMaker reads a model.tar.gz or a
sourcedir.tar.gz."""

import io
import tarfile


def tar_gz(members: dict[str, bytes]) -> bytes:
    """The bytes of a .tar.gz holding ``members`` (name -> content) at its top level."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
