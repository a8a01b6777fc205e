"""Reference tables: rows that describe the world rather than events in it.

DeviceTvmSoftwareVulnerabilitiesKB is Defender's catalogue of the
vulnerabilities it assesses devices for. It has no time column, so its rows
belong to no hour bucket: they are loaded once, when the tables are created,
and every query sees all of them.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]

# Every CVE the generated software inventory carries is here, plus a few the
# estate is not exposed to, so a join against the inventory filters something.
VULNERABILITY_CATALOGUE: list[Row] = [
    {
        "CveId": cve,
        "CvssScore": score,
        "IsExploitAvailable": exploited,
        "VulnerabilitySeverityLevel": severity,
        "PublishedDate": f"{published} 00:00:00",
        "LastModifiedTime": f"{modified} 00:00:00",
        "VulnerabilityDescription": description,
        "AffectedSoftware": software,
    }
    for (
        cve,
        score,
        exploited,
        severity,
        published,
        modified,
        description,
        software,
    ) in [
        (
            "CVE-2024-43491",
            "9.8",
            True,
            "Critical",
            "2024-09-10",
            "2024-10-08",
            "The servicing stack rolled back fixes for some optional components, "
            "leaving earlier remote code execution flaws exploitable again.",
            ["microsoft-_-windows_10", "microsoft-_-windows_11"],
        ),
        (
            "CVE-2024-10487",
            "8.8",
            False,
            "High",
            "2024-10-29",
            "2024-11-05",
            "An out-of-bounds write in the browser's graphics component lets a "
            "crafted page corrupt memory.",
            ["google-_-chrome"],
        ),
        (
            "CVE-2021-44228",
            "10.0",
            True,
            "Critical",
            "2021-12-10",
            "2023-04-03",
            "Message lookup substitution in the logging library lets an attacker "
            "who controls a logged string load and run remote code.",
            ["apache-_-log4j"],
        ),
        (
            "CVE-2021-34473",
            "9.8",
            True,
            "Critical",
            "2021-07-14",
            "2022-11-10",
            "A path confusion in the mail server's web front end lets an "
            "unauthenticated attacker run code (one of the ProxyShell chain).",
            ["microsoft-_-exchange_server"],
        ),
        (
            "CVE-2024-11477",
            "7.8",
            False,
            "High",
            "2024-11-22",
            "2024-12-02",
            "An integer underflow while decompressing Zstandard data lets a "
            "crafted archive run code as the user who opens it.",
            ["7-zip-_-7-zip"],
        ),
        (
            "CVE-2021-34527",
            "8.8",
            True,
            "High",
            "2021-07-02",
            "2023-08-02",
            "The print spooler performs privileged file operations on request, "
            "letting an authenticated user run code as SYSTEM (PrintNightmare).",
            ["microsoft-_-windows_10", "microsoft-_-windows_server_2019"],
        ),
        (
            "CVE-2020-1472",
            "10.0",
            True,
            "Critical",
            "2020-08-17",
            "2023-03-01",
            "A cryptographic flaw in the Netlogon protocol lets an attacker on "
            "the network reset a domain controller's machine password.",
            ["microsoft-_-windows_server_2016", "microsoft-_-windows_server_2019"],
        ),
        (
            "CVE-2017-11882",
            "7.8",
            True,
            "High",
            "2017-11-15",
            "2022-04-25",
            "The legacy equation editor mishandles objects in memory, letting a "
            "crafted document run code when opened.",
            ["microsoft-_-office"],
        ),
    ]
]

REFERENCE_ROWS: dict[str, list[Row]] = {
    "DeviceTvmSoftwareVulnerabilitiesKB": VULNERABILITY_CATALOGUE,
}


def severity(cve: str) -> str:
    """The catalogue's severity level for ``cve``, so inventory rows agree."""
    for row in VULNERABILITY_CATALOGUE:
        if row["CveId"] == cve:
            return str(row["VulnerabilitySeverityLevel"])

    raise KeyError(cve)
