"""Secrets read from the environment or from files, and kept out of every output.

A ``Secret`` prints as ``[redacted]`` in logs, errors and reprs; only
``reveal()`` gives the value, and only the code that sends it calls that.
"""

from __future__ import annotations

import os
from pathlib import Path


class Secret:
    """A value that must never be printed; ``reveal()`` is the one way to read it."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.origin}: [redacted])"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("a Secret cannot be pickled")


def from_env(name: str) -> Secret:
    """The secret in environment variable *name*; ``KeyError`` naming it if unset."""
    value = os.environ.get(name)
    if not value:
        raise KeyError(f"environment variable {name} is not set")

    return Secret(value, f"env:{name}")


def from_file(path: str | Path) -> Secret:
    """The secret in the file at *path*, trailing newline and any BOM removed.

    Windows tools (PowerShell 5's ``Set-Content -Encoding UTF8``) write a BOM,
    which would otherwise become the first character of the secret.
    """
    value = Path(path).read_text(encoding="utf-8-sig").rstrip("\r\n")
    if not value:
        raise ValueError(f"secret file {path} is empty")

    return Secret(value, f"file:{path}")
