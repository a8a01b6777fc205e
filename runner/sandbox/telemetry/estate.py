"""The organisation the telemetry describes: its devices, people and binaries.

Everything here is a pure function of the seed, so two generators with the
same seed describe the same organisation down to the last SID.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from functools import cached_property

DOMAIN = "contoso.com"
NETBIOS_DOMAIN = "CONTOSO"
AD_SUFFIX = "corp.contoso.com"

_FIRST_NAMES = (
    "Adele Alex Amara Ben Carla Chen Dana Diego Elif Emma Farah Felix Grace Hana "
    "Ivan Jonas Kai Lara Leo Lina Marco Maya Nadia Noah Omar Priya Rosa Sam Sofia "
    "Tariq Ulla Vera Wei Yusuf Zoe"
).split()
_LAST_NAMES = (
    "Andersen Baker Costa Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski "
    "Lopez Meyer Novak Okafor Petrov Quinn Rossi Schmidt Tanaka Ueda Varga Weber "
    "Xu Yilmaz Zimmermann"
).split()
_DEPARTMENTS = ("fin", "hr", "eng", "ops", "sales", "legal", "it")
_SERVERS = ("sql01", "web01", "file01", "app01", "print01", "exch01", "build01")


def _hex(text: str, algorithm: str) -> str:
    return hashlib.new(algorithm, text.encode()).hexdigest()


@dataclass(frozen=True)
class Device:
    """One onboarded Windows machine."""

    index: int
    name: str
    device_id: str
    role: str  # workstation | server | domain-controller
    local_ip: str
    public_ip: str
    os_version: str
    os_build: int
    machine_group: str
    aad_device_id: str

    @property
    def host(self) -> str:
        return self.name.split(".")[0]


@dataclass(frozen=True)
class User:
    """One directory account; the first entry of every estate is SYSTEM."""

    index: int
    name: str
    display_name: str
    upn: str
    sid: str
    object_id: str
    department: str
    title: str

    @property
    def domain(self) -> str:
        return "nt authority" if self.sid == "S-1-5-18" else NETBIOS_DOMAIN.lower()


@dataclass(frozen=True)
class Binary:
    """An executable or library with stable hashes and version information."""

    name: str
    folder: str
    company: str
    product: str
    description: str
    size: int

    @property
    def path(self) -> str:
        return f"{self.folder}\\{self.name}"

    @cached_property
    def sha1(self) -> str:
        return _hex(self.path.lower(), "sha1")

    @cached_property
    def sha256(self) -> str:
        return _hex(self.path.lower(), "sha256")

    @cached_property
    def md5(self) -> str:
        return _hex(self.path.lower(), "md5")


_SYS32 = "C:\\Windows\\System32"
_MS = "Microsoft Corporation"
_WINDOWS = "Microsoft® Windows® Operating System"


def _binaries() -> dict[str, Binary]:
    table = [
        ("explorer.exe", "C:\\Windows", "Windows Explorer", 5_100_000),
        ("userinit.exe", _SYS32, "Userinit Logon Application", 34_000),
        ("winlogon.exe", _SYS32, "Windows Logon Application", 900_000),
        ("services.exe", _SYS32, "Services and Controller app", 720_000),
        ("svchost.exe", _SYS32, "Host Process for Windows Services", 57_000),
        ("lsass.exe", _SYS32, "Local Security Authority Process", 60_000),
        ("cmd.exe", _SYS32, "Windows Command Processor", 289_000),
        ("conhost.exe", _SYS32, "Console Window Host", 868_000),
        ("taskhostw.exe", _SYS32, "Host Process for Windows Tasks", 100_000),
        ("wmiprvse.exe", f"{_SYS32}\\wbem", "WMI Provider Host", 510_000),
        ("wmic.exe", f"{_SYS32}\\wbem", "WMI Commandline Utility", 520_000),
        (
            "powershell.exe",
            f"{_SYS32}\\WindowsPowerShell\\v1.0",
            "Windows PowerShell",
            450_000,
        ),
        ("rundll32.exe", _SYS32, "Windows host process (Rundll32)", 71_000),
        ("regsvr32.exe", _SYS32, "Microsoft(C) Register Server", 25_000),
        ("mshta.exe", _SYS32, "Microsoft (R) HTML Application host", 14_000),
        ("certutil.exe", _SYS32, "CertUtil.exe", 1_400_000),
        ("bitsadmin.exe", _SYS32, "BITS administration utility", 190_000),
        ("schtasks.exe", _SYS32, "Task Scheduler Configuration Tool", 235_000),
        ("sc.exe", _SYS32, "Service Control Manager Configuration Tool", 70_000),
        ("reg.exe", _SYS32, "Registry Console Tool", 77_000),
        ("net.exe", _SYS32, "Net Command", 57_000),
        ("net1.exe", _SYS32, "Net Command", 170_000),
        ("whoami.exe", _SYS32, "whoami - displays logged on user information", 74_000),
        ("ipconfig.exe", _SYS32, "IP Configuration Utility", 35_000),
        ("nltest.exe", _SYS32, "Microsoft® Logon Server Test Utility", 150_000),
        ("vssadmin.exe", _SYS32, "Command Line Interface for VSS", 130_000),
        ("wevtutil.exe", _SYS32, "Eventing Command Line Utility", 230_000),
        ("msiexec.exe", _SYS32, "Windows® installer", 66_000),
        ("gpupdate.exe", _SYS32, "Microsoft® Group Policy Update Utility", 31_000),
        ("backgroundTaskHost.exe", _SYS32, "Background Task Host", 19_000),
        (
            "SearchProtocolHost.exe",
            _SYS32,
            "Microsoft Windows Search Protocol Host",
            420_000,
        ),
        ("spoolsv.exe", _SYS32, "Spooler SubSystem App", 930_000),
        ("dllhost.exe", _SYS32, "COM Surrogate", 21_000),
        ("consent.exe", _SYS32, "Consent UI for administrative applications", 160_000),
        ("wscript.exe", _SYS32, "Microsoft ® Windows Based Script Host", 170_000),
        ("tasklist.exe", _SYS32, "Lists the current running tasks", 107_000),
        ("taskkill.exe", _SYS32, "Terminates Processes", 86_000),
    ]
    binaries = {
        name.lower(): Binary(name, folder, _MS, _WINDOWS, description, size)
        for name, folder, description, size in table
    }
    others = [
        (
            "chrome.exe",
            "C:\\Program Files\\Google\\Chrome\\Application",
            "Google LLC",
            "Google Chrome",
            "Google Chrome",
            2_900_000,
        ),
        (
            "msedge.exe",
            "C:\\Program Files (x86)\\Microsoft\\Edge\\Application",
            _MS,
            "Microsoft Edge",
            "Microsoft Edge",
            3_900_000,
        ),
        (
            "OUTLOOK.EXE",
            "C:\\Program Files\\Microsoft Office\\root\\Office16",
            _MS,
            "Microsoft Outlook",
            "Microsoft Outlook",
            42_000_000,
        ),
        (
            "WINWORD.EXE",
            "C:\\Program Files\\Microsoft Office\\root\\Office16",
            _MS,
            "Microsoft Office",
            "Microsoft Word",
            1_600_000,
        ),
        (
            "EXCEL.EXE",
            "C:\\Program Files\\Microsoft Office\\root\\Office16",
            _MS,
            "Microsoft Office",
            "Microsoft Excel",
            60_000_000,
        ),
        (
            "ms-teams.exe",
            "C:\\Program Files\\WindowsApps\\"
            "MSTeams_24335.206.3315.1150_x64__8wekyb3d8bbwe",
            _MS,
            "Microsoft Teams",
            "Microsoft Teams",
            6_500_000,
        ),
        (
            "OneDrive.exe",
            "C:\\Program Files\\Microsoft OneDrive",
            _MS,
            "Microsoft OneDrive",
            "Microsoft OneDrive",
            3_300_000,
        ),
        (
            "MsMpEng.exe",
            "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0",
            _MS,
            "Microsoft Malware Protection",
            "Antimalware Service Executable",
            133_000,
        ),
        (
            "MpCmdRun.exe",
            "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0",
            _MS,
            "Microsoft Malware Protection",
            "Microsoft Malware Protection Command Line Utility",
            1_700_000,
        ),
        (
            "MsSense.exe",
            "C:\\Program Files\\Windows Defender Advanced Threat Protection",
            _MS,
            _WINDOWS,
            "Windows Defender Advanced Threat Protection Service",
            4_900_000,
        ),
        (
            "SenseCncProxy.exe",
            "C:\\Program Files\\Windows Defender Advanced Threat Protection",
            _MS,
            _WINDOWS,
            "Communication Module",
            1_300_000,
        ),
        (
            "sqlservr.exe",
            "C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\Binn",
            _MS,
            "Microsoft SQL Server",
            "SQL Server Windows NT - 64 Bit",
            480_000,
        ),
        (
            "w3wp.exe",
            f"{_SYS32}\\inetsrv",
            _MS,
            "Internet Information Services",
            "IIS Worker Process",
            29_000,
        ),
        (
            "Code.exe",
            "C:\\Users\\{user}\\AppData\\Local\\Programs\\Microsoft VS Code",
            _MS,
            "Visual Studio Code",
            "Visual Studio Code",
            155_000_000,
        ),
        (
            "git.exe",
            "C:\\Program Files\\Git\\cmd",
            "The Git Development Community",
            "Git",
            "Git for Windows",
            46_000,
        ),
        (
            "python.exe",
            "C:\\Program Files\\Python312",
            "Python Software Foundation",
            "Python",
            "Python",
            103_000,
        ),
        (
            "procdump64.exe",
            "C:\\Windows\\Temp",
            "Sysinternals - www.sysinternals.com",
            "ProcDump",
            "Sysinternals process dump utility",
            424_000,
        ),
        (
            "PsExec.exe",
            "C:\\Tools",
            "Sysinternals - www.sysinternals.com",
            "Sysinternals PsExec",
            "Execute processes remotely",
            716_000,
        ),
    ]
    for name, folder, company, product, description, size in others:
        binaries[name.lower()] = Binary(
            name, folder, company, product, description, size
        )

    return binaries


BINARIES: dict[str, Binary] = _binaries()


def binary(name: str) -> Binary:
    """The catalogue entry for ``name``; unknown names get a plausible one."""
    found = BINARIES.get(name.lower())
    if found is not None:
        return found

    return Binary(name, "C:\\Users\\Public", "", "", "", 250_000)


class Estate:
    """The devices and users of one seeded organisation."""

    def __init__(self, *, seed: int, devices: int, users: int) -> None:
        rng = random.Random(f"estate:{seed}")
        self.seed = seed
        parts = [str(rng.randrange(10**9, 4 * 10**9)) for _ in range(3)]
        self.domain_sid = "S-1-5-21-" + "-".join(parts)
        self.public_ips = [f"203.0.113.{rng.randrange(2, 250)}" for _ in range(3)]
        self.devices = self._make_devices(rng, max(devices, 8))
        self.users = self._make_users(rng, max(users, 8))
        self.workstations = [d for d in self.devices if d.role == "workstation"]
        self.servers = [d for d in self.devices if d.role == "server"]
        self.domain_controllers = [
            d for d in self.devices if d.role == "domain-controller"
        ]
        self.people = self.users[1:]

    def _make_devices(self, rng: random.Random, count: int) -> list[Device]:
        names = [("dc01", "domain-controller"), ("dc02", "domain-controller")]
        servers = max(2, count // 6)
        names += [
            (
                f"srv-{_SERVERS[i % len(_SERVERS)]}{'' if i < len(_SERVERS) else i}",
                "server",
            )
            for i in range(servers)
        ]
        while len(names) < count:
            department = rng.choice(_DEPARTMENTS)
            kind = rng.choice(("lt", "ws"))
            names.append(
                (f"{department}-{kind}-{rng.randrange(100, 999)}", "workstation")
            )
        devices = []
        for index, (host, role) in enumerate(names[:count]):
            name = f"{host}.{AD_SUFFIX}"
            windows11 = role == "workstation" and rng.random() < 0.7
            devices.append(
                Device(
                    index=index,
                    name=name,
                    device_id=_hex(f"{self.seed}:{name}", "sha1"),
                    role=role,
                    local_ip=f"10.{20 + index // 200}.{(index // 100) % 2}."
                    f"{10 + index % 200}",
                    public_ip=self.public_ips[index % len(self.public_ips)],
                    os_version="10.0" if role == "workstation" else "10.0",
                    os_build=22631
                    if windows11
                    else (19045 if role == "workstation" else 20348),
                    machine_group="Servers"
                    if role != "workstation"
                    else "Workstations",
                    aad_device_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                )
            )

        return devices

    def _make_users(self, rng: random.Random, count: int) -> list[User]:
        users = [
            User(0, "system", "SYSTEM", "", "S-1-5-18", "", "", ""),
        ]
        seen: set[str] = set()
        titles = ("Analyst", "Engineer", "Manager", "Specialist", "Administrator")
        while len(users) < count:
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            name = f"{first[0]}{last}".lower()
            if name in seen:
                continue
            seen.add(name)
            users.append(
                User(
                    index=len(users),
                    name=name,
                    display_name=f"{first} {last}",
                    upn=f"{first}.{last}@{DOMAIN}".lower(),
                    sid=f"{self.domain_sid}-{1100 + len(users)}",
                    object_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    department=rng.choice(_DEPARTMENTS),
                    title=rng.choice(titles),
                )
            )
        service_accounts = ("svc-sql", "svc-backup", "adm-it")
        for offset, name in enumerate(service_accounts):
            users[-1 - offset] = User(
                index=len(users) - 1 - offset,
                name=name,
                display_name=name,
                upn=f"{name}@{DOMAIN}",
                sid=f"{self.domain_sid}-{1100 + len(users) - 1 - offset}",
                object_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                department="it",
                title="Service account",
            )

        return users
