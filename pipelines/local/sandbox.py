"""Where a local job's ``/opt/ml`` is: its own sandbox directory, seen at the real ``/opt/ml`` path.

On Linux each job process runs in a private mount namespace (unprivileged through a user namespace,
or, as root, a plain one) with its sandbox bound at ``/opt/ml``; the host's ``/opt/ml`` is never
created or written. Where no namespace can be made, the job's entry point, arguments and
environment are rewritten into the sandbox instead, and code that hard-codes ``/opt/ml`` misses
its files.
"""

from __future__ import annotations

import enum
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTAINER_ROOT = "/opt/ml"

#: Forces one isolation (a value of ``Isolation``), for machines where the detection is wrong.
ISOLATION_VARIABLE = "MLOPS_LOCAL_ISOLATION"


class Isolation(enum.Enum):
    USER_NAMESPACE = "user-namespace"  # unshare --user --map-root-user --mount
    MOUNT_NAMESPACE = "mount-namespace"  # unshare --mount, as root
    REWRITE = "rewrite"  # no namespace: /opt/ml paths rewritten into the sandbox


_UNSHARE = {
    Isolation.USER_NAMESPACE: ["--user", "--map-root-user", "--mount"],
    Isolation.MOUNT_NAMESPACE: ["--mount"],
}

# Runs inside the new namespace, whose mounts are private (unshare's default propagation), so
# nothing below reaches the host. /opt itself is overlaid (upper layer on a tmpfs) so that /opt/ml
# can be made without touching the host's /opt, and the rest of /opt (an interpreter, packages)
# stays visible. An existing host /opt/ml is only covered by the bind, never written. The sandbox
# is bound into the tmpfs before /opt is overlaid and reached from there by the working directory,
# so a local home under /opt still lands in the real sandbox, not in the overlay's upper layer.
# Each step execs the next: the job is the runner's own child, so its exit status (or the signal
# that killed it) is its own, and setpriv makes it die with the runner again (entering a user
# namespace clears the parent-death signal set before it).
_SETUP = r"""
set -e
state="$1"; sandbox="$2"; workdir="$3"; shift 3
mount -t tmpfs -o mode=0700 mlops-local "$state"
cd "$state"
mkdir upper work box
mount --bind "$sandbox" box
if [ ! -d /opt/ml ]; then
    mount -t overlay mlops-local -o lowerdir=/opt,upperdir=upper,workdir=work /opt
    mkdir /opt/ml
fi
mount --bind box /opt/ml
cd "$workdir"
if command -v setpriv >/dev/null; then
    exec setpriv --pdeathsig KILL -- "$@"
fi
exec "$@"
"""


@dataclass(frozen=True)
class Support:
    """The isolation jobs get on this machine, and why not a better one."""

    isolation: Isolation
    reason: str = ""

    @property
    def namespaced(self) -> bool:
        return self.isolation is not Isolation.REWRITE


@functools.cache
def support() -> Support:
    """Detected once per process: the first isolation that really binds a directory at /opt/ml."""
    forced = os.environ.get(ISOLATION_VARIABLE)
    if forced:
        try:
            return Support(Isolation(forced), f"{ISOLATION_VARIABLE}={forced}")
        except ValueError:
            choices = ", ".join(i.value for i in Isolation)
            return Support(Isolation.REWRITE, f"{ISOLATION_VARIABLE}={forced!r} is not one of {choices}")
    if sys.platform != "linux":
        return Support(Isolation.REWRITE, f"mount namespaces are Linux-only (this is {sys.platform})")
    if shutil.which("unshare") is None:
        return Support(Isolation.REWRITE, "the unshare command (util-linux) is not installed")
    if not Path("/opt").is_dir():
        return Support(Isolation.REWRITE, "/opt does not exist, and creating it would write to the machine")
    reasons = []
    candidates = [Isolation.USER_NAMESPACE]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        candidates.append(Isolation.MOUNT_NAMESPACE)
    for isolation in candidates:
        problem = _probe(isolation)
        if problem is None:
            return Support(isolation)
        reasons.append(f"{isolation.value}: {problem}")
    return Support(Isolation.REWRITE, "; ".join(reasons))


def _probe(isolation: Isolation) -> str | None:
    """None when a marker in a scratch sandbox is visible at /opt/ml inside the namespace."""
    with tempfile.TemporaryDirectory(prefix="mlops-local-probe-") as scratch:
        state, box = Path(scratch, "state"), Path(scratch, "box")
        state.mkdir()
        box.mkdir()
        (box / "marker").write_text("ok")
        command = wrap(isolation, ["cat", f"{CONTAINER_ROOT}/marker"], state, box, "/")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as err:
            return str(err)
        if done.returncode == 0 and done.stdout == "ok":
            return None
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]


def wrap(isolation: Isolation, command: Sequence[str], state: Path, sandbox: Path, workdir: str) -> list[str]:
    """``command`` run with ``sandbox`` at /opt/ml and ``workdir`` as its working directory."""
    return [
        "unshare",
        *_UNSHARE[isolation],
        "--",
        "sh",
        "-c",
        _SETUP,
        "mlops-local-job",
        str(state),
        str(sandbox),
        workdir,
        *command,
    ]


class Sandbox:
    """One job instance's container tree: ``root`` on this machine holds what the container sees
    under ``/opt/ml`` at ``root/opt/ml``."""

    def __init__(self, root: Path, support: Support):
        self.root = Path(root)
        self.support = support

    @property
    def ml(self) -> Path:
        """The sandbox's ``/opt/ml`` on this machine."""
        return self.root / CONTAINER_ROOT.lstrip("/")

    def local(self, container_path: str) -> Path:
        """Where a container path (under /opt/ml) is on this machine."""
        return self.root / container_path.lstrip("/")

    def seen(self, value: Any) -> Any:
        """A value (path, argument list, environment) as the job must be given it: unchanged in a
        namespace, where /opt/ml is the sandbox; otherwise every /opt/ml path rewritten into it."""
        if self.support.namespaced:
            return value
        return rewrite(value, self.root)

    def command(self, command: Sequence[str], workdir: str) -> tuple[list[str], Path]:
        """The process to start for ``command`` run in container directory ``workdir``, and the
        directory to start it in."""
        if not self.support.namespaced:
            return list(command), Path(rewrite(workdir, self.root))
        self.ml.mkdir(parents=True, exist_ok=True)
        state = self.root / ".namespace"
        state.mkdir(exist_ok=True)
        return wrap(self.support.isolation, command, state, self.ml, workdir), self.root


def rewrite(value: Any, root: Path) -> Any:
    """Every string starting with ``/opt/ml`` pointed under ``root`` instead."""
    if isinstance(value, str) and (value == CONTAINER_ROOT or value.startswith(CONTAINER_ROOT + "/")):
        return str(root) + value
    if isinstance(value, list):
        return [rewrite(item, root) for item in value]
    if isinstance(value, dict):
        return {key: rewrite(item, root) for key, item in value.items()}
    return value
