"""How many of the corpus hunts parse and run in the sandbox engine, and why not.

Loads every hunt in ``../shared/corpus/sentinel-xdr-hunting`` (its ``query``
key), syntax-checks it with duckdb-kql, runs it against the sandbox engine
over default telemetry (no HTTP), and prints one JSON document: counts, and
failures grouped by kind (unsupported KQL, missing table, missing column,
invalid YAML in the corpus itself, other) with the names and examples behind
each.

    .venv/bin/python benchmarks/corpus_report.py [CORPUS_DIR]
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import duckdb_kql
import yaml

from runner.logs import configure
from runner.sandbox.engine import Engine, QueryFailed
from runner.sandbox.settings import SandboxClock, SandboxSettings

DEFAULT_CORPUS = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "corpus"
    / "sentinel-xdr-hunting"
)
KINDS = {
    "syntax": "unsupported_kql",
    "unsupported": "unsupported_kql",
    "missing_table": "missing_table",
    "missing_column": "missing_column",
}
EXAMPLES_PER_KIND = 30
_CONSTRUCT = re.compile(r"unsupported KQL construct '([^']+)'")


def hunt_files(corpus: Path) -> list[Path]:
    """Every YAML hunt under *corpus*, in a stable order."""
    return sorted(
        path
        for path in corpus.rglob("*")
        if path.is_file() and path.suffix.lower() in (".yaml", ".yml")
    )


def report(corpus: Path) -> dict[str, Any]:
    """The parse and execution figures for the hunts under *corpus*."""
    settings = SandboxSettings()
    engine = Engine(settings, SandboxClock())
    started = time.perf_counter()
    engine.load()
    load_seconds = time.perf_counter() - started

    files = hunt_files(corpus)
    parsed = executed = 0
    with_rows = 0
    failures: dict[str, list[dict[str, str]]] = defaultdict(list)
    names: dict[str, Counter[str]] = defaultdict(Counter)
    for path in files:
        name = str(path.relative_to(corpus))
        try:
            hunt = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            message = f"the file is not valid YAML: {error}".replace("\n", " ")
            failures["invalid_yaml"].append({"hunt": name, "message": message[:300]})
            continue
        query = hunt.get("query") if isinstance(hunt, dict) else None
        if not isinstance(query, str):
            failures["other"].append({"hunt": name, "message": "no query key"})
            continue
        if not duckdb_kql.validate(query):
            parsed += 1
        try:
            result = engine.run(query, timeout=120.0)
        except QueryFailed as failure:
            kind = KINDS.get(failure.kind, "other")
            failures[kind].append({"hunt": name, "message": failure.message[:300]})
            construct = _CONSTRUCT.search(failure.message)
            if failure.name or construct:
                names[kind][failure.name or construct.group(1)] += 1
            continue
        executed += 1
        with_rows += bool(result.rows)
    engine.close()

    total = len(files)
    return {
        "hunts": total,
        "parsed": parsed,
        "executed": executed,
        "executed_pct": round(100.0 * executed / total, 1) if total else 0.0,
        "executed_with_rows": with_rows,
        "telemetry_rows": engine.rows_loaded,
        "telemetry_load_s": round(load_seconds, 2),
        "failures": {
            kind: {
                "count": len(items),
                "names": dict(names[kind].most_common()),
                "examples": items[:EXAMPLES_PER_KIND],
            }
            for kind, items in sorted(failures.items())
        },
    }


def main() -> int:
    # Keep stdout for the JSON document alone.
    configure("warning", stream=sys.stderr)
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CORPUS
    if not hunt_files(corpus):
        print(f"no hunt files under {corpus.resolve()}", file=sys.stderr)
        return 1
    print(json.dumps(report(corpus.resolve()), indent=2, ensure_ascii=False))

    return 0


if __name__ == "__main__":
    sys.exit(main())
