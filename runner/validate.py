"""Checking configuration and hunt files offline, without calling any API.

``validate_paths`` reports every problem as ``file:line: message``: YAML that
does not parse, fields of the wrong type, network settings that cannot work
(a missing or unreadable CA bundle, an unknown ``ca_mode``, an authority or
API base that is not https, an authority without a tenant segment, an API
base with a query string, a proxy that is not an http(s) URL, has no host or
port, or carries credentials, a proxy password variable that is not set),
references to tenants or sinks that are not configured, and KQL syntax
errors. Settings that work but are probably not meant (a ``read_timeout``
below the service's own limit) come as warnings, which fail nothing. KQL is checked with
``duckdb_kql.validate``, a syntax check only: a construct the local engine
cannot translate is not a problem here, because the service may support it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb_kql

from runner.config import Settings, load_config
from runner.errors import ConfigError, Problem
from runner.hunts import Hunt, HuntDefaults, HuntFile, load_hunt_files
from runner.schedule import Window, query_prelude

__all__ = [
    "check_references",
    "kql_problems",
    "reference_problems",
    "sink_problems",
    "validate_paths",
]

# The daemon puts the window in front of the query's first line as two lets;
# a query may use both names, so it is checked with the same prelude.
_PRELUDE = query_prelude(
    Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 1, 1, tzinfo=UTC))
)
_LONG_EXPECTING = re.compile(r"expecting \{[^}]{60,}\}")


def validate_paths(
    paths: Sequence[Path | str],
    config_dir: Path | str | None,
    *,
    neighbours: Sequence[Path | str] = (),
) -> list[Problem]:
    """Every problem in the configuration (when given) and the hunt files.

    Hunts in *neighbours* (the jobs folder, when single files are checked) are
    not checked themselves, but an id one of them already uses is a problem.
    """
    problems: list[Problem] = []
    settings: Settings | None = None
    if config_dir is not None:
        settings, config_problems = load_config(config_dir, partial=True, secrets=False)
        problems.extend(config_problems)
        if settings is not None:
            problems.extend(settings.warnings)

    defaults = settings.hunt_defaults if settings is not None else HuntDefaults()
    loaded, hunt_problems = load_hunt_files(paths, defaults)
    problems.extend(hunt_problems)
    for outcome in loaded:
        if outcome.hunt is not None:
            problems.extend(kql_problems(outcome))
    if neighbours:
        problems.extend(_ids_taken(loaded, neighbours, defaults))

    if settings is not None:
        problems.extend(sink_problems(settings))
        hunts = [outcome.hunt for outcome in loaded if outcome.hunt is not None]
        problems.extend(check_references(hunts, settings))

    return problems


def _ids_taken(
    loaded: Sequence[HuntFile], neighbours: Sequence[Path | str], defaults: HuntDefaults
) -> list[Problem]:
    checked = [(o.hunt, o.id_line) for o in loaded if o.hunt is not None]
    files = {Path(hunt.source).resolve() for hunt, _ in checked}
    others, _ = load_hunt_files(neighbours, defaults)
    taken = {
        other.hunt.id: other.hunt.source
        for other in others
        if other.hunt is not None and Path(other.hunt.source).resolve() not in files
    }

    return [
        Problem(
            hunt.source, line, f"id {hunt.id!r} is already used by {taken[hunt.id]}"
        )
        for hunt, line in checked
        if hunt.id in taken
    ]


def sink_problems(settings: Settings) -> list[Problem]:
    """Problems in each sink's own options, found by building it (no I/O)."""
    from runner.sinks.base import build_sink

    problems: list[Problem] = []
    for spec in settings.sinks:
        try:
            build_sink(spec)
        except ConfigError as error:
            problems.extend(error.problems)

    return problems


def kql_problems(outcome: HuntFile) -> list[Problem]:
    """The KQL syntax errors in the hunt's query, at their lines in the file."""
    hunt = outcome.hunt
    if hunt is None:
        return []

    try:
        diagnostics = duckdb_kql.validate(_PRELUDE + hunt.query)
    except duckdb_kql.KqlError as error:
        return [Problem(hunt.source, hunt.line, f"query: {error}")]

    problems = []
    for diagnostic in diagnostics:
        query_line = max(diagnostic.span.line, 1)
        column = diagnostic.span.column
        if query_line == 1:
            column = max(column - len(_PRELUDE), 0)
        message = _LONG_EXPECTING.sub("expecting something else", diagnostic.message)
        problems.append(
            Problem(
                hunt.source,
                _file_line(outcome, query_line),
                f"query: KQL syntax error (query line {query_line}, column "
                f"{column + 1}): {message}",
            )
        )

    return problems


def _file_line(outcome: HuntFile, query_line: int) -> int:
    # A block scalar (query: |) keeps the file's line breaks, so query line n
    # is file line query_line + n - 1. Quoted and folded text joins lines, so
    # there the best we can say is where the query starts.
    assert outcome.hunt is not None
    if outcome.query_line > outcome.hunt.line:
        return outcome.query_line + query_line - 1

    return outcome.query_line


def check_references(hunts: Sequence[Hunt], settings: Settings) -> list[Problem]:
    """Problems in what hunts refer to: tenants, sinks, and the data window."""
    problems = reference_problems(hunts, settings)
    for hunt in hunts:
        if hunt.lookback + hunt.delay > settings.data_window:
            problems.append(
                Problem(
                    hunt.source,
                    hunt.line_of("lookback", "delay"),
                    f"lookback: {hunt.lookback} plus delay reaches past the "
                    f"{settings.data_window.days}-day data window",
                )
            )

    return problems


def reference_problems(hunts: Sequence[Hunt], settings: Settings) -> list[Problem]:
    """Tenants and sinks that hunts name but the configuration does not have.

    A hunt with such a problem cannot run as written: an unknown tenant has
    no client, and rows for an unknown sink would be delivered nowhere.
    """
    tenants = {tenant.name for tenant in settings.tenants}
    sinks = {spec.name for spec in settings.sinks}
    problems = []
    for hunt in hunts:
        for index, name in enumerate(hunt.tenants):
            if name not in tenants:
                problems.append(
                    Problem(
                        hunt.source,
                        hunt.line_of(f"tenants[{index}]", "tenants"),
                        f"tenants: no tenant named {name!r}; configured tenants "
                        f"are {', '.join(sorted(tenants)) or 'none'}",
                    )
                )
        for index, name in enumerate(hunt.sinks):
            if name not in sinks:
                problems.append(
                    Problem(
                        hunt.source,
                        hunt.line_of(f"sinks[{index}]", "sinks"),
                        f"sinks: no sink named {name!r}; configured sinks are "
                        f"{', '.join(sorted(sinks)) or 'none'}",
                    )
                )

    return problems
