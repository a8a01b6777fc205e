"""Suite-wide set-up: this folder on ``sys.path`` for the shared test helpers,
and a temporary folder of the run's own for everything the code under test
and its child processes put in the system's temporary folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _temporary_folder_of_the_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    # A sandbox keeps its CA and key in a temporary folder; a daemon a test
    # kills with SIGKILL cannot remove it, so it goes where pytest cleans up.
    folder = tmp_path_factory.mktemp("tmp")
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None
    yield
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before
    tempfile.tempdir = None
