"""Loading hunts from our YAML format and from Sentinel's, with every problem."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from shared_corpus import CORPUS, needs_corpus

from runner.errors import Problem
from runner.hunts import (
    Hunt,
    HuntDefaults,
    Schedule,
    Threshold,
    find_hunt_files,
    load_hunts,
)

FIXTURES = Path(__file__).parent / "fixtures" / "yaml"
HUNTING = CORPUS / "sentinel-xdr-hunting"
RULES = CORPUS / "sentinel-xdr-analytic-rules"
DEFAULTS = HuntDefaults(
    schedule=Schedule(
        every=timedelta(minutes=20), cron=None, jitter=timedelta(seconds=5)
    ),
    lookback=timedelta(hours=2),
    delay=timedelta(minutes=7),
    severity="low",
    sinks=("files",),
    priority=4,
    timeout=timedelta(minutes=2),
)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def one(path: Path | str, defaults: HuntDefaults = DEFAULTS) -> Hunt:
    hunts, problems = load_hunts([path], defaults)
    assert problems == []
    assert len(hunts) == 1
    return hunts[0]


def problems_of(tmp_path: Path, text: str, name: str = "hunt.yaml") -> list[str]:
    path = write(tmp_path, name, text)
    hunts, problems = load_hunts([path], DEFAULTS)
    assert hunts == []
    return [f"{problem.line}: {problem.message}" for problem in problems]


def test_every_field_of_our_format_is_read() -> None:
    """Each field of our format lands on the Hunt with its type."""
    path = FIXTURES / "hunts" / "full.yaml"
    hunt = one(path)
    assert hunt == Hunt(
        id="unsigned-drivers",
        name="Unsigned drivers loaded",
        description="Drivers without a valid signature.",
        query=(
            "DeviceImageLoadEvents\n"
            "| where Timestamp between (HuntStart .. HuntEnd)\n"
            '| where FileName endswith ".sys"\n'
        ),
        schedule=Schedule(
            every=timedelta(minutes=30), cron=None, jitter=timedelta(seconds=45)
        ),
        lookback=timedelta(hours=1, minutes=30),
        delay=timedelta(minutes=10),
        tenants=("contoso", "fabrikam"),
        sinks=("files",),
        severity="high",
        tags=("drivers", "persistence"),
        tactics=("Persistence",),
        techniques=("T1543.003",),
        enabled=True,
        priority=8,
        threshold=Threshold("gt", 5),
        timeout=timedelta(minutes=3),
        source=str(path),
        line=5,
        kind="hunt-runner",
    )


def test_left_out_fields_take_the_defaults_and_the_id_the_file_stem() -> None:
    """A hunt with only a query gets the defaults; its id is the stem, spaces dashed."""
    hunt = one(FIXTURES / "hunts" / "Windows Line Endings.yaml")
    assert hunt.id == "Windows-Line-Endings"
    assert hunt.name == "Written on Windows"
    assert hunt.schedule == Schedule(
        every=None, cron="0 */2 * * *", jitter=timedelta(seconds=5)
    )
    assert (hunt.lookback, hunt.delay, hunt.severity) == (
        DEFAULTS.lookback,
        DEFAULTS.delay,
        "low",
    )
    assert (hunt.sinks, hunt.priority, hunt.timeout) == (
        ("files",),
        4,
        DEFAULTS.timeout,
    )
    assert (hunt.tenants, hunt.enabled, hunt.threshold) == ((), True, None)
    assert "\r" not in hunt.query


def test_folders_are_searched_recursively_in_a_stable_order() -> None:
    """Folders give .yaml/.yml/.YAML files at any depth, sorted, hidden ones skipped."""
    folder = FIXTURES / "hunts"
    files, problems = find_hunt_files([folder])
    assert problems == []
    assert [path.relative_to(folder).as_posix() for path, _ in files] == [
        "Windows Line Endings.yaml",
        "bom.yaml",
        "full.yaml",
        "nested/Upper.YAML",
        "nested/deeper/short.yml",
    ]
    hunts, problems = load_hunts([folder, folder / "full.yaml"], DEFAULTS)
    assert problems == []
    assert [hunt.id for hunt in hunts] == [
        "Windows-Line-Endings",
        "signer-umlaut",
        "unsigned-drivers",
        "upper-case-extension",
        "short-extension",
    ]
    assert hunts[-1].enabled is False


def test_source_is_the_path_as_given() -> None:
    """A relative folder gives relative sources in hunts and problems."""
    relative = Path("tests/fixtures/yaml/broken")
    cwd_root = Path(__file__).parents[1]
    if Path.cwd().resolve() != cwd_root.resolve():
        pytest.skip("needs the repository as working directory")
    _, problems = load_hunts([relative], DEFAULTS)
    assert {problem.path for problem in problems} == {
        "tests/fixtures/yaml/broken/bad-block.yaml",
        "tests/fixtures/yaml/broken/latin1.yaml",
        "tests/fixtures/yaml/broken/tabs.yaml",
    }


def test_non_ascii_survives_with_a_bom() -> None:
    """Umlauts and CJK text in a BOM-prefixed file reach the hunt unchanged."""
    hunt = one(FIXTURES / "hunts" / "bom.yaml")
    assert hunt.name == "Signiert von Müller GmbH – ÄÖÜ ß"
    assert 'Signer == "Müller GmbH"' in hunt.query


def test_a_broken_file_does_not_stop_the_others(tmp_path: Path) -> None:
    """Problems in some files leave the hunts of the other files loaded."""
    hunts, problems = load_hunts(
        [FIXTURES / "broken", FIXTURES / "hunts" / "full.yaml"], DEFAULTS
    )
    assert [hunt.id for hunt in hunts] == ["unsigned-drivers"]
    assert [(Path(p.path).name, p.line) for p in problems] == [
        ("bad-block.yaml", 5),
        ("latin1.yaml", 2),
        ("tabs.yaml", 4),
    ]


@pytest.mark.parametrize("word", ["no", "on", "yes", "off", "No"])
def test_yaml11_words_where_a_boolean_is_expected(tmp_path: Path, word: str) -> None:
    """enabled: no is refused with a message saying to write true or false."""
    assert problems_of(tmp_path, f"query: T\nenabled: {word}\n") == [
        f"2: enabled: '{word}' is not a boolean; write true or false"
    ]


@pytest.mark.parametrize("word", ["on", "yes", "no"])
def test_yaml11_words_where_a_schedule_is_expected(tmp_path: Path, word: str) -> None:
    """schedule: on is refused, never read as a boolean or a default."""
    assert problems_of(tmp_path, f"query: T\nschedule: {word}\n") == [
        f"2: schedule: '{word}' is not a schedule; write every: 15m or "
        'cron: "*/15 * * * *"'
    ]


def test_clock_times_are_not_durations(tmp_path: Path) -> None:
    """lookback: 10:30 is refused, not read as 630 seconds."""
    assert problems_of(tmp_path, "query: T\nlookback: 10:30\n") == [
        "2: lookback: '10:30' is not a duration; write e.g. 30s, 15m, 1h30m, 2d "
        "or PT15M"
    ]


def test_a_bare_number_duration_is_refused(tmp_path: Path) -> None:
    """every: 15 is refused with a suggestion of units."""
    assert problems_of(tmp_path, "query: T\nschedule:\n  every: 15\n") == [
        "3: schedule.every: 15 has no unit; write 15s, 15m, 15h or 15d"
    ]


def test_unknown_keys_list_the_known_ones(tmp_path: Path) -> None:
    """A misspelt key is one problem at its line that lists the known keys."""
    found = problems_of(tmp_path, "query: T\nseverty: high\n")
    assert len(found) == 1
    assert found[0].startswith("2: severty: unknown key; known keys are delay, ")
    assert "severity" in found[0]


def test_wrong_types_are_one_problem_each(tmp_path: Path) -> None:
    """Each field of the wrong type or range is reported at its own line."""
    text = (
        "query: T\n"
        "priority: high\n"
        "tags: drivers\n"
        "severity: critical\n"
        "tenants: [contoso, 5]\n"
        "threshold: {operator: about, value: 1}\n"
        "timeout: 0s\n"
    )
    assert problems_of(tmp_path, text) == [
        "2: priority: expected a whole number, found the text 'high'",
        "3: tags: expected a list, found the text 'drivers'",
        "4: severity: 'critical' is not one of informational, low, medium, high",
        "5: tenants[1]: expected text, found the number 5",
        "6: threshold.operator: 'about' is not an operator; use one of gt, ge, lt, "
        "le, eq, ne",
        "7: timeout: must be longer than 0s",
    ]


def test_priority_range_and_query_presence(tmp_path: Path) -> None:
    """priority is 0..10 and a hunt needs a query."""
    assert problems_of(tmp_path, "name: x\npriority: 11\n") == [
        "1: query is missing",
        "2: priority: 11 is out of range 0..10",
    ]


def test_schedule_forms(tmp_path: Path) -> None:
    """A schedule takes every or a valid 5-field cron, not both."""
    cases = {
        "schedule:\n  cron: '*/15  * * * *'\n": Schedule(
            None, "*/15 * * * *", timedelta(seconds=5)
        ),
        "schedule:\n  jitter: 1m\n": Schedule(
            timedelta(minutes=20), None, timedelta(minutes=1)
        ),
    }
    for text, expected in cases.items():
        path = write(tmp_path, "ok.yaml", "query: T\n" + text)
        assert one(path).schedule == expected
    assert problems_of(tmp_path, "query: T\nschedule:\n  cron: '61 * * * *'\n")[
        0
    ].startswith("3: schedule.cron: '61 * * * *' is not a 5-field crontab")
    assert problems_of(
        tmp_path, "query: T\nschedule: {every: 5m, cron: '* * * * *'}\n"
    ) == ["2: schedule: give either every or cron, not both"]


@pytest.mark.parametrize(
    ("written", "expected", "passing", "failing"),
    [
        ('"> 5"', Threshold("gt", 5), 6, 5),
        ('">= 5"', Threshold("ge", 5), 5, 4),
        ('"== 0"', Threshold("eq", 0), 0, 1),
        ('"!= 0"', Threshold("ne", 0), 3, 0),
        ("{operator: lt, value: 3}", Threshold("lt", 3), 2, 3),
        ("{operator: LessThan, value: 3}", Threshold("lt", 3), 2, 3),
        ("{operator: '<=', value: 3}", Threshold("le", 3), 3, 4),
    ],
)
def test_thresholds(
    tmp_path: Path, written: str, expected: Threshold, passing: int, failing: int
) -> None:
    """Thresholds in text or mapping form compare row counts as written."""
    hunt = one(write(tmp_path, "t.yaml", f"query: T\nthreshold: {written}\n"))
    assert hunt.threshold == expected
    assert hunt.threshold.holds(passing)
    assert not hunt.threshold.holds(failing)


def test_duplicate_id_is_a_problem_on_the_later_file(tmp_path: Path) -> None:
    """The second file using an id is refused with a problem naming the first."""
    first = write(tmp_path, "a.yaml", "id: same\nquery: T\n")
    second = write(tmp_path, "b.yaml", "query: T\nid: same\n")
    hunts, problems = load_hunts([tmp_path], DEFAULTS)
    assert [hunt.source for hunt in hunts] == [str(first)]
    assert problems == [
        Problem(str(second), 2, f"id 'same' is already used by {first}")
    ]


def test_missing_path_and_empty_file_are_problems(tmp_path: Path) -> None:
    """A path that does not exist and an empty file each give one problem."""
    empty = write(tmp_path, "empty.yaml", "# nothing here\n")
    hunts, problems = load_hunts([tmp_path / "gone", empty], DEFAULTS)
    assert hunts == []
    assert problems == [
        Problem(str(tmp_path / "gone"), 0, "no such file or folder"),
        Problem(str(empty), 0, "the file is empty"),
    ]


@needs_corpus
def test_sentinel_scheduled_rule_maps_frequency_period_and_trigger() -> None:
    """queryFrequency/queryPeriod/trigger become schedule, lookback, threshold."""
    hunt = one(RULES / "AVSpringShell.yaml")
    assert hunt.kind == "sentinel-scheduled"
    assert hunt.id == "3bd33158-3f0b-47e3-a50f-7c20a1b88038"
    assert hunt.name == "AV detections related to SpringShell Vulnerability"
    assert hunt.schedule == Schedule(
        every=timedelta(days=1), cron=None, jitter=timedelta(seconds=5)
    )
    assert hunt.lookback == timedelta(days=1)
    assert hunt.threshold == Threshold("gt", 0)
    assert hunt.severity == "high"
    assert hunt.tactics == ("InitialAccess",)
    assert hunt.techniques == ("T1190",)
    assert hunt.tags == ("CVE-2022-22965", "SpringShell", "Spring4Shell")
    assert hunt.line == 25
    assert hunt.query.startswith("let SpringShell_threats = dynamic(")


@needs_corpus
def test_sentinel_tags_that_are_mappings_are_left_out() -> None:
    """ASIM schema mappings among a rule's tags are not taken as tags."""
    hunt = one(RULES / "Campaign" / "Macaw Ransomware" / "ImminentRansomware.yaml")
    assert hunt.tags == ("Ransomware Campaign", "Macaw Ransomware")


@needs_corpus
def test_sentinel_hunting_query_gets_the_default_schedule() -> None:
    """A hunting query without a frequency runs on the configured defaults."""
    hunt = one(HUNTING / "Campaigns" / "Bazacall" / "PayloadDropUsingCertUtil.yaml")
    assert hunt.kind == "sentinel-hunting"
    assert hunt.id == "4d11f63f-5b64-416e-8d77-266e4c6d382e"
    assert hunt.schedule == DEFAULTS.schedule
    assert hunt.lookback == DEFAULTS.lookback
    assert hunt.severity == "low"
    assert hunt.threshold is None
    assert hunt.tactics == ("InitialAccess", "DefenseEvasion")


@needs_corpus
def test_sentinel_single_word_tactics_are_accepted() -> None:
    """A published file giving tactics as one word (not a list) still loads."""
    hunt = one(HUNTING / "Persistence" / "ScheduledTaskCreation.yaml")
    assert hunt.tactics == ("Persistence",)


@needs_corpus
def test_all_corpus_files_load_but_two_with_broken_yaml() -> None:
    """88 of the 90 Sentinel files load; two have malformed YAML upstream."""
    hunts, problems = load_hunts([HUNTING, RULES], DEFAULTS)
    assert len(hunts) == 88
    assert sum(hunt.kind == "sentinel-scheduled" for hunt in hunts) == 10
    assert all(hunt.kind == "sentinel-hunting" for hunt in hunts[:78])
    assert [(Path(p.path).name, p.line) for p in problems] == [
        ("MDO_URLClickedinEmail.YAML", 8),
        ("Spam Detection IP and Geo Position.yaml", 20),
    ]


@needs_corpus
def test_our_keys_extend_a_sentinel_file_but_may_not_contradict_it(
    tmp_path: Path,
) -> None:
    """Our keys may be added to a Sentinel rule; a second schedule is refused."""
    rule = (RULES / "SUNSPOTHashes.yaml").read_text(encoding="utf-8")
    extended = write(
        tmp_path, "ext.yaml", rule + "\ntenants: [contoso]\nenabled: false\n"
    )
    hunt = one(extended)
    assert (hunt.tenants, hunt.enabled, hunt.kind) == (
        ("contoso",),
        False,
        "sentinel-scheduled",
    )
    found = problems_of(tmp_path, rule + "\nschedule: {every: 1h}\n", "both.yaml")
    assert [line.split(": ", 1)[1] for line in found] == [
        "schedule: give either schedule or queryFrequency, not both"
    ]


def test_sentinel_unknown_keys_are_ignored_and_other_kinds_refused(
    tmp_path: Path,
) -> None:
    """Sentinel's many other keys are no problem; an NRT rule is one."""
    base = (
        "id: 4d11f63f-5b64-416e-8d77-266e4c6d382e\nname: n\nquery: T\n"
        "requiredDataConnectors: []\nentityMappings: []\ndescritpion: typo\n"
    )
    assert one(write(tmp_path, "ok.yaml", base)).kind == "sentinel-hunting"
    assert problems_of(tmp_path, base + "kind: NRT\n", "nrt.yaml") == [
        "7: kind: 'NRT' rules are not supported; only Scheduled rules and hunting "
        "queries"
    ]


def test_cron_day_of_week_accepts_seven_and_refuses_nonsense(tmp_path: Path) -> None:
    """7 is Sunday in crontab; a day that is no day is a problem at its line."""
    path = write(tmp_path, "ok.yaml", "query: T\nschedule: {cron: '0 9 * * 5-7'}\n")
    assert one(path).schedule.cron == "0 9 * * 5-7"
    assert problems_of(tmp_path, "query: T\nschedule: {cron: '0 9 * * 8'}\n")[
        0
    ].startswith("2: schedule.cron: '0 9 * * 8' is not a 5-field crontab")


def test_a_lookback_past_any_date_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """A duration too long for a date (lookback: 999999d) is refused at its line."""
    assert problems_of(tmp_path, "query: T\nlookback: 999999d\n") == [
        "2: lookback: '999999d' is longer than 3650d"
    ]


def test_a_cron_that_never_fires_is_a_problem(tmp_path: Path) -> None:
    """A crontab naming a date that does not exist (30 February) is refused."""
    assert problems_of(tmp_path, "query: T\nschedule: {cron: '0 0 30 2 *'}\n") == [
        "2: schedule.cron: '0 0 30 2 *' never fires (no such date)"
    ]


def test_jitter_as_long_as_the_interval_is_a_problem(tmp_path: Path) -> None:
    """A jitter not shorter than the schedule's interval is refused at its line."""
    text = "query: T\nschedule:\n  every: 1m\n  jitter: 1h\n"
    assert problems_of(tmp_path, text) == [
        "4: schedule.jitter: jitter 1h must be shorter than the interval (1m)"
    ]


def test_ids_that_cannot_name_a_file_are_problems(tmp_path: Path) -> None:
    """An id with a control character, or too many bytes for a file name, is refused."""
    assert problems_of(tmp_path, 'query: T\nid: "a\\0b"\n') == [
        "2: id: 'a\\x00b' must be one word without / or \\ or control characters"
    ]
    assert problems_of(tmp_path, 'query: T\nid: "a\\e[31mb"\n')[0].startswith(
        "2: id: 'a\\x1b[31mb' must be one word"
    )
    assert problems_of(tmp_path, "query: T\nid: " + "é" * 101 + "\n") == [
        "2: id: must be at most 200 bytes in UTF-8 (it names files); this one has 202"
    ]
    assert one(write(tmp_path, "ok.yaml", "query: T\nid: " + "é" * 100 + "\n")).id


def test_empty_tenants_or_sinks_lists_are_problems(tmp_path: Path) -> None:
    """tenants: [] would run in every tenant and sinks: [] deliver to the defaults."""
    assert problems_of(tmp_path, "query: T\ntenants: []\nsinks: []\n") == [
        "2: tenants: an empty list is not allowed; leave the key out for every tenant",
        "3: sinks: an empty list is not allowed; leave the key out for the default "
        "sinks",
    ]


def test_a_folder_that_cannot_be_listed_is_a_problem() -> None:
    """A sub-folder of jobs that cannot be read is reported, not silently skipped."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    # Root reads every folder, so as root the loader runs as nobody.
    command = [sys.executable]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop privileges")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        command.append(sys.executable)
    # In /tmp, where the unprivileged user can reach it: the run's own
    # temporary folder sits inside one that only root may enter.
    base = Path(tempfile.mkdtemp(prefix="hunt-runner-perm-", dir="/tmp"))
    try:
        jobs = base / "jobs"
        (jobs / "ok").mkdir(parents=True)
        (jobs / "closed").mkdir()
        (jobs / "ok" / "a.yaml").write_text("query: T\n", encoding="utf-8")
        (jobs / "closed" / "b.yaml").write_text("query: T\n", encoding="utf-8")
        for folder in (base, jobs, jobs / "ok"):
            folder.chmod(0o755)
        (jobs / "ok" / "a.yaml").chmod(0o644)
        (jobs / "closed").chmod(0)
        script = (
            "import sys\n"
            "from runner.hunts import HuntDefaults, load_hunts\n"
            "hunts, problems = load_hunts([sys.argv[1]], HuntDefaults())\n"
            "print([h.id for h in hunts], [str(p) for p in problems])\n"
        )
        shutil.copytree(Path(__file__).parents[1] / "runner", base / "runner")
        for entry in (base / "runner").rglob("*"):
            entry.chmod(0o755 if entry.is_dir() else 0o644)
        done = subprocess.run(
            [*command, "-c", script, str(jobs)],
            cwd=base,
            env={**os.environ, "PYTHONPATH": str(base)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0 and "ModuleNotFoundError" in done.stderr:
            pytest.skip(f"nobody cannot import the dependencies: {done.stderr[-200:]}")
        assert done.stdout.strip() == (
            f"['a'] ['{jobs / 'closed'}:0: cannot read folder: Permission denied']"
        )
    finally:
        (jobs / "closed").chmod(0o755)
        shutil.rmtree(base)


def test_a_broken_symbolic_link_is_a_problem(tmp_path: Path) -> None:
    """A hunt file that is a link to nothing is reported instead of skipped."""
    write(tmp_path, "good.yaml", "query: T\n")
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "moved-away.yaml")
    hunts, problems = load_hunts([tmp_path], DEFAULTS)
    assert [hunt.id for hunt in hunts] == ["good"]
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'gone.yaml'}:0: broken symbolic link; no file behind it"
    ]


def test_a_misspelt_key_of_ours_in_a_sentinel_file_is_a_problem(
    tmp_path: Path,
) -> None:
    """A Sentinel file ignores keys it does not know, but not a near miss of ours."""
    text = (
        "id: 6a1f3c4e-0b1d-4e8f-9a2b-3c4d5e6f7a8b\nname: Rule\nversion: 1.0.0\n"
        "query: DeviceInfo\nenable: false\ntag: [x]\n"
    )

    assert problems_of(tmp_path, text) == [
        "5: enable: unknown key; did you mean enabled?"
    ]


def test_an_interval_under_a_second_is_a_problem(tmp_path: Path) -> None:
    """every: 0.001s would only spin the scheduler; it is refused."""
    text = "name: Fast\nschedule:\n  every: 0.001s\n  jitter: 0s\nquery: DeviceInfo\n"

    assert problems_of(tmp_path, text) == [
        "3: schedule.every: every 0.001s is shorter than 1s"
    ]
