"""The command line: exit statuses and what each command prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, main

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "hunt-runner.yaml").write_text(
        f"""
tenants:
  lab: {{cloud: sandbox}}
sinks:
  files: {{type: file, path: {tmp_path / "out"}}}
defaults: {{sinks: [files]}}
state: {{path: {tmp_path / "state.db"}}}
sandbox: {{days: 0.2, live_arrival: false}}
""",
        encoding="utf-8",
    )
    return config


def test_validate_shipped_files_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped configuration and hunts validate without a problem."""
    status = main(["validate", str(REPO / "jobs"), "--config", str(REPO / "config")])
    assert status == EXIT_OK, capsys.readouterr().err


def test_validate_reports_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken hunt is reported as file:line: message, with exit status 1."""
    flag = tmp_path / "flag.yaml"
    flag.write_text("name: Flag\nenabled: no\nquery: DeviceInfo\n")
    kql = tmp_path / "kql.yaml"
    kql.write_text("name: Kql\nquery: |\n  DeviceInfo\n  | wherex\n")
    assert main(["validate", str(flag), str(kql)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{flag}:2: enabled: 'no' is not a boolean" in err
    assert f"{kql}:4: " in err


def test_run_once_exits_2_on_a_broken_hunt_but_runs_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """run --once runs the hunts that load and exits 2 for the one that does not."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "good.yaml").write_text("name: Good\nquery: DeviceInfo | take 2\n")
    (jobs / "bad.yaml").write_text("name: Bad\nschedule: {every: 10}\nquery: x\n")
    status = main(
        ["run", "--once", "--config", str(_config(tmp_path)), "--jobs", str(jobs)]
    )
    assert status == EXIT_CONFIG
    assert (tmp_path / "out" / "good.jsonl").read_text().count("\n") == 2
    assert "bad.yaml:2" in capsys.readouterr().err


def test_run_once_leaves_out_hunts_naming_unknown_tenants_or_sinks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hunt naming an unknown tenant or sink is a problem at its line; others run."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "good.yaml").write_text("name: Good\nquery: DeviceInfo | take 2\n")
    (jobs / "tenant.yaml").write_text("tenants: [nope]\nquery: DeviceInfo | take 1\n")
    (jobs / "sink.yaml").write_text("sinks: [nope]\nquery: DeviceInfo | take 1\n")
    status = main(
        ["run", "--once", "--config", str(_config(tmp_path)), "--jobs", str(jobs)]
    )
    err = capsys.readouterr().err
    assert status == EXIT_CONFIG
    assert f"{jobs / 'tenant.yaml'}:1: tenants: no tenant named 'nope'" in err
    assert f"{jobs / 'sink.yaml'}:1: sinks: no sink named 'nope'" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.jsonl"]


def test_query_prints_json_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """query --json prints one JSON object per row."""
    status = main(
        [
            "query",
            "--config",
            str(_config(tmp_path)),
            "--json",
            "DeviceInfo | take 2 | project DeviceName",
        ]
    )
    assert status == EXIT_OK
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and set(rows[0]) == {"DeviceName"}


def test_config_error_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown sink type stops the run with exit status 2 and names file:line."""
    config = _config(tmp_path)
    path = config / "hunt-runner.yaml"
    path.write_text(path.read_text().replace("type: file", "type: carrier-pigeon"))
    status = main(["run", "--once", "--config", str(config)])
    assert status == EXIT_CONFIG
    assert "hunt-runner.yaml:" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["list", "status", "health"])
def test_a_corrupt_state_file_is_an_error_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A state file that is not a database gives one error naming it, status 1."""
    config = _config(tmp_path)
    (tmp_path / "state.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    (tmp_path / "jobs").mkdir()
    args = [command, "--config", str(config)]
    if command == "list":
        args += ["--jobs", str(tmp_path / "jobs")]
    assert main(args) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"error: cannot open state file {tmp_path / 'state.db'}" in err


def test_a_state_folder_that_cannot_be_made_is_an_error_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state path under a regular file fails run --once with a message, status 1."""
    config = _config(tmp_path)
    text = (config / "hunt-runner.yaml").read_text(encoding="utf-8")
    (tmp_path / "afile").write_text("")
    state = tmp_path / "afile" / "state.db"
    (config / "hunt-runner.yaml").write_text(
        text.replace(str(tmp_path / "state.db"), str(state)), encoding="utf-8"
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "good.yaml").write_text("query: DeviceInfo | take 1\n")
    status = main(["run", "--once", "--config", str(config), "--jobs", str(jobs)])
    assert status == EXIT_FAILED
    assert f"cannot open state file {state}" in capsys.readouterr().err


def test_query_with_a_bad_lookback_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """query --lookback 15 is refused by argument parsing with what to write."""
    with pytest.raises(SystemExit) as caught:
        main(["query", "--config", str(_config(tmp_path)), "--lookback", "15", "T"])
    assert caught.value.code == 2
    assert "'15' is not a duration" in capsys.readouterr().err


def test_validate_a_hunt_file_checks_its_names_against_the_default_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate FILE still reads config/, so a misspelled sink name is a problem."""
    monkeypatch.chdir(REPO)
    hunt = tmp_path / "typo.yaml"
    hunt.write_text("name: Typo\nsinks: [file]\nquery: DeviceInfo\n")

    assert main(["validate", str(hunt)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{hunt}:2: " in err and "'file'" in err


def test_folders_default_to_the_environment(tmp_path: Path) -> None:
    """HUNT_RUNNER_CONFIG and HUNT_RUNNER_JOBS replace the default folders."""
    config = _config(tmp_path)
    jobs = tmp_path / "hunts"
    jobs.mkdir()
    (jobs / "broken.yaml").write_text("name: Broken\nenabled: no\nquery: DeviceInfo\n")
    environment = dict(
        os.environ, HUNT_RUNNER_CONFIG=str(config), HUNT_RUNNER_JOBS=str(jobs)
    )

    finished = subprocess.run(
        [sys.executable, "-m", "runner.cli", "validate"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert finished.returncode == EXIT_FAILED
    assert f"{jobs / 'broken.yaml'}:2: enabled" in finished.stderr


def test_commands_that_call_no_api_need_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """list, status, health and validate work with a secret unset; run does not."""
    monkeypatch.delenv("CONTOSO_SECRET", raising=False)
    config = _config(tmp_path)
    path = config / "hunt-runner.yaml"
    path.write_text(
        path.read_text().replace(
            "tenants:\n",
            "tenants:\n  contoso:\n    tenant_id: contoso.onmicrosoft.com\n"
            "    client_id: 00000000-0000-0000-0000-000000000001\n"
            "    secret_env: CONTOSO_SECRET\n",
        )
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "one.yaml").write_text("name: One\ntenants: [lab]\nquery: DeviceInfo\n")
    folders = ["--config", str(config)]

    assert main(["list", *folders, "--jobs", str(jobs)]) == EXIT_OK
    assert main(["status", *folders]) == EXIT_OK
    assert main(["health", *folders]) == EXIT_FAILED  # no daemon, and never 2
    assert main(["validate", str(jobs), *folders]) == EXIT_OK
    assert "warning: tenants.contoso.secret_env: environment variable " in (
        capsys.readouterr().err
    )
    assert main(["run", "--once", *folders, "--jobs", str(jobs)]) == EXIT_CONFIG
    assert "CONTOSO_SECRET is not set" in capsys.readouterr().err


def test_validate_a_new_file_finds_an_id_the_jobs_folder_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copied example that keeps a shipped hunt's id is a problem before it runs."""
    monkeypatch.chdir(REPO)
    copy = tmp_path / "my-hunt.yaml"
    copy.write_text(
        "id: powershell-from-appdata\nname: Mine\nquery: DeviceInfo\n",
        encoding="utf-8",
    )

    assert main(["validate", str(copy)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{copy}:1: id 'powershell-from-appdata' is already used by jobs/" in err
