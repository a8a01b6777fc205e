"""Building blocks for planted attack stories: consistent rows in a few lines.

A ``Scene`` is one occurrence of one story: a random source seeded by
(seed, hour, story, occurrence), the estate, and a start time. Its helpers turn
"powershell.exe started rundll32.exe on this device as this user" into a full
row with matching process tree, hashes and account columns.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from .estate import Binary, Device, Estate, User, binary

Row = dict[str, Any]
Emitted = list[tuple[str, Row]]


class Scene:
    """One occurrence of a story, with helpers that keep rows consistent."""

    def __init__(self, estate: Estate, rng: random.Random, start: datetime) -> None:
        self.estate = estate
        self.rng = rng
        self.start = start
        self.rows: Emitted = []

    # Choosing actors --------------------------------------------------------

    def workstation(self) -> Device:
        return self.rng.choice(self.estate.workstations)

    def server(self) -> Device:
        return self.rng.choice(self.estate.servers)

    def person(self) -> User:
        return self.rng.choice(self.estate.people[:-3])

    def system(self) -> User:
        return self.estate.users[0]

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def hexdigits(self, length: int) -> str:
        return f"{self.rng.getrandbits(length * 4):0{length}x}"

    def at(self, seconds: float) -> str:
        moment = self.start + timedelta(seconds=seconds)
        return moment.isoformat(sep=" ", timespec="microseconds")

    def report_id(self) -> int:
        return self.rng.randrange(1, 1_000_000)

    def pid(self) -> int:
        return 4 * self.rng.randrange(100, 16_000)

    # Emitting rows ----------------------------------------------------------

    def emit(self, table: str, row: Row) -> Row:
        self.rows.append((table, row))
        return row

    def initiating(
        self,
        device: Device,
        user: User,
        name: str,
        command_line: str,
        parent: str,
        seconds: float,
    ) -> Row:
        """The InitiatingProcess* and device columns shared by device tables."""
        parent_binary = binary(name)
        return {
            "Timestamp": self.at(seconds),
            "DeviceId": device.device_id,
            "DeviceName": device.name,
            "MachineGroup": device.machine_group,
            "ReportId": self.report_id(),
            "InitiatingProcessFileName": parent_binary.name,
            "InitiatingProcessFolderPath": parent_binary.path,
            "InitiatingProcessCommandLine": command_line,
            "InitiatingProcessSHA1": parent_binary.sha1,
            "InitiatingProcessSHA256": parent_binary.sha256,
            "InitiatingProcessMD5": parent_binary.md5,
            "InitiatingProcessFileSize": parent_binary.size,
            "InitiatingProcessVersionInfoCompanyName": parent_binary.company,
            "InitiatingProcessVersionInfoProductName": parent_binary.product,
            "InitiatingProcessVersionInfoOriginalFileName": parent_binary.name,
            "InitiatingProcessVersionInfoInternalFileName": parent_binary.name,
            "InitiatingProcessVersionInfoFileDescription": parent_binary.description,
            "InitiatingProcessId": self.pid(),
            "InitiatingProcessParentId": self.pid(),
            "InitiatingProcessParentFileName": parent,
            "InitiatingProcessCreationTime": self.at(seconds - 30),
            "InitiatingProcessParentCreationTime": self.at(seconds - 900),
            "InitiatingProcessAccountName": user.name,
            "InitiatingProcessAccountDomain": user.domain,
            "InitiatingProcessAccountSid": user.sid,
            "InitiatingProcessAccountUpn": user.upn,
            "InitiatingProcessAccountObjectId": user.object_id,
            "InitiatingProcessIntegrityLevel": "System" if user.index == 0 else "High",
            "InitiatingProcessTokenElevation": "TokenElevationTypeFull",
            "InitiatingProcessLogonId": 999 if user.index == 0 else 0x3E7A1,
        }

    def process(
        self,
        device: Device,
        user: User,
        *,
        parent: str,
        parent_command_line: str,
        child: str,
        command_line: str,
        grandparent: str = "explorer.exe",
        seconds: float = 0.0,
        folder: str = "",
    ) -> Row:
        """A DeviceProcessEvents row: ``parent`` starts ``child`` as ``user``."""
        found: Binary = binary(child)
        row = self.initiating(
            device, user, parent, parent_command_line, grandparent, seconds
        )
        row.update(
            {
                "ActionType": "ProcessCreated",
                "FileName": found.name,
                "FolderPath": f"{folder}\\{found.name}" if folder else found.path,
                "ProcessCommandLine": command_line,
                "SHA1": found.sha1 if not folder else self.hexdigits(40),
                "SHA256": found.sha256 if not folder else self.hexdigits(64),
                "MD5": found.md5 if not folder else self.hexdigits(32),
                "FileSize": found.size,
                "ProcessId": self.pid(),
                "ProcessCreationTime": self.at(seconds),
                "ProcessIntegrityLevel": "System" if user.index == 0 else "High",
                "ProcessTokenElevation": "TokenElevationTypeFull",
                "AccountName": user.name,
                "AccountDomain": user.domain,
                "AccountSid": user.sid,
                "AccountUpn": user.upn,
                "AccountObjectId": user.object_id,
                "LogonId": row["InitiatingProcessLogonId"],
            }
        )
        return self.emit("DeviceProcessEvents", row)

    def device_event(
        self,
        device: Device,
        user: User,
        action: str,
        *,
        parent: str,
        parent_command_line: str,
        seconds: float = 0.0,
        **columns: Any,
    ) -> Row:
        """A DeviceEvents row of ``action`` raised by the ``parent`` process."""
        row = self.initiating(
            device, user, parent, parent_command_line, "explorer.exe", seconds
        )
        row.update(ActionType=action, **columns)
        return self.emit("DeviceEvents", row)

    def alert(
        self,
        title: str,
        *,
        severity: str,
        category: str,
        techniques: list[str],
        seconds: float,
        evidence: list[Row],
    ) -> str:
        """An AlertInfo row plus one AlertEvidence row per evidence entry."""
        alert_id = f"da{self.rng.getrandbits(64):016x}_{self.rng.randrange(10**9)}"
        common = {
            "Timestamp": self.at(seconds),
            "AlertId": alert_id,
            "Title": title,
            "ServiceSource": "Microsoft Defender for Endpoint",
            "DetectionSource": "EDR",
            "AttackTechniques": str(techniques).replace("'", '"'),
        }
        self.emit("AlertInfo", dict(common, Category=category, Severity=severity))
        for item in evidence:
            self.emit(
                "AlertEvidence", dict(common, Categories=f'["{category}"]', **item)
            )

        return alert_id
