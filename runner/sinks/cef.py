"""ArcSight Common Event Format (CEF) for records, with the format's escaping.

``CEF:0|hunt-runner|hunt-runner|<version>|<hunt id>|<hunt name>|<severity>|<ext>``:
header fields escape ``\\`` and ``|``; extension values escape ``\\`` and ``=``
and write line breaks as ``\\n`` / ``\\r``. The whole row travels as JSON in
``msg``; a few common Defender columns are also mapped to their CEF keys so
that SIEM parsers pick them up without custom rules.
"""

from __future__ import annotations

from typing import Any

from runner import __version__
from runner.records import Record, json_text, utf8_safe

CEF_SEVERITY = {"informational": 1, "low": 3, "medium": 5, "high": 8}

# Defender advanced hunting columns with a standard CEF key.
COLUMN_KEYS = {
    "DeviceName": "dhost",
    "AccountName": "suser",
    "LocalIP": "src",
    "RemoteIP": "dst",
    "RemotePort": "dpt",
    "LocalPort": "spt",
    "FileName": "fname",
    "FolderPath": "filePath",
    "SHA256": "fileHash",
    "RemoteUrl": "request",
}


def escape_header(value: str) -> str:
    """A header field: backslash and pipe escaped, line breaks made spaces."""
    value = utf8_safe(value).replace("\\", "\\\\").replace("|", "\\|")

    return value.replace("\r", " ").replace("\n", " ")


def escape_extension(value: str) -> str:
    """An extension value: backslash and equals escaped, line breaks as \\n."""
    value = utf8_safe(value).replace("\\", "\\\\").replace("=", "\\=")

    return value.replace("\r", "\\r").replace("\n", "\\n")


def format_cef(record: Record) -> str:
    """The record as one CEF line (without syslog header)."""
    severity = CEF_SEVERITY.get(record.severity.lower(), 1)
    header = "|".join(
        [
            "CEF:0",
            "hunt-runner",
            "hunt-runner",
            escape_header(__version__),
            escape_header(record.hunt_id),
            escape_header(record.hunt_name),
            str(severity),
        ]
    )
    extension: list[tuple[str, Any]] = [
        ("rt", int(record.window_end.timestamp() * 1000)),
        ("externalId", record.event_id),
        ("cs1Label", "tenant"),
        ("cs1", record.tenant),
        ("cs2Label", "runId"),
        ("cs2", record.run_id),
        ("cs3Label", "tactics"),
        ("cs3", ",".join(record.tactics)),
        ("cs4Label", "techniques"),
        ("cs4", ",".join(record.techniques)),
    ]
    for column, key in COLUMN_KEYS.items():
        value = record.row.get(column)
        if value not in (None, ""):
            extension.append((key, value))
    row = json_text(dict(record.row))
    # msg goes last so that truncation cuts the row, not the mapped keys.
    extension.append(("msg", row))
    text = " ".join(f"{key}={escape_extension(str(value))}" for key, value in extension)

    return f"{header}|{text}"
