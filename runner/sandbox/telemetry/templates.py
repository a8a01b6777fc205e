"""Everyday activity: the templates background rows are drawn from.

Each template is a partial row keyed by column name. Strings may carry the
placeholders ``{user}``, ``{host}`` and ``{n}``, filled per row. Keys that start
with an underscore steer generation and never reach a table: ``_weight``
(relative frequency), ``_system`` (runs as SYSTEM rather than a person) and
``_device`` (``workstation``, ``server`` or ``domain-controller``).
"""

from __future__ import annotations

import json
from typing import Any

from .reference import severity

Template = dict[str, Any]

_USER_HOME = "C:\\Users\\{user}"


def _process(
    parent: str,
    parent_cmd: str,
    child: str,
    cmd: str,
    *,
    grandparent: str = "explorer.exe",
    weight: int = 1,
    system: bool = False,
    device: str = "",
    integrity: str = "Medium",
) -> Template:
    return {
        "InitiatingProcessFileName": parent,
        "InitiatingProcessCommandLine": parent_cmd,
        "InitiatingProcessParentFileName": grandparent,
        "FileName": child,
        "ProcessCommandLine": cmd,
        "ProcessIntegrityLevel": "System" if system else integrity,
        "InitiatingProcessIntegrityLevel": "System" if system else integrity,
        "ProcessTokenElevation": "TokenElevationTypeDefault",
        "InitiatingProcessTokenElevation": "TokenElevationTypeDefault",
        "ActionType": "ProcessCreated",
        "_weight": weight,
        "_system": system,
        "_device": device,
    }


PROCESS_TEMPLATES: list[Template] = [
    _process(
        "explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        "chrome.exe",
        '"chrome.exe" --type=renderer --lang=en-US --field-trial-handle={n}',
        grandparent="userinit.exe",
        weight=8,
    ),
    _process(
        "explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        "msedge.exe",
        '"msedge.exe" --single-argument https://contoso.sharepoint.com/',
        grandparent="userinit.exe",
        weight=6,
    ),
    _process(
        "explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        "OUTLOOK.EXE",
        '"OUTLOOK.EXE" ',
        grandparent="userinit.exe",
        weight=3,
    ),
    _process(
        "explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        "WINWORD.EXE",
        '"WINWORD.EXE" /n "' + _USER_HOME + '\\Documents\\Report-{n}.docx"',
        grandparent="userinit.exe",
        weight=3,
    ),
    _process(
        "explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        "EXCEL.EXE",
        '"EXCEL.EXE" "' + _USER_HOME + '\\Documents\\Budget-{n}.xlsx"',
        grandparent="userinit.exe",
        weight=3,
    ),
    _process(
        "explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        "ms-teams.exe",
        '"ms-teams.exe" msteams:system-initiated',
        grandparent="userinit.exe",
        weight=2,
    ),
    _process(
        "explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        "OneDrive.exe",
        '"OneDrive.exe" /background',
        grandparent="userinit.exe",
    ),
    _process(
        "explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        "Code.exe",
        '"Code.exe" ' + _USER_HOME + "\\source\\repos\\tools",
        grandparent="userinit.exe",
    ),
    _process(
        "Code.exe",
        '"Code.exe"',
        "git.exe",
        "git.exe fetch --all --prune",
        grandparent="explorer.exe",
    ),
    _process(
        "cmd.exe",
        '"cmd.exe"',
        "python.exe",
        "python.exe -m pip list",
        grandparent="explorer.exe",
    ),
    _process(
        "explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        "cmd.exe",
        '"cmd.exe" ',
        grandparent="userinit.exe",
    ),
    _process(
        "cmd.exe",
        '"cmd.exe" ',
        "ipconfig.exe",
        "ipconfig  /all",
        grandparent="explorer.exe",
    ),
    _process(
        "cmd.exe",
        '"cmd.exe" ',
        "conhost.exe",
        "\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1",
        grandparent="explorer.exe",
        weight=2,
    ),
    _process(
        "explorer.exe",
        "C:\\Windows\\Explorer.EXE",
        "powershell.exe",
        '"powershell.exe" -NoLogo',
        grandparent="userinit.exe",
    ),
    _process(
        "services.exe",
        "C:\\Windows\\system32\\services.exe",
        "svchost.exe",
        "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
        grandparent="wininit.exe",
        system=True,
        weight=4,
    ),
    _process(
        "services.exe",
        "C:\\Windows\\system32\\services.exe",
        "svchost.exe",
        "C:\\Windows\\System32\\svchost.exe -k LocalServiceNetworkRestricted -p",
        grandparent="wininit.exe",
        system=True,
        weight=3,
    ),
    _process(
        "svchost.exe",
        "C:\\Windows\\system32\\svchost.exe -k netsvcs -p",
        "taskhostw.exe",
        "taskhostw.exe Install $(Arg0)",
        grandparent="services.exe",
        system=True,
        weight=3,
    ),
    _process(
        "svchost.exe",
        "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p",
        "wmiprvse.exe",
        "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding",
        grandparent="services.exe",
        system=True,
        weight=3,
    ),
    _process(
        "svchost.exe",
        "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p",
        "backgroundTaskHost.exe",
        '"backgroundTaskHost.exe" -ServerName:BackgroundTaskHost.WebAccountProvider',
        grandparent="services.exe",
        weight=3,
    ),
    _process(
        "svchost.exe",
        "C:\\Windows\\system32\\svchost.exe -k netsvcs -p",
        "MpCmdRun.exe",
        '"MpCmdRun.exe" -SignatureUpdate -ScheduleJob',
        grandparent="services.exe",
        system=True,
        weight=2,
    ),
    _process(
        "MsSense.exe",
        '"MsSense.exe"',
        "SenseCncProxy.exe",
        '"SenseCncProxy.exe" {n}',
        grandparent="services.exe",
        system=True,
        weight=2,
    ),
    _process(
        "svchost.exe",
        "C:\\Windows\\system32\\svchost.exe -k netsvcs -p",
        "gpupdate.exe",
        "gpupdate.exe /target:computer",
        grandparent="services.exe",
        system=True,
    ),
    _process(
        "services.exe",
        "C:\\Windows\\system32\\services.exe",
        "msiexec.exe",
        "C:\\Windows\\system32\\msiexec.exe /V",
        grandparent="wininit.exe",
        system=True,
    ),
    _process(
        "svchost.exe",
        "C:\\Windows\\system32\\svchost.exe -k netsvcs -p",
        "SearchProtocolHost.exe",
        '"SearchProtocolHost.exe" Global\\UsGthrFltPipeMssGthrPipe{n}',
        grandparent="services.exe",
        system=True,
        weight=2,
    ),
    _process(
        "services.exe",
        "C:\\Windows\\system32\\services.exe",
        "sqlservr.exe",
        '"sqlservr.exe" -sMSSQLSERVER',
        grandparent="wininit.exe",
        system=True,
        device="server",
    ),
    _process(
        "svchost.exe",
        "C:\\Windows\\system32\\svchost.exe -k iissvcs",
        "w3wp.exe",
        'c:\\windows\\system32\\inetsrv\\w3wp.exe -ap "DefaultAppPool" -v "v4.0"',
        grandparent="services.exe",
        system=True,
        device="server",
    ),
]

NETWORK_TEMPLATES: list[Template] = [
    {
        "InitiatingProcessFileName": process,
        "RemoteUrl": url,
        "RemoteIP": ip,
        "RemotePort": port,
        "Protocol": "Tcp",
        "ActionType": action,
        "RemoteIPType": "Private" if ip.startswith("10.") else "Public",
        "LocalIPType": "Private",
        "_weight": weight,
        "_system": system,
    }
    for process, url, ip, port, action, weight, system in [
        (
            "chrome.exe",
            "www.google.com",
            "142.250.185.68",
            443,
            "ConnectionSuccess",
            8,
            False,
        ),
        (
            "chrome.exe",
            "github.com",
            "140.82.121.4",
            443,
            "ConnectionSuccess",
            3,
            False,
        ),
        (
            "msedge.exe",
            "contoso.sharepoint.com",
            "13.107.136.10",
            443,
            "ConnectionSuccess",
            8,
            False,
        ),
        (
            "msedge.exe",
            "login.microsoftonline.com",
            "20.190.159.2",
            443,
            "ConnectionSuccess",
            4,
            False,
        ),
        (
            "OUTLOOK.EXE",
            "outlook.office365.com",
            "52.97.146.178",
            443,
            "ConnectionSuccess",
            6,
            False,
        ),
        (
            "ms-teams.exe",
            "teams.microsoft.com",
            "52.113.194.132",
            443,
            "ConnectionSuccess",
            5,
            False,
        ),
        (
            "OneDrive.exe",
            "contoso-my.sharepoint.com",
            "13.107.138.10",
            443,
            "ConnectionSuccess",
            4,
            False,
        ),
        (
            "svchost.exe",
            "settings-win.data.microsoft.com",
            "20.42.65.92",
            443,
            "ConnectionSuccess",
            4,
            True,
        ),
        ("svchost.exe", "", "10.20.0.10", 53, "ConnectionSuccess", 3, True),
        (
            "MsSense.exe",
            "winatp-gw-weu.microsoft.com",
            "20.54.229.49",
            443,
            "ConnectionSuccess",
            3,
            True,
        ),
        (
            "MsMpEng.exe",
            "wdcp.microsoft.com",
            "20.74.47.205",
            443,
            "ConnectionSuccess",
            2,
            True,
        ),
        (
            "chrome.exe",
            "cdn.jsdelivr.net",
            "151.101.1.229",
            443,
            "ConnectionFailed",
            1,
            False,
        ),
        (
            "python.exe",
            "pypi.org",
            "151.101.64.223",
            443,
            "ConnectionSuccess",
            1,
            False,
        ),
        ("git.exe", "github.com", "140.82.121.3", 443, "ConnectionSuccess", 1, False),
    ]
] + [
    {
        "InitiatingProcessFileName": "System",
        "RemoteUrl": "",
        "RemoteIP": "10.20.0.11",
        "LocalPort": 445,
        "RemotePort": 0,
        "Protocol": "Tcp",
        "ActionType": "InboundConnectionAccepted",
        "RemoteIPType": "Private",
        "LocalIPType": "Private",
        "_weight": 2,
        "_system": True,
    },
    {
        "InitiatingProcessFileName": "svchost.exe",
        "RemoteUrl": "",
        "RemoteIP": "",
        "LocalPort": 3389,
        "RemotePort": 0,
        "Protocol": "Tcp",
        "ActionType": "ListeningConnectionCreated",
        "RemoteIPType": "",
        "LocalIPType": "Private",
        "_weight": 1,
        "_system": True,
    },
]

FILE_TEMPLATES: list[Template] = [
    {
        "ActionType": action,
        "FileName": name,
        "FolderPath": folder + "\\" + name,
        "InitiatingProcessFileName": process,
        "_weight": weight,
        "_system": system,
        "FileSize": size,
    }
    for action, name, folder, process, weight, system, size in [
        (
            "FileCreated",
            "Report-{n}.docx",
            _USER_HOME + "\\Documents",
            "WINWORD.EXE",
            4,
            False,
            48_213,
        ),
        (
            "FileModified",
            "Budget-{n}.xlsx",
            _USER_HOME + "\\Documents",
            "EXCEL.EXE",
            4,
            False,
            90_114,
        ),
        (
            "FileCreated",
            "invoice_{n}.pdf",
            _USER_HOME + "\\Downloads",
            "msedge.exe",
            3,
            False,
            311_004,
        ),
        (
            "FileCreated",
            "setup_{n}.msi",
            _USER_HOME + "\\Downloads",
            "chrome.exe",
            1,
            False,
            5_300_112,
        ),
        (
            "FileCreated",
            "~DF{n}.TMP",
            _USER_HOME + "\\AppData\\Local\\Temp",
            "OUTLOOK.EXE",
            3,
            False,
            16_384,
        ),
        (
            "FileDeleted",
            "~DF{n}.TMP",
            _USER_HOME + "\\AppData\\Local\\Temp",
            "OUTLOOK.EXE",
            2,
            False,
            16_384,
        ),
        (
            "FileRenamed",
            "notes-{n}.txt",
            _USER_HOME + "\\OneDrive - Contoso",
            "OneDrive.exe",
            2,
            False,
            2_048,
        ),
        (
            "FileCreated",
            "mxdwdrv.dll",
            "C:\\Windows\\System32\\spool\\drivers\\x64\\3",
            "spoolsv.exe",
            1,
            True,
            831_488,
        ),
        (
            "FileCreated",
            "mpenginedb.db-wal",
            "C:\\ProgramData\\Microsoft\\Windows Defender\\Scans",
            "MsMpEng.exe",
            2,
            True,
            3_260_000,
        ),
        (
            "FileModified",
            "edb.log",
            "C:\\ProgramData\\Microsoft\\Search\\Data\\Applications\\Windows",
            "SearchProtocolHost.exe",
            2,
            True,
            1_048_576,
        ),
        (
            "FileCreated",
            "{n}.etl",
            "C:\\Windows\\Logs\\WindowsUpdate",
            "svchost.exe",
            1,
            True,
            65_536,
        ),
    ]
]

REGISTRY_TEMPLATES: list[Template] = [
    {
        "ActionType": action,
        "RegistryKey": key,
        "RegistryValueName": value_name,
        "RegistryValueData": data,
        "RegistryValueType": value_type,
        "InitiatingProcessFileName": process,
        "_weight": weight,
        "_system": system,
    }
    for action, key, value_name, data, value_type, process, weight, system in [
        (
            "RegistryValueSet",
            "HKEY_CURRENT_USER\\Software\\Microsoft\\Office\\16.0\\Word\\"
            "Reading Locations"
            "\\Document {n}",
            "File Path",
            _USER_HOME + "\\Documents\\Report-{n}.docx",
            "String",
            "WINWORD.EXE",
            4,
            False,
        ),
        (
            "RegistryValueSet",
            "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows Defender\\"
            "Signature Updates",
            "SignaturesLastUpdated",
            "{n}",
            "Binary",
            "MsMpEng.exe",
            3,
            True,
        ),
        (
            "RegistryKeyCreated",
            "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion"
            "\\Installer\\UserData\\S-1-5-18\\Products\\{n}",
            "",
            "",
            "",
            "msiexec.exe",
            1,
            True,
        ),
        (
            "RegistryValueSet",
            "HKEY_CURRENT_USER\\Software\\Microsoft\\OneDrive\\Accounts\\Business1",
            "LastSignInTime",
            "{n}",
            "Dword",
            "OneDrive.exe",
            2,
            False,
        ),
        (
            "RegistryValueDeleted",
            "HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\bam\\State"
            "\\UserSettings",
            "\\Device\\HarddiskVolume3\\Windows\\System32\\cmd.exe",
            "",
            "Binary",
            "svchost.exe",
            1,
            True,
        ),
    ]
]

IMAGE_LOAD_TEMPLATES: list[Template] = [
    {
        "ActionType": "ImageLoaded",
        "FileName": dll,
        "FolderPath": "C:\\Windows\\System32\\" + dll,
        "InitiatingProcessFileName": process,
        "_weight": weight,
        "_system": system,
    }
    for dll, process, weight, system in [
        ("ntdll.dll", "chrome.exe", 3, False),
        ("kernel32.dll", "msedge.exe", 3, False),
        ("amsi.dll", "powershell.exe", 1, False),
        ("clr.dll", "powershell.exe", 1, False),
        ("wininet.dll", "OUTLOOK.EXE", 2, False),
        ("crypt32.dll", "svchost.exe", 2, True),
        ("samlib.dll", "lsass.exe", 1, True),
        ("winspool.drv", "WINWORD.EXE", 1, False),
    ]
]

LOGON_TEMPLATES: list[Template] = [
    {
        "ActionType": action,
        "LogonType": logon_type,
        "Protocol": protocol,
        "FailureReason": failure,
        "IsLocalAdmin": False,
        "InitiatingProcessFileName": process,
        # The logon is the person's; the process recording it runs as SYSTEM.
        "InitiatingProcessAccountName": "system",
        "InitiatingProcessAccountDomain": "nt authority",
        "InitiatingProcessAccountSid": "S-1-5-18",
        "InitiatingProcessAccountUpn": "",
        "InitiatingProcessAccountObjectId": "",
        "RemoteIPType": remote_type,
        "_weight": weight,
        "_device": device,
    }
    for action, logon_type, protocol, failure, process, remote_type, weight, device in [
        (
            "LogonSuccess",
            "Interactive",
            "Negotiate",
            "",
            "lsass.exe",
            "",
            4,
            "workstation",
        ),
        ("LogonSuccess", "Unlock", "Negotiate", "", "lsass.exe", "", 4, "workstation"),
        (
            "LogonSuccess",
            "Network",
            "Kerberos",
            "",
            "lsass.exe",
            "Private",
            5,
            "server",
        ),
        (
            "LogonFailed",
            "Interactive",
            "NTLM",
            "InvalidUserNameOrPassword",
            "lsass.exe",
            "",
            1,
            "workstation",
        ),
        ("LogonSuccess", "Service", "Negotiate", "", "services.exe", "", 1, "server"),
    ]
]

DEVICE_EVENT_TEMPLATES: list[Template] = [
    {
        "ActionType": "PowerShellCommand",
        "InitiatingProcessFileName": "powershell.exe",
        "AdditionalFields": {"Command": command},
        "_weight": 3,
    }
    for command in ("Get-Process", "Get-Service", "Import-Module", "Get-ChildItem")
] + [
    {
        "ActionType": "SmartScreenUrlWarning",
        "InitiatingProcessFileName": "msedge.exe",
        "RemoteUrl": "http://free-offers-{n}.example.net/",
        "AdditionalFields": {"Experience": "Phishing"},
        "_weight": 1,
    },
    {
        "ActionType": "UsbDriveMounted",
        "InitiatingProcessFileName": "",
        "AdditionalFields": {
            "DriveLetter": "E:",
            "ProductName": "DataTraveler 3.0",
            "Manufacturer": "Kingston",
            "SerialNumber": "{n}",
            "Volume": "\\\\?\\Volume{n}",
        },
        "_weight": 1,
        "_device": "workstation",
    },
    {
        "ActionType": "FirewallInboundConnectionBlocked",
        "InitiatingProcessFileName": "",
        "RemoteIP": "10.20.0.{n}",
        "RemotePort": 137,
        "_weight": 2,
        "_system": True,
    },
    {
        "ActionType": "DnsQueryResponse",
        "InitiatingProcessFileName": "svchost.exe",
        "AdditionalFields": {
            "DnsQueryString": "outlook.office365.com",
            "DnsQueryResult": [{"RecordType": "A", "Address": "52.97.146.178"}],
        },
        "_weight": 3,
        "_system": True,
    },
    {
        "ActionType": "AntivirusScanCompleted",
        "InitiatingProcessFileName": "MsMpEng.exe",
        "AdditionalFields": {"ScanTypeIndex": "Quick"},
        "_weight": 1,
        "_system": True,
    },
    {
        "ActionType": "ProcessCreatedUsingWmiQuery",
        "InitiatingProcessFileName": "wmiprvse.exe",
        "FileName": "msiexec.exe",
        "ProcessCommandLine": "msiexec.exe /i {n}.msi /qn",
        "_weight": 1,
        "_system": True,
    },
    {
        "ActionType": "NamedPipeEvent",
        "InitiatingProcessFileName": "svchost.exe",
        "AdditionalFields": {
            "PipeName": "\\Device\\NamedPipe\\lsarpc",
            "FileOperation": "File opened",
        },
        "_weight": 2,
        "_system": True,
    },
    {
        "ActionType": "BrowserLaunchedToOpenUrl",
        "InitiatingProcessFileName": "OUTLOOK.EXE",
        "RemoteUrl": "https://contoso.sharepoint.com/sites/team/{n}",
        "_weight": 2,
    },
]

MAIL_SENDERS = [
    ("Fabrikam Billing", "billing@fabrikam.com", "fabrikam.com", "40.107.22.53"),
    (
        "Northwind Traders",
        "orders@northwindtraders.com",
        "northwindtraders.com",
        "40.107.7.91",
    ),
    ("Microsoft 365", "no-reply@microsoft.com", "microsoft.com", "40.92.18.44"),
    ("LinkedIn", "messages-noreply@linkedin.com", "linkedin.com", "108.174.6.201"),
    ("Tailspin Toys", "sales@tailspintoys.com", "tailspintoys.com", "52.101.68.12"),
]


def _auth(result: str) -> str:
    return json.dumps(
        {"SPF": result, "DKIM": result, "DMARC": result, "CompAuth": result}
    )


MAIL_TEMPLATES: list[Template] = [
    {
        "SenderDisplayName": display,
        "SenderFromAddress": address,
        "SenderMailFromAddress": address,
        "SenderFromDomain": domain,
        "SenderMailFromDomain": domain,
        "SenderIPv4": ip,
        "Subject": subject,
        "EmailDirection": "Inbound",
        "DeliveryAction": action,
        "DeliveryLocation": location,
        "LatestDeliveryAction": action,
        "LatestDeliveryLocation": location,
        "ThreatTypes": threats,
        "DetectionMethods": detections,
        "ConfidenceLevel": confidence,
        "AuthenticationDetails": _auth("pass" if not threats else "fail"),
        "EmailLanguage": "en",
        "Connectors": "",
        "OrgLevelAction": "",
        "AttachmentCount": 1 if attachment else 0,
        "UrlCount": 1 if url else 0,
        "BulkComplaintLevel": 0,
        "_url": url,
        "_attachment": attachment,
        "_weight": weight,
    }
    for (
        display,
        address,
        domain,
        ip,
        subject,
        action,
        location,
        threats,
        detections,
        confidence,
        url,
        attachment,
        weight,
    ) in [
        (
            *MAIL_SENDERS[0],
            "Invoice {n} for October",
            "Delivered",
            "Inbox/folder",
            "",
            "",
            "",
            "",
            "invoice-{n}.pdf",
            3,
        ),
        (
            *MAIL_SENDERS[1],
            "Order confirmation {n}",
            "Delivered",
            "Inbox/folder",
            "",
            "",
            "",
            "https://www.northwindtraders.com/orders/{n}",
            "",
            3,
        ),
        (
            *MAIL_SENDERS[2],
            "Your weekly Microsoft 365 digest",
            "Delivered",
            "Inbox/folder",
            "",
            "",
            "",
            "https://aka.ms/m365digest",
            "",
            2,
        ),
        (
            *MAIL_SENDERS[3],
            "You appeared in {n} searches this week",
            "Delivered",
            "Inbox/folder",
            "",
            "",
            "",
            "https://www.linkedin.com/comm/me/",
            "",
            2,
        ),
        (
            *MAIL_SENDERS[4],
            "Limited offer: {n}% off",
            "Junked",
            "Junk folder",
            "Spam",
            '{"Spam":["Mixed analysis detection"]}',
            '{"Spam":"Normal"}',
            "https://promo.tailspintoys.com/deal",
            "",
            2,
        ),
        (
            "IT Helpdesk",
            "helpdesk@contoso-support.info",
            "contoso-support.info",
            "185.225.69.21",
            "Mailbox storage full - action required",
            "Blocked",
            "Quarantine",
            "Phish",
            '{"Phish":["URL detonation reputation"]}',
            '{"Phish":"High"}',
            "https://contoso-support.info/reset",
            "",
            1,
        ),
        (
            "Payroll",
            "payroll@fabrikam-hr.biz",
            "fabrikam-hr.biz",
            "91.92.109.17",
            "Salary adjustment {n}",
            "Blocked",
            "Quarantine",
            "Malware",
            '{"Malware":["File detonation"]}',
            '{"Malware":"High"}',
            "",
            "salary_{n}.xlsm",
            1,
        ),
    ]
]

_THREAT_NAMES = {
    "Malware": "Trojan:O97M/Sadoca.C!ml",
    "Phish": "Phish:HTML/CredHarvest",
}
for _mail in MAIL_TEMPLATES:
    _mail["ThreatNames"] = _THREAT_NAMES.get(_mail["ThreatTypes"], "")
MAIL_TEMPLATES.append(
    dict(
        MAIL_TEMPLATES[0],
        SenderDisplayName="DocuSign",
        SenderFromAddress="dse@docusign-notify.net",
        SenderMailFromAddress="dse@docusign-notify.net",
        SenderFromDomain="docusign-notify.net",
        SenderMailFromDomain="docusign-notify.net",
        SenderIPv4="45.153.241.18",
        Subject="Please sign: Q4 contract {n}",
        DeliveryAction="Junked",
        DeliveryLocation="Junk folder",
        LatestDeliveryAction="Junked",
        LatestDeliveryLocation="Junk folder",
        ThreatTypes="Phish",
        ThreatNames="Phish:QR/CredHarvest",
        DetectionMethods='{"Phish":["QR code analysis"]}',
        UrlCount=1,
        AttachmentCount=0,
        _url="https://docusign-notify.net/sign?id={n}",
        _url_location="QRCode",
        _attachment="",
        _weight=1,
    )
)

# Business email compromise: plain-text asks from a look-alike executive that
# carry no link or file, so only the language-model filter's intent
# classification (ThreatClassification) explains why they were junked.
for _subject, _classification in (
    ("Quick favour - gift cards for the team offsite", "Gift card"),
    ("Updated bank details for my salary before Friday", "Payroll"),
):
    MAIL_TEMPLATES.append(
        dict(
            MAIL_TEMPLATES[0],
            SenderDisplayName="Megan Bowen (CEO)",
            SenderFromAddress="megan.bowen.office@outlook-mail.biz",
            SenderMailFromAddress="megan.bowen.office@outlook-mail.biz",
            SenderFromDomain="outlook-mail.biz",
            SenderMailFromDomain="outlook-mail.biz",
            SenderIPv4="193.29.57.140",
            Subject=_subject,
            DeliveryAction="Junked",
            DeliveryLocation="Junk folder",
            LatestDeliveryAction="Junked",
            LatestDeliveryLocation="Junk folder",
            ThreatTypes="Phish",
            ThreatNames="",
            ThreatClassification=_classification,
            DetectionMethods='{"Phish":["Impersonation user"]}',
            ConfidenceLevel='{"Phish":"High"}',
            UrlCount=0,
            AttachmentCount=0,
            _url="",
            _attachment="",
            _weight=1,
        )
    )

IDENTITY_LOGON_TEMPLATES: list[Template] = [
    {
        "ActionType": action,
        "Application": "Active Directory",
        "LogonType": logon_type,
        "Protocol": protocol,
        "FailureReason": failure,
        "DeviceType": "Workstation",
        "OSPlatform": "Windows 11",
        "_weight": weight,
    }
    for action, logon_type, protocol, failure, weight in [
        ("LogonSuccess", "Resource access", "Kerberos", "", 6),
        ("LogonSuccess", "Credentials validation", "Kerberos", "", 3),
        ("LogonSuccess", "Credentials validation", "Ntlm", "", 1),
        ("LogonFailed", "Credentials validation", "Ntlm", "WrongPassword", 1),
    ]
]

IDENTITY_QUERY_TEMPLATES: list[Template] = [
    {
        "ActionType": action,
        "Application": "Active Directory",
        "QueryType": query_type,
        "QueryTarget": target,
        "Query": query,
        "Protocol": protocol,
        "_weight": weight,
    }
    for action, query_type, target, query, protocol, weight in [
        ("DNS query", "A", "outlook.office365.com", "outlook.office365.com", "Dns", 6),
        (
            "DNS query",
            "SRV",
            "_ldap._tcp.dc._msdcs.corp.contoso.com",
            "_ldap._tcp.dc._msdcs.corp.contoso.com",
            "Dns",
            3,
        ),
        (
            "LDAP query",
            "",
            "",
            "(&(objectClass=user)(sAMAccountName={user}))",
            "Ldap",
            2,
        ),
        ("SAMR query", "QueryUser", "{user}", "QueryUser", "Samr", 1),
    ]
]

IDENTITY_DIRECTORY_TEMPLATES: list[Template] = [
    {
        "ActionType": action,
        "Application": "Active Directory",
        "Protocol": "",
        "AdditionalFields": fields,
        "_weight": weight,
    }
    for action, fields, weight in [
        ("Account Password changed", {"TARGET_OBJECT.USER": "{user}"}, 2),
        (
            "Group Membership changed",
            {"TO.GROUP": "Finance Team", "TARGET_OBJECT.USER": "{user}"},
            1,
        ),
        ("Account Enabled changed", {"TARGET_OBJECT.USER": "{user}"}, 1),
    ]
]

CLOUD_APP_TEMPLATES: list[Template] = [
    {
        "Application": app,
        "ApplicationId": app_id,
        "ActionType": action,
        "ActivityType": activity,
        "ObjectName": object_name,
        "ObjectType": object_type,
        "IPAddress": "203.0.113.{n}",
        "CountryCode": "DE",
        "City": "Berlin",
        "ISP": "Contoso ISP",
        "OSPlatform": "Windows 11",
        "DeviceType": "Desktop",
        "UserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/131.0",
        "AccountType": "Regular",
        "IsAdminOperation": False,
        "RawEventData": {
            "Operation": action,
            "Workload": workload,
            "ObjectId": object_name,
            "ResultStatus": "Succeeded",
        },
        "_weight": weight,
    }
    for app, app_id, action, activity, object_name, object_type, workload, weight in [
        (
            "Microsoft Exchange Online",
            20893,
            "MailItemsAccessed",
            "Read",
            "Inbox",
            "Folder",
            "Exchange",
            5,
        ),
        (
            "Microsoft Exchange Online",
            20893,
            "Send",
            "Send",
            "Weekly update",
            "Email",
            "Exchange",
            2,
        ),
        (
            "Microsoft SharePoint Online",
            20892,
            "FileAccessed",
            "Read",
            "https://contoso.sharepoint.com/sites/team/Shared Documents/Plan-{n}.docx",
            "File",
            "SharePoint",
            4,
        ),
        (
            "Microsoft OneDrive for Business",
            15600,
            "FileModified",
            "Edit",
            "https://contoso-my.sharepoint.com/personal/Budget-{n}.xlsx",
            "File",
            "OneDrive",
            3,
        ),
        (
            "Microsoft Teams",
            11394,
            "MessageSent",
            "Create",
            "General",
            "Channel",
            "MicrosoftTeams",
            3,
        ),
    ]
]

SIGN_IN_TEMPLATES: list[Template] = [
    {
        "Application": app,
        "ApplicationId": app_id,
        "LogonType": '["interactiveUser"]',
        "ErrorCode": error,
        "ClientAppUsed": "Browser",
        "Browser": "Edge 131.0.0",
        "OSPlatform": "Windows10",
        "Country": "DE",
        "City": "Berlin",
        "IPAddress": "203.0.113.{n}",
        "ConditionalAccessStatus": 0,
        "RiskLevelDuringSignIn": 0,
        "RiskLevelAggregated": 0,
        "UserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/131.0",
        "_weight": weight,
    }
    for app, app_id, error, weight in [
        ("Office 365 Exchange Online", "00000002-0000-0ff1-ce00-000000000000", "0", 4),
        ("Microsoft Teams", "1fec8e78-bce4-4aaf-ab1b-5451cc387264", "0", 3),
        (
            "Office 365 SharePoint Online",
            "00000003-0000-0ff1-ce00-000000000000",
            "0",
            3,
        ),
        (
            "Office 365 Exchange Online",
            "00000002-0000-0ff1-ce00-000000000000",
            "50126",
            1,
        ),
    ]
]

URL_CLICK_TEMPLATES: list[Template] = [
    {
        "ActionType": action,
        "Url": url,
        "Workload": workload,
        "ThreatTypes": "",
        "DetectionMethods": "",
        "IsClickedThrough": False,
        "IPAddress": "203.0.113.{n}",
        "UrlChain": json.dumps([url]),
        "_weight": weight,
    }
    for action, url, workload, weight in [
        ("ClickAllowed", "https://www.northwindtraders.com/orders/{n}", "Email", 3),
        ("ClickAllowed", "https://www.linkedin.com/comm/me/", "Email", 2),
        ("ClickAllowed", "https://contoso.sharepoint.com/sites/team", "Teams", 2),
    ]
]

CERTIFICATE_TEMPLATES: list[Template] = [
    {
        "FileName": name,
        "IsSigned": True,
        "SignatureType": "Embedded",
        "Signer": signer,
        "Issuer": issuer,
        "IsTrusted": True,
        "IsRootSignerMicrosoft": signer.startswith("Microsoft"),
        "CertificateSerialNumber": serial,
        "_weight": 1,
    }
    for name, signer, issuer, serial in [
        (
            "chrome.exe",
            "Google LLC",
            "DigiCert Trusted G4 Code Signing RSA4096 SHA384 2021 CA1",
            "0e4418e2dede36dd2974c3443afb5ce5",
        ),
        (
            "msedge.exe",
            "Microsoft Corporation",
            "Microsoft Code Signing PCA 2011",
            "33000003af30400e4ca34d1e640000000003af",
        ),
        (
            "OUTLOOK.EXE",
            "Microsoft Corporation",
            "Microsoft Code Signing PCA 2011",
            "330000038c6a9a0b37e4b9a82400000000038c",
        ),
        (
            "svchost.exe",
            "Microsoft Windows",
            "Microsoft Windows Production PCA 2011",
            "33000004a5c0a3c9b1f8d7b3520000000004a5",
        ),
        (
            "python.exe",
            "Python Software Foundation",
            "DigiCert Trusted G4 Code Signing RSA4096 SHA384 2021 CA1",
            "0b4f2e5a1f4c7e9b3d8a6c2e1f0a9b8c",
        ),
    ]
]

VULNERABILITY_TEMPLATES: list[Template] = [
    {
        "SoftwareVendor": vendor,
        "SoftwareName": software,
        "SoftwareVersion": version,
        "CveId": cve,
        "VulnerabilitySeverityLevel": severity(cve),
        "RecommendedSecurityUpdate": update,
        "RecommendedSecurityUpdateId": update_id,
        "CveTags": [],
        "_weight": 1,
    }
    for vendor, software, version, cve, update, update_id in [
        (
            "microsoft",
            "windows_11",
            "10.0.22631.4317",
            "CVE-2024-43491",
            "October 2024 Security Updates",
            "5044284",
        ),
        ("google", "chrome", "130.0.6723.59", "CVE-2024-10487", "", ""),
        ("apache", "log4j", "2.14.1", "CVE-2021-44228", "", ""),
        (
            "microsoft",
            "exchange_server",
            "15.1.2375.7",
            "CVE-2021-34473",
            "July 2021 Security Updates",
            "5004780",
        ),
        ("7-zip", "7-zip", "23.01", "CVE-2024-11477", "", ""),
    ]
]

POST_DELIVERY_TEMPLATES: list[Template] = [
    {
        "Action": action,
        "ActionType": action_type,
        "ActionTrigger": trigger,
        "ActionResult": "Success",
        "DeliveryLocation": location,
        "ThreatTypes": threats,
        "DetectionMethods": "",
        "_weight": weight,
    }
    for action, action_type, trigger, location, threats, weight in [
        ("Moved to junk folder", "Spam ZAP", "SpecialAction", "Junk folder", "Spam", 3),
        ("Quarantine", "Phish ZAP", "SpecialAction", "Quarantine", "Phish", 1),
        ("Quarantine release", "Redelivery", "AdminAction", "Inbox/folder", "", 1),
    ]
]
