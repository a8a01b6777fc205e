"""Reading YAML: YAML 1.2 core types, lines of keys, and problems with lines."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from shared_corpus import CORPUS, needs_corpus

from runner.durations import format_duration, parse_duration
from runner.errors import Problem
from runner.yamlio import read_yaml, read_yaml_text

FIXTURES = Path(__file__).parent / "fixtures" / "yaml"
BROKEN_CORPUS_FILES = {
    "sentinel-xdr-hunting/Email Queries/Hunting/MDO_URLClickedinEmail.YAML": 8,
    "sentinel-xdr-hunting/Email Queries/Spam/"
    "Spam Detection IP and Geo Position.yaml": 20,
}


def data(text: str) -> object:
    document, problems = read_yaml_text(text, "t.yaml")
    assert problems == []
    assert document is not None
    return document.data


@pytest.mark.parametrize(
    "word", ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On"]
)
def test_yaml11_boolean_words_stay_text(word: str) -> None:
    """yes/no/on/off and friends are read as the text written, not as booleans."""
    assert data(f"value: {word}\n{word}: key\n") == {"value": word, word: "key"}


def test_true_false_and_null_are_typed() -> None:
    """Only true/false are booleans, and null/~/empty are None."""
    assert data("a: true\nb: False\nc: null\nd: ~\ne:\n") == {
        "a": True,
        "b": False,
        "c": None,
        "d": None,
        "e": None,
    }


def test_sexagesimal_dates_and_octal_keep_their_meaning() -> None:
    """10:30 stays text, dates stay text, 010 is ten and 0x10 sixteen."""
    assert data(
        "t: 10:30\nd: 2024-01-01\nts: 2024-01-01 10:00:00\no: 010\nh: 0x10\n"
    ) == {
        "t": "10:30",
        "d": "2024-01-01",
        "ts": "2024-01-01 10:00:00",
        "o": 10,
        "h": 16,
    }


def test_numbers_are_typed() -> None:
    """Decimal integers and floats, with exponents, are numbers."""
    assert data("a: 45\nb: -3\nc: 1.5\nd: 1e3\ne: .5\n") == {
        "a": 45,
        "b": -3,
        "c": 1.5,
        "d": 1000.0,
        "e": 0.5,
    }


def test_lines_of_keys_items_and_block_scalars() -> None:
    """Keys and items carry their 1-based line; a block scalar's text starts below."""
    document, _ = read_yaml_text(
        "name: x\nquery: |\n  A\n  | take 1\nlist:\n  - one\n  - two\n", "t.yaml"
    )
    assert document is not None
    assert document.keys[("query",)] == 2
    assert document.values[("query",)] == 3
    assert ("query",) in document.block_scalars
    assert document.keys[("list", 1)] == 7
    assert document.line(("list", 1, "missing")) == 7
    assert document.problem(("list", 0), "bad") == Problem("t.yaml", 6, "list[0]: bad")


def test_duplicate_key_is_a_problem_naming_both_lines() -> None:
    """A key given twice in one mapping is refused, with both lines."""
    document, problems = read_yaml_text("a: 1\nb:\n  c: 1\n  c: 2\n", "t.yaml")
    assert document is None
    assert problems == [Problem("t.yaml", 4, "b.c: duplicate key (first at line 3)")]


def test_tab_indentation_is_a_problem_at_its_line() -> None:
    """A tab used for indentation is reported at its line with a fix."""
    document, problems = read_yaml(FIXTURES / "broken" / "tabs.yaml")
    assert document is None
    assert [(p.line, p.message) for p in problems] == [
        (4, "a tab character is not allowed here; indent with spaces")
    ]


def test_malformed_block_scalar_is_a_problem_at_its_line() -> None:
    """A block scalar line indented less than its first line is reported there."""
    _, problems = read_yaml(FIXTURES / "broken" / "bad-block.yaml")
    assert len(problems) == 1
    assert problems[0].line == 5
    assert "block scalar" in problems[0].message


def test_crlf_file_reads_like_lf() -> None:
    """A CRLF file gives the same lines and text without carriage returns."""
    path = FIXTURES / "hunts" / "Windows Line Endings.yaml"
    assert b"\r\n" in path.read_bytes()
    document, problems = read_yaml(path)
    assert problems == []
    assert document is not None
    assert "\r" not in document.data["query"]
    assert document.keys[("schedule", "cron")] == 7


def test_bom_is_stripped_and_non_ascii_kept() -> None:
    """A UTF-8 BOM does not become part of the first key; umlauts survive."""
    path = FIXTURES / "hunts" / "bom.yaml"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    document, problems = read_yaml(path)
    assert problems == []
    assert document is not None
    assert document.data["id"] == "signer-umlaut"
    assert document.data["name"] == "Signiert von Müller GmbH – ÄÖÜ ß"


def test_files_are_read_as_utf8_under_an_ascii_locale() -> None:
    """Under LC_ALL=C without UTF-8 mode the file is still read as UTF-8."""
    script = (
        "import locale, sys\n"
        "from runner.yamlio import read_yaml\n"
        "document, problems = read_yaml(sys.argv[1])\n"
        "print(locale.getpreferredencoding(False))\n"
        "print(ascii(document.data['description']), problems)\n"
    )
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    env.pop("PYTHONIOENCODING", None)
    result = subprocess.run(
        [sys.executable, "-c", script, str(FIXTURES / "hunts" / "bom.yaml")],
        env=env,
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    encoding, shown = result.stdout.splitlines()
    assert "utf" not in encoding.lower()
    assert shown == ascii("Zeichen außerhalb von ASCII, auch 日本語.") + " []"


def test_invalid_utf8_is_a_problem_at_its_line() -> None:
    """Latin-1 bytes are refused with the line they are on, not guessed."""
    _, problems = read_yaml(FIXTURES / "broken" / "latin1.yaml")
    assert [(p.line, p.message) for p in problems] == [
        (2, "not valid UTF-8 (byte 0xe9); save the file as UTF-8")
    ]


def test_aliases_second_documents_and_control_characters_are_problems() -> None:
    """Aliases, a second document and control characters each give one problem."""
    cases = {
        "a: &x 1\nb: *x\n": (2, "anchors and aliases are not supported"),
        "a: 1\n---\nb: 2\n": (2, "a file holds one YAML document; found a second"),
        "a: 1\nb: \x07\n": (2, "character U+0007 is not allowed in a YAML file"),
    }
    for text, expected in cases.items():
        document, problems = read_yaml_text(text, "t.yaml")
        assert document is None
        assert [(p.line, p.message) for p in problems] == [expected]


def test_tags_the_text_does_not_fit_and_deep_nesting_are_problems() -> None:
    """An explicit tag that misfits its text, or absurd nesting, is one problem."""
    cases = {
        "a: 1\nb: !!int abc\n": (2, "b: 'abc' cannot be read as !!int"),
        "a: 1\nb: !!float zz\n": (2, "b: 'zz' cannot be read as !!float"),
        "a: 1\nb: !!bool maybe\n": (2, "b: 'maybe' cannot be read as !!bool"),
        "a: 1\nb: !!timestamp no\n": (2, "b: 'no' cannot be read as !!timestamp"),
        "a: 1\nb: " + "[" * 5000 + "]" * 5000 + "\n": (
            2,
            "nested too deeply to be read",
        ),
    }
    for text, expected in cases.items():
        document, problems = read_yaml_text(text, "t.yaml")
        assert document is None
        assert [(p.line, p.message) for p in problems] == [expected]


def test_missing_file_is_a_problem() -> None:
    """A file that does not exist is one problem naming it as given."""
    assert read_yaml("no/such.yaml") == (
        None,
        [Problem("no/such.yaml", 0, "no such file")],
    )


@needs_corpus
def test_every_corpus_file_loads_except_two_broken_ones() -> None:
    """All 90 Sentinel files parse, except two whose YAML is malformed upstream."""
    files = sorted(
        path
        for folder in ("sentinel-xdr-hunting", "sentinel-xdr-analytic-rules")
        for path in (CORPUS / folder).rglob("*")
        if path.suffix.lower() in (".yaml", ".yml")
    )
    assert len(files) == 90
    failures = {}
    for path in files:
        document, problems = read_yaml(path)
        if problems:
            failures[path.relative_to(CORPUS).as_posix()] = problems[0].line
        else:
            assert isinstance(document.data, dict), path
    assert failures == BROKEN_CORPUS_FILES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("14d", timedelta(days=14)),
        ("PT15M", timedelta(minutes=15)),
        ("P1D", timedelta(days=1)),
        ("PT1H", timedelta(hours=1)),
        ("0.5s", timedelta(milliseconds=500)),
    ],
)
def test_durations_in_short_and_iso_forms(text: str, expected: timedelta) -> None:
    """Short (1h30m) and ISO 8601 (PT15M) durations give the same timedelta."""
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (15, "15 has no unit; write 15s, 15m, 15h or 15d"),
        ("15", "'15' is not a duration; write e.g. 30s, 15m, 1h30m, 2d or PT15M"),
        ("10:30", "'10:30' is not a duration; write e.g. 30s, 15m, 1h30m, 2d or PT15M"),
        ("P1M", "'P1M' uses months or years; write days instead (P30D)"),
        (True, "True is not a duration; write e.g. 15m, 1h or PT15M"),
        ("3651d", "'3651d' is longer than 3650d"),
        ("99999999999d", "'99999999999d' is longer than 3650d"),
        ("P99999999999D", "'P99999999999D' is longer than 3650d"),
    ],
)
def test_durations_without_a_unit_are_refused(value: object, message: str) -> None:
    """A bare number, a clock time or a month is refused with what to write."""
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == message
