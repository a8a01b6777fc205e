"""The hunt model and the loaders that build it from our files and Sentinel's.

A hunt is one KQL query with a schedule, a lookback window and a delivery
plan. It comes from a YAML file in one of two formats:

* ours (``kind`` ``hunt-runner``): ``id``, ``name``, ``query``, ``schedule``
  (``every: 15m`` or ``cron: "*/15 * * * *"``), ``lookback``, ``delay``,
  ``tenants``, ``sinks``, ``severity``, ``threshold`` and so on; unknown keys
  are problems;
* Microsoft Sentinel's hunting queries and scheduled analytic rules, told
  apart by keys only Sentinel uses (``queryFrequency``,
  ``requiredDataConnectors``, ...). ``queryFrequency`` becomes the schedule,
  ``queryPeriod`` the lookback, ``triggerOperator``/``triggerThreshold`` the
  threshold. Sentinel keys we have no use for are ignored; our own keys
  (``tenants``, ``sinks``, ``enabled``, ...) may be added to a Sentinel file.

Every problem in a file is reported with its line; a file with a problem
yields no hunt, and the other files still load.
"""

from __future__ import annotations

import difflib
import operator
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from runner.durations import format_duration
from runner.errors import Problem
from runner.yamlio import (
    Document,
    Fields,
    YamlPath,
    dotted,
    is_yaml_file,
    read_yaml,
)

__all__ = [
    "SEVERITIES",
    "Hunt",
    "HuntDefaults",
    "HuntFile",
    "Schedule",
    "Threshold",
    "cron_trigger",
    "find_hunt_files",
    "load_hunt_file",
    "load_hunt_files",
    "load_hunts",
    "read_schedule",
]

SEVERITIES = ("informational", "low", "medium", "high")

_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}

_OPERATOR_ALIASES = {
    ">": "gt",
    ">=": "ge",
    "<": "lt",
    "<=": "le",
    "==": "eq",
    "=": "eq",
    "!=": "ne",
    "greaterthan": "gt",
    "greaterthanorequal": "ge",
    "lessthan": "lt",
    "lessthanorequal": "le",
    "equal": "eq",
    "notequal": "ne",
    **{name: name for name in _OPERATORS},
}

_THRESHOLD_TEXT = re.compile(r"^\s*([<>=!]=?|[A-Za-z]+)\s*(-?\d+)\s*$")
_GUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_ID = re.compile(r"^[^\s/\\\x00-\x1f\x7f]+$")
# An id names the file sink's files: with the day and rotation suffixes it
# must stay under the 255 bytes a file name may have.
_ID_MAX_BYTES = 200


@dataclass(frozen=True)
class Schedule:
    """When a hunt runs: every fixed interval or on a UTC crontab, plus jitter."""

    every: timedelta | None
    cron: str | None
    jitter: timedelta = timedelta(0)


@dataclass(frozen=True)
class Threshold:
    """Deliver a run's rows only when their count passes this comparison."""

    operator: str
    value: int

    def holds(self, rows: int) -> bool:
        """Whether a run that returned *rows* rows passes the threshold."""
        return _OPERATORS[self.operator](rows, self.value)


@dataclass(frozen=True)
class Hunt:
    """One query to run on a schedule, loaded and checked; nothing to re-validate."""

    id: str
    name: str
    description: str
    query: str
    schedule: Schedule
    lookback: timedelta
    delay: timedelta
    tenants: tuple[str, ...]
    sinks: tuple[str, ...]
    severity: str
    tags: tuple[str, ...]
    tactics: tuple[str, ...]
    techniques: tuple[str, ...]
    enabled: bool
    priority: int
    threshold: Threshold | None
    timeout: timedelta | None
    source: str
    line: int
    kind: str
    # (dotted key, line) of the file's top-level keys and their list items,
    # so that a problem found later (an unknown tenant) names its own line.
    key_lines: tuple[tuple[str, int], ...] = field(default=(), compare=False)

    def line_of(self, *keys: str) -> int:
        """The line of the first of *keys* the file has, else the query's line."""
        lines = dict(self.key_lines)
        for key in keys:
            if key in lines:
                return lines[key]

        return self.line


@dataclass(frozen=True)
class HuntDefaults:
    """What a hunt gets for each field it leaves out (the config's ``defaults:``)."""

    schedule: Schedule = Schedule(every=timedelta(minutes=15), cron=None)
    lookback: timedelta = timedelta(hours=1)
    delay: timedelta = timedelta(minutes=5)
    severity: str = "medium"
    sinks: tuple[str, ...] = ()
    priority: int = 5
    timeout: timedelta | None = None


@dataclass(frozen=True)
class HuntFile:
    """The outcome of loading one file: a hunt or the problems that stopped it.

    ``query_line`` is the file line holding the query's first line, which is
    the line after ``query: |`` for a block scalar; ``validate`` maps KQL
    diagnostics through it.
    """

    hunt: Hunt | None
    problems: list[Problem]
    query_line: int
    id_line: int = 0


_OUR_KEYS = frozenset(
    {
        "id",
        "name",
        "description",
        "query",
        "schedule",
        "lookback",
        "delay",
        "tenants",
        "sinks",
        "severity",
        "tags",
        "tactics",
        "techniques",
        "enabled",
        "priority",
        "threshold",
        "timeout",
    }
)

# Keys that only Sentinel files carry; one of them marks a file as Sentinel's.
_SENTINEL_MARKERS = frozenset(
    {
        "queryFrequency",
        "queryPeriod",
        "triggerOperator",
        "triggerThreshold",
        "kind",
        "requiredDataConnectors",
        "relevantTechniques",
        "entityMappings",
        "description-detailed",
        "version",
        "metadata",
        "status",
        "customDetails",
        "alertDetailsOverride",
        "eventGroupingSettings",
        "incidentConfiguration",
        "suppressionDuration",
        "suppressionEnabled",
    }
)

# Our keys that Sentinel files do not have: what a user adds to one.
_OUR_EXTENSIONS = sorted(
    _OUR_KEYS - {"id", "name", "description", "query", "severity", "tags", "tactics"}
)

# The keys whose misspelling would silently change what a Sentinel file means:
# ours, and the Sentinel keys the loader reads.
_NEAR_MISS_TARGETS = sorted(
    {
        *_OUR_EXTENSIONS,
        "queryFrequency",
        "queryPeriod",
        "triggerOperator",
        "triggerThreshold",
        "relevantTechniques",
    }
)

# Our keys that say the same as a Sentinel key; a file may give only one.
_SENTINEL_EQUIVALENTS = {
    "schedule": "queryFrequency",
    "lookback": "queryPeriod",
    "threshold": "triggerOperator",
    "techniques": "relevantTechniques",
}

_SCHEDULE_KEYS = frozenset({"every", "cron", "jitter"})
MIN_INTERVAL = timedelta(seconds=1)
_THRESHOLD_KEYS = frozenset({"operator", "value"})


def find_hunt_files(
    paths: Sequence[Path | str],
) -> tuple[list[tuple[Path, str]], list[Problem]]:
    """Each hunt file under *paths* with the name to show for it, in a stable order.

    A file given by name is taken whatever its extension; a folder is searched
    recursively for ``*.yaml``/``*.yml`` in any case, skipping hidden entries.
    """
    found: list[tuple[Path, str]] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            candidates = sorted(
                _yaml_files_under(path, problems), key=lambda entry: entry.as_posix()
            )
        elif path.is_file():
            candidates = [path]
        else:
            problems.append(Problem(str(given), 0, "no such file or folder"))
            continue
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append((candidate, str(candidate)))

    return found, problems


def _yaml_files_under(folder: Path, problems: list[Problem]) -> list[Path]:
    """The YAML files under *folder*, hidden entries skipped; a folder that
    cannot be listed is a problem (its hunts would otherwise vanish unseen)."""

    def unreadable(error: OSError) -> None:
        where = error.filename or str(folder)
        problems.append(
            Problem(str(where), 0, f"cannot read folder: {error.strerror or error}")
        )

    found = []
    for parent, folders, names in os.walk(folder, onerror=unreadable):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            entry = Path(parent) / name
            if name.startswith(".") or not is_yaml_file(entry):
                continue
            if entry.is_file():
                found.append(entry)
            elif entry.is_symlink() and not entry.exists():
                problems.append(
                    Problem(str(entry), 0, "broken symbolic link; no file behind it")
                )

    return found


def load_hunts(
    paths: Sequence[Path | str], defaults: HuntDefaults
) -> tuple[list[Hunt], list[Problem]]:
    """Every hunt in the files and folders *paths*, and every problem found.

    A file with a problem yields no hunt; the others still load. A hunt whose
    ``id`` an earlier file already used is a problem on the later file.
    """
    loaded, problems = load_hunt_files(paths, defaults)

    return [file.hunt for file in loaded if file.hunt is not None], problems


def load_hunt_files(
    paths: Sequence[Path | str], defaults: HuntDefaults
) -> tuple[list[HuntFile], list[Problem]]:
    """Like ``load_hunts``, keeping each file's outcome (``validate`` needs lines)."""
    files, problems = find_hunt_files(paths)
    loaded: list[HuntFile] = []
    first_use: dict[str, Hunt] = {}
    for path, shown in files:
        outcome = load_hunt_file(path, defaults, shown=shown)
        problems.extend(outcome.problems)
        hunt = outcome.hunt
        if hunt is not None and hunt.id in first_use:
            problems.append(
                Problem(
                    hunt.source,
                    outcome.id_line,
                    f"id {hunt.id!r} is already used by {first_use[hunt.id].source}",
                )
            )
            outcome = replace(outcome, hunt=None)
        elif hunt is not None:
            first_use[hunt.id] = hunt
        loaded.append(outcome)

    return loaded, problems


def load_hunt_file(
    path: Path | str, defaults: HuntDefaults, *, shown: str | None = None
) -> HuntFile:
    """The hunt in the one file at *path*; *shown* names it in problems."""
    shown = str(path) if shown is None else shown
    document, problems = read_yaml(path)
    if document is not None and document.source != shown:
        document = Document(
            shown,
            document.data,
            document.keys,
            document.values,
            document.block_scalars,
        )
    if document is None:
        return HuntFile(None, [_renamed(problem, shown) for problem in problems], 0)
    if document.data is None:
        return HuntFile(None, [Problem(shown, 0, "the file is empty")], 0)

    fields = Fields(document, [])
    data = fields.mapping((), document.data)
    if data is None:
        return HuntFile(None, fields.problems, 0)

    stem = Path(path).stem.replace(" ", "-")
    if _is_sentinel(data):
        hunt = _sentinel_hunt(fields, data, defaults, stem)
    else:
        hunt = _our_hunt(fields, data, defaults, stem)
    query_line = document.values.get(("query",), document.line(("query",)))
    # A hunt named after its file is reported at the top of the file.
    id_line = document.keys.get(("id",), 1)

    problems = sorted(fields.problems, key=lambda problem: problem.line)

    return HuntFile(hunt if not problems else None, problems, query_line, id_line)


def _renamed(problem: Problem, shown: str) -> Problem:
    return Problem(shown, problem.line, problem.message)


def _is_sentinel(data: dict[str, Any]) -> bool:
    if any(key in _SENTINEL_MARKERS for key in data):
        return True
    identifier = data.get("id")
    ours_only = _OUR_KEYS - {"id", "name", "description", "query", "severity", "tags"}

    return (
        isinstance(identifier, str)
        and bool(_GUID.match(identifier))
        and not any(key in ours_only for key in data)
    )


def _our_hunt(
    fields: Fields, data: dict[str, Any], defaults: HuntDefaults, stem: str
) -> Hunt | None:
    fields.known_keys((), data, _OUR_KEYS)

    return _build(fields, data, defaults, stem, kind="hunt-runner")


def _sentinel_hunt(
    fields: Fields, data: dict[str, Any], defaults: HuntDefaults, stem: str
) -> Hunt | None:
    # Sentinel's other keys are ignored, so a misspelt key of ours (enable:
    # false) would be ignored too; a near miss of one of ours is a problem.
    for key in data:
        if not isinstance(key, str) or key in _OUR_KEYS or key in _SENTINEL_MARKERS:
            continue
        close = difflib.get_close_matches(key, _NEAR_MISS_TARGETS, n=1, cutoff=0.8)
        if close:
            fields.fail((key,), f"unknown key; did you mean {close[0]}?")
    for ours, theirs in _SENTINEL_EQUIVALENTS.items():
        if ours in data and theirs in data:
            fields.fail((ours,), f"give either {ours} or {theirs}, not both")

    kind = "sentinel-hunting"
    rule_kind = data.get("kind")
    if rule_kind is not None:
        text = fields.string(("kind",), rule_kind)
        if text is not None and text.lower() != "scheduled":
            fields.fail(
                ("kind",),
                f"{text!r} rules are not supported; only Scheduled rules and "
                "hunting queries",
            )
    if rule_kind is not None or "queryFrequency" in data:
        kind = "sentinel-scheduled"

    return _build(fields, data, defaults, stem, kind=kind)


def _build(
    fields: Fields,
    data: dict[str, Any],
    defaults: HuntDefaults,
    stem: str,
    *,
    kind: str,
) -> Hunt | None:
    sentinel = kind != "hunt-runner"

    def read(key: str, reader: Callable[[YamlPath, Any], Any], default: Any) -> Any:
        if key not in data:
            return default

        return reader((key,), data[key])

    identifier = read("id", fields.string, stem)
    if identifier is not None and not _ID.match(identifier):
        fields.fail(
            ("id",),
            f"{identifier!r} must be one word without / or \\ or control characters",
        )
    elif identifier is not None and len(identifier.encode()) > _ID_MAX_BYTES:
        fields.fail(
            ("id",),
            f"must be at most {_ID_MAX_BYTES} bytes in UTF-8 (it names files); "
            f"this one has {len(identifier.encode())}",
        )
    name = read("name", fields.string, identifier)
    description = read("description", _text(fields), "")
    query = _query(fields, data)
    severity = read(
        "severity",
        lambda path, value: fields.string(path, value, choices=SEVERITIES),
        defaults.severity,
    )

    schedule = read(
        "schedule",
        lambda path, value: read_schedule(fields, path, value, defaults),
        None,
    )
    lookback = read(
        "lookback",
        lambda path, value: fields.duration(path, value, positive=True),
        None,
    )
    threshold = read(
        "threshold", lambda path, value: _threshold(fields, path, value), None
    )
    techniques = read("techniques", fields.strings, ())
    tactics = () if sentinel else read("tactics", fields.strings, ())
    tags = () if sentinel else read("tags", fields.strings, ())
    if sentinel:
        mapped = _sentinel_fields(fields, data, defaults)
        schedule = mapped.get("schedule", schedule)
        lookback = mapped.get("lookback", lookback)
        threshold = mapped.get("threshold", threshold)
        techniques = mapped.get("techniques", techniques)
        tactics, tags = mapped["tactics"], mapped["tags"]

    hunt = Hunt(
        id=identifier,
        name=name,
        description=description,
        query=query,
        schedule=schedule or defaults.schedule,
        lookback=lookback or defaults.lookback,
        delay=read(
            "delay", lambda path, value: fields.duration(path, value), defaults.delay
        ),
        tenants=read("tenants", _names(fields, "every tenant"), ()),
        sinks=read("sinks", _names(fields, "the default sinks"), defaults.sinks),
        severity=severity,
        tags=tags,
        tactics=tactics,
        techniques=techniques,
        enabled=read("enabled", fields.boolean, True),
        priority=read(
            "priority",
            lambda path, value: fields.integer(path, value, low=0, high=10),
            defaults.priority,
        ),
        threshold=threshold,
        timeout=read(
            "timeout",
            lambda path, value: fields.duration(path, value, positive=True),
            defaults.timeout,
        ),
        source=fields.document.source,
        line=fields.document.line(("query",)),
        kind=kind,
        key_lines=tuple(
            (dotted(path), line)
            for path, line in fields.document.keys.items()
            if len(path) == 1 or (len(path) == 2 and isinstance(path[1], int))
        ),
    )

    return None if fields.problems else hunt


def _sentinel_fields(
    fields: Fields, data: dict[str, Any], defaults: HuntDefaults
) -> dict[str, Any]:
    """The hunt fields a Sentinel file gives under Sentinel's own names."""
    mapped: dict[str, Any] = {
        "tactics": _sentinel_words(fields, data, "tactics"),
        # Sentinel tags mix words with mappings describing ASIM schemas.
        "tags": tuple(
            tag.strip()
            for tag in (data["tags"] if isinstance(data.get("tags"), list) else [])
            if isinstance(tag, str) and tag.strip()
        ),
    }
    if "queryFrequency" in data:
        every = fields.duration(
            ("queryFrequency",), data["queryFrequency"], positive=True
        )
        mapped["schedule"] = (
            Schedule(every=every, cron=None, jitter=defaults.schedule.jitter)
            if every
            else None
        )
    if "queryPeriod" in data:
        mapped["lookback"] = fields.duration(
            ("queryPeriod",), data["queryPeriod"], positive=True
        )
    if "triggerOperator" in data or "triggerThreshold" in data:
        mapped["threshold"] = _sentinel_threshold(fields, data)
    if "relevantTechniques" in data:
        mapped["techniques"] = _sentinel_words(fields, data, "relevantTechniques")

    return mapped


def _sentinel_words(
    fields: Fields, data: dict[str, Any], key: str
) -> tuple[str, ...] | None:
    # Published Sentinel files leave these empty or give one word without a
    # list; they are labels, so read them as meant rather than refuse the file.
    value = data.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.strip(),) if value.strip() else ()

    return fields.strings((key,), value)


def _names(fields: Fields, meaning: str) -> Callable[[YamlPath, Any], Any]:
    """A non-empty list of names; an empty one would silently mean *meaning*."""

    def read(path: YamlPath, value: Any) -> tuple[str, ...] | None:
        names = fields.strings(path, value)
        if names == ():
            fields.fail(
                path, f"an empty list is not allowed; leave the key out for {meaning}"
            )
            return None

        return names

    return read


def _text(fields: Fields) -> Callable[[YamlPath, Any], str | None]:
    def read(path: YamlPath, value: Any) -> str | None:
        if value is None:
            return ""
        if not isinstance(value, str):
            fields.fail(path, "expected text")
            return None

        return value.strip()

    return read


def _query(fields: Fields, data: dict[str, Any]) -> str | None:
    if "query" not in data:
        fields.fail((), "query is missing")
        return None
    value = data["query"]
    if not isinstance(value, str) or not value.strip():
        fields.fail(("query",), "expected the KQL query as text")
        return None

    return value


def read_schedule(
    fields: Fields, path: YamlPath, value: Any, defaults: HuntDefaults
) -> Schedule | None:
    """The schedule mapping at *path*; every/cron left out come from *defaults*."""
    if not isinstance(value, dict):
        shown = repr(value) if isinstance(value, str) else "this"
        fields.fail(
            path,
            f'{shown} is not a schedule; write every: 15m or cron: "*/15 * * * *"',
        )
        return None
    fields.known_keys(path, value, _SCHEDULE_KEYS)

    every = cron = None
    jitter = defaults.schedule.jitter
    if "every" in value:
        every = fields.duration((*path, "every"), value["every"], positive=True)
    if "cron" in value:
        cron = _cron(fields, (*path, "cron"), value["cron"])
    if "jitter" in value:
        jitter = fields.duration((*path, "jitter"), value["jitter"])
    if "every" in value and "cron" in value:
        fields.fail(path, "give either every or cron, not both")
        return None
    if "every" not in value and "cron" not in value:
        every, cron = defaults.schedule.every, defaults.schedule.cron
    if (every is None and cron is None) or jitter is None:
        return None
    if every is not None and every < MIN_INTERVAL:
        # Shorter intervals only spin the scheduler: the quota admits 45 calls
        # a minute for the whole tenant.
        fields.fail(
            (*path, "every") if "every" in value else path,
            f"every {format_duration(every)} is shorter than "
            f"{format_duration(MIN_INTERVAL)}",
        )
        return None
    if every is not None and jitter >= every:
        # APScheduler adds the jitter to each interval after the last fire, so
        # a jitter this long would stretch every interval by up to itself.
        fields.fail(
            (*path, "jitter") if "jitter" in value else path,
            f"jitter {format_duration(jitter)} must be shorter than the interval "
            f"({format_duration(every)})",
        )
        return None

    return Schedule(every=every, cron=cron, jitter=jitter)


def _cron(fields: Fields, path: YamlPath, value: Any) -> str | None:
    text = fields.string(path, value)
    if text is None:
        return None
    normal = " ".join(text.split())
    try:
        trigger = cron_trigger(normal)
    except ValueError as error:
        fields.fail(path, f"{text!r} is not a 5-field crontab: {error}")
        return None
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        fields.fail(path, f"{text!r} never fires (no such date)")
        return None

    return normal


_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(crontab: str, *, jitter: int | None = None) -> CronTrigger | OrTrigger:
    """The UTC trigger of a 5-field *crontab*, read as cron reads it.

    APScheduler numbers the days of the week from Monday (0) to Sunday (6);
    crontab numbers them from Sunday (0 or 7). The day-of-week field is
    therefore handed over as day names, so ``1-5`` stays Monday to Friday.
    When both the day of the month and the day of the week are restricted,
    cron fires on a day that matches either (``0 0 1 * 1``: the 1st and every
    Monday), where APScheduler would want both. ``ValueError`` says what is
    wrong with a bad field.
    """
    parts = crontab.split()
    if len(parts) != 5:
        raise ValueError(f"Wrong number of fields; got {len(parts)}, expected 5")
    minute, hour, day, month, day_of_week = parts

    def cron(day: str, day_of_week: str, jitter: int | None = None) -> CronTrigger:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_cron_days(day_of_week),
            timezone="UTC",
            jitter=jitter,
        )

    if day.startswith("*") or day_of_week.startswith("*"):
        return cron(day, day_of_week, jitter)

    return OrTrigger([cron(day, "*"), cron("*", day_of_week)], jitter=jitter)


def _cron_days(text: str) -> str:
    """A crontab day-of-week field as APScheduler day names (``mon,tue``)."""
    if text == "*":
        return text
    days: set[int] = set()
    for part in text.split(","):
        body, slash, step_text = part.partition("/")
        if slash and (not step_text.isdigit() or int(step_text) == 0):
            raise ValueError(f"day of week {part!r}: bad step")
        step = int(step_text) if slash else 1
        if body == "*":
            first, last = 0, 6
        elif "-" in body:
            low, _, high = body.partition("-")
            first, last = _cron_day(low), _cron_day(high)
        else:
            first = _cron_day(body)
            last = 7 if slash else first
        if first > last:
            raise ValueError(f"day of week {part!r}: the range goes backwards")
        days.update(day % 7 for day in range(first, last + 1, step))

    return ",".join(_CRON_DAYS[day] for day in sorted(days))


def _cron_day(text: str) -> int:
    if text.lower() in _CRON_DAYS:
        return _CRON_DAYS.index(text.lower())
    if text.isdigit() and int(text) <= 7:
        return int(text)

    raise ValueError(
        f"day of week {text!r} is not 0-7 (0 and 7 are Sunday) or a day name"
    )


def _operator(fields: Fields, path: YamlPath, value: Any) -> str | None:
    text = fields.string(path, value)
    if text is None:
        return None
    name = _OPERATOR_ALIASES.get(text.lower())
    if name is None:
        fields.fail(
            path, f"{text!r} is not an operator; use one of {', '.join(_OPERATORS)}"
        )

    return name


def _threshold(fields: Fields, path: YamlPath, value: Any) -> Threshold | None:
    if isinstance(value, str):
        match = _THRESHOLD_TEXT.match(value)
        if match is None:
            fields.fail(path, f'{value!r} is not a threshold; write e.g. "> 5"')
            return None
        name = _operator(fields, path, match.group(1))
        return Threshold(name, int(match.group(2))) if name else None

    mapping = fields.mapping(path, value)
    if mapping is None:
        return None
    fields.known_keys(path, mapping, _THRESHOLD_KEYS)
    if "operator" not in mapping or "value" not in mapping:
        fields.fail(path, "needs both operator and value")
        return None
    name = _operator(fields, (*path, "operator"), mapping["operator"])
    count = fields.integer((*path, "value"), mapping["value"])
    if name is None or count is None:
        return None

    return Threshold(name, count)


def _sentinel_threshold(fields: Fields, data: dict[str, Any]) -> Threshold | None:
    if "triggerOperator" not in data or "triggerThreshold" not in data:
        fields.fail((), "triggerOperator and triggerThreshold go together")
        return None
    name = _operator(fields, ("triggerOperator",), data["triggerOperator"])
    count = fields.integer(("triggerThreshold",), data["triggerThreshold"])
    if name is None or count is None:
        return None

    return Threshold(name, count)
