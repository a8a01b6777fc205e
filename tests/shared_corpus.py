"""Where the shared corpus of public hunting queries and table schemas lives.

The corpus sits beside the repository (``../shared/corpus``), MIT licensed and
kept out of the repository on purpose; ``HUNT_RUNNER_CORPUS`` points elsewhere.
Tests that read it are marked ``needs_corpus`` and skip, saying why, in a
checkout that has no corpus beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS = Path(
    os.environ.get(
        "HUNT_RUNNER_CORPUS",
        Path(__file__).resolve().parents[1].parent / "shared" / "corpus",
    )
)

needs_corpus = pytest.mark.skipif(
    not (CORPUS / "sentinel-xdr-hunting").is_dir(),
    reason=f"the shared corpus is not at {CORPUS} (set HUNT_RUNNER_CORPUS)",
)
