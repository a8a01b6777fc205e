"""Time a default sandbox load: seven days of telemetry into a fresh DuckDB.

Prints one JSON line, ``{"rows": ..., "seconds": ...}``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import duckdb_kql

from runner.sandbox.telemetry import TelemetryGenerator


def main() -> None:
    end = datetime.now(UTC)
    con = duckdb_kql.connect()
    generator = TelemetryGenerator()
    generator.create_tables(con)

    started = time.perf_counter()
    rows = generator.fill(con, end - timedelta(days=7), end)
    seconds = time.perf_counter() - started

    print(json.dumps({"rows": rows, "seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
