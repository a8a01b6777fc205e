"""Reading YAML files so that what the user wrote is what we get, with lines.

PyYAML follows YAML 1.1, whose implicit types surprise people: ``no`` and
``on`` become booleans, ``10:30`` becomes the integer 630, ``010`` becomes 8
and ``2024-01-01`` becomes a date. Our loader keeps only the YAML 1.2 core
types: ``true``/``false``, ``null``/``~``, decimal/``0x``/``0o`` integers and
decimal floats. Everything else stays a string, and a field that wants a
boolean rejects ``"no"`` with a message saying to write ``false``.

``read_yaml`` returns a ``Document``: plain Python data plus the line of every
mapping key and sequence item, keyed by the path to it, so that callers can
report ``file:line: message``. Duplicate keys, anchors and aliases, tabs used
for indentation and undecodable bytes are problems, never guesses.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runner.durations import parse_duration
from runner.errors import Problem

__all__ = [
    "Document",
    "Fields",
    "YamlPath",
    "dotted",
    "is_yaml_file",
    "read_yaml",
    "read_yaml_text",
]

YamlPath = tuple[str | int, ...]

_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core implicit types instead of YAML 1.1's."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        # Aliases can expand exponentially and our files have no use for them.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases are not supported", event.start_mark
            )
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])


def _construct_int(loader: _Loader, node: ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0x"):
        return int(text[2:], 16)
    if text.startswith("0o"):
        return int(text[2:], 8)

    # Decimal even with leading zeros: "010" is ten, not YAML 1.1's eight.
    return int(text, 10)


def _construct_float(loader: _Loader, node: ScalarNode) -> float:
    text = loader.construct_scalar(node).lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")

    return float(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


@dataclass(frozen=True)
class Document:
    """One YAML file read into plain data, with the line of every key and item.

    ``keys[path]`` is the 1-based line of the mapping key (or sequence item) at
    *path*; ``values[path]`` is the line where a scalar's text starts, which for
    a ``|`` or ``>`` block scalar is the line after the indicator.
    """

    source: str
    data: Any
    keys: Mapping[YamlPath, int] = field(default_factory=dict)
    values: Mapping[YamlPath, int] = field(default_factory=dict)
    block_scalars: frozenset[YamlPath] = frozenset()

    def line(self, path: YamlPath = ()) -> int:
        """The line of *path*, or of its nearest ancestor that has one."""
        while path:
            if path in self.keys:
                return self.keys[path]
            path = path[:-1]

        return 1

    def problem(self, path: YamlPath, message: str) -> Problem:
        """A problem at the line of *path*, its message prefixed by the dotted key."""
        where = dotted(path)
        text = f"{where}: {message}" if where else message

        return Problem(self.source, self.line(path), text)


def dotted(path: YamlPath) -> str:
    """``("tenants", "x", "limits")`` as ``tenants.x.limits``; items as ``[2]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)

    return text


def is_yaml_file(path: Path) -> bool:
    """Whether *path* names a YAML file by its extension, in any case."""
    return path.suffix.lower() in (".yaml", ".yml")


def read_yaml(path: Path | str) -> tuple[Document | None, list[Problem]]:
    """Read the YAML file at *path* as UTF-8 (BOM allowed), whatever the locale."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None, [Problem(source, 0, "no such file")]
    except OSError as error:
        return None, [Problem(source, 0, f"cannot read: {error.strerror or error}")]

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        return None, [
            Problem(
                source,
                line,
                f"not valid UTF-8 (byte 0x{raw[error.start]:02x}); save the file "
                "as UTF-8",
            )
        ]

    return read_yaml_text(text, source)


def read_yaml_text(text: str, source: str) -> tuple[Document | None, list[Problem]]:
    """Parse *text* as one YAML document; *source* names it in problems."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as error:
        return None, [_reader_problem(source, text, error)]

    try:
        node = loader.get_single_node()
        if node is None:
            return Document(source, None), []

        builder = _Builder(loader, source)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as error:
        return None, [_marked_problem(source, text, error)]
    except yaml.reader.ReaderError as error:
        return None, [_reader_problem(source, text, error)]
    except _Refused as refused:
        return None, [refused.problem]
    except RecursionError:
        line = loader.get_mark().line + 1
        return None, [Problem(source, line, "nested too deeply to be read")]
    finally:
        loader.dispose()

    return Document(
        source,
        data,
        builder.keys,
        builder.values,
        frozenset(builder.block_scalars),
    ), []


def _reader_problem(source: str, text: str, error: yaml.reader.ReaderError) -> Problem:
    line = text.count("\n", 0, error.position) + 1
    character = error.character
    code = character if isinstance(character, int) else ord(character)

    return Problem(
        source, line, f"character U+{code:04X} is not allowed in a YAML file"
    )


def _marked_problem(source: str, text: str, error: yaml.MarkedYAMLError) -> Problem:
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else 1
    problem = error.problem or "malformed YAML"
    if mark is not None and "'\\t'" in problem:
        return Problem(
            source, line, "a tab character is not allowed here; indent with spaces"
        )
    if "another document" in problem:
        return Problem(source, line, "a file holds one YAML document; found a second")
    if error.context and "block scalar" in error.context:
        return Problem(
            source,
            line,
            f"malformed block scalar ({problem}); every line of a | or > block "
            "must be indented at least as far as its first line",
        )
    if "<block end>" in problem:
        problem = f"indentation does not match the lines above: {problem}"
    message = problem
    if error.context and error.context_mark is not None:
        message = f"{problem} ({error.context} at line {error.context_mark.line + 1})"

    return Problem(source, line, message)


class _Refused(Exception):
    """A problem found while building: a duplicate key, a tag the text misfits."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _Builder:
    """Turns a composed node tree into plain data, recording lines on the way."""

    def __init__(self, loader: _Loader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.keys: dict[YamlPath, int] = {}
        self.values: dict[YamlPath, int] = {}
        self.block_scalars: set[YamlPath] = set()

    def build(self, node: Node, path: YamlPath) -> Any:
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.keys[(*path, index)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, index)))
            return items

        value = self._construct(node, path)
        if isinstance(node, ScalarNode) and node.style in ("|", ">"):
            self.block_scalars.add(path)
            self.values[path] = node.start_mark.line + 2
        else:
            self.values[path] = node.start_mark.line + 1

        return value

    def _construct(self, node: Node, path: YamlPath) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            # An explicit tag the text does not fit: !!int abc, !!bool maybe.
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            where = dotted(path)
            message = f"{node.value!r} cannot be read as {tag}"
            raise _Refused(
                Problem(
                    self.source,
                    node.start_mark.line + 1,
                    f"{where}: {message}" if where else message,
                )
            ) from None

    def _mapping(self, node: MappingNode, path: YamlPath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value", key_node.start_mark
                )
            key = self._construct(key_node, path)
            if key in first_line:
                where = dotted((*path, key))
                raise _Refused(
                    Problem(
                        self.source,
                        line,
                        f"{where}: duplicate key (first at line {first_line[key]})",
                    )
                )
            first_line[key] = line
            self.keys[(*path, key)] = line
            result[key] = self.build(value_node, (*path, key))

        return result


class Fields:
    """Typed reads of values from a ``Document``, each failure one ``Problem``.

    Every reader takes the path of the value (for the line and the key in the
    message) and the value itself, and returns ``None`` after recording a
    problem when the value is not what the field wants.
    """

    def __init__(self, document: Document, problems: list[Problem]) -> None:
        self.document = document
        self.problems = problems

    def fail(self, path: YamlPath, message: str) -> None:
        self.problems.append(self.document.problem(path, message))

    def known_keys(
        self, path: YamlPath, mapping: Mapping[Any, Any], known: Collection[str]
    ) -> None:
        """Record one problem per key of *mapping* that is not in *known*."""
        for key in mapping:
            if key not in known:
                self.fail(
                    (*path, key),
                    f"unknown key; known keys are {', '.join(sorted(known))}",
                )

    def mapping(self, path: YamlPath, value: Any) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping of keys, found {_kind(value)}")
            return None
        for key in value:
            if not isinstance(key, str):
                self.fail((*path, key), f"key {key!r} must be text")
                return None

        return value

    def string(
        self,
        path: YamlPath,
        value: Any,
        *,
        choices: Collection[str] = (),
        lower: bool = False,
    ) -> str | None:
        """Non-empty text; with *choices*, one of them (compared case-insensitively)."""
        if not isinstance(value, str):
            self.fail(path, f"expected text, found {_kind(value)}")
            return None
        text = value.strip()
        if not text:
            self.fail(path, "must not be empty")
            return None
        if choices:
            folded = {choice.lower(): choice for choice in choices}
            if text.lower() not in folded:
                self.fail(path, f"{value!r} is not one of {', '.join(choices)}")
                return None
            return folded[text.lower()]

        return text.lower() if lower else text

    def strings(self, path: YamlPath, value: Any) -> tuple[str, ...] | None:
        """A list of non-empty texts."""
        if not isinstance(value, list):
            self.fail(path, f"expected a list, found {_kind(value)}")
            return None
        items = []
        for index, item in enumerate(value):
            text = self.string((*path, index), item)
            if text is None:
                return None
            items.append(text)

        return tuple(items)

    def boolean(self, path: YamlPath, value: Any) -> bool | None:
        if isinstance(value, bool):
            return value

        shown = repr(value) if isinstance(value, str) else _kind(value)
        self.fail(path, f"{shown} is not a boolean; write true or false")
        return None

    def integer(
        self,
        path: YamlPath,
        value: Any,
        *,
        low: int | None = None,
        high: int | None = None,
    ) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected a whole number, found {_kind(value)}")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.fail(path, f"{value} is out of range {_range(low, high)}")
            return None

        return value

    def number(
        self, path: YamlPath, value: Any, *, positive: bool = False
    ) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, f"expected a number, found {_kind(value)}")
            return None
        if positive and not value > 0:
            self.fail(path, f"{value} must be greater than 0")
            return None

        return float(value)

    def duration(
        self, path: YamlPath, value: Any, *, positive: bool = False
    ) -> timedelta | None:
        """A duration (``15m``, ``PT15M``); with *positive*, longer than zero."""
        try:
            parsed = parse_duration(value)
        except ValueError as error:
            self.fail(path, str(error))
            return None
        if positive and parsed <= timedelta(0):
            self.fail(path, "must be longer than 0s")
            return None

        return parsed


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"

    return type(value).__name__


def _range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"{low}..{high}"
    if low is not None:
        return f">= {low}"

    return f"<= {high}"
