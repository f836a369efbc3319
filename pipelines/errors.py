"""The template's user-facing errors: one hierarchy, each class with the exit code its CLIs use.

A ``TemplateError`` is a problem the user can fix (bad input, bad configuration, an AWS refusal);
its message is one line saying what was wrong, where, and what to do. Anything else that escapes
is a bug and is left to propagate with its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TemplateError(Exception):
    """Base class of every user-facing error; ``exit_code`` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(TemplateError):
    """The command line itself is wrong: bad JSON, an unknown module, a missing option."""

    exit_code = 2


class ConfigError(TemplateError):
    """The pipeline's arguments or configuration files are invalid; nothing was sent to AWS."""

    exit_code = 2


class AwsError(TemplateError):
    """AWS refused or failed a call (credentials, permissions, throttling beyond retries)."""

    exit_code = 3


class StorageError(TemplateError):
    """Local storage refused a write (a read-only file system, a full disk); nothing was half-done
    that a rerun does not redo."""

    exit_code = 1


class NotFoundError(TemplateError):
    """A named resource does not exist (a model package group, a model package version)."""

    exit_code = 4


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ' Did you mean X?' suffix when ``word`` is close to one of ``candidates``, else ''."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_names(where: str, what: str, given, known) -> str | None:
    """The message for names in ``given`` that are not in ``known``, or None when all are known."""
    known = list(known)
    unknown = [name for name in given if name not in known]
    if not unknown:
        return None
    hints = "".join(did_you_mean(name, known) for name in unknown)
    return f"{where}: unknown {what} {', '.join(map(repr, unknown))}.{hints} Known: {', '.join(known)}"


def join_problems(problems: list[str]) -> str:
    """All problems of one check on one line, so a user fixes them in a single pass."""
    return "; ".join(problems)
