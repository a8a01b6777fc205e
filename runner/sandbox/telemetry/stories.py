"""Planted attack stories: what a hunt in ``jobs/`` is there to find.

Every story fires twice in every hour bucket, at a seeded minute in the first
half hour and again thirty minutes later, so any one-hour window holds at
least one whole occurrence (all rows of an occurrence fall within two minutes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import endpoint_stories as endpoint
from . import exploit_stories as exploit
from . import identity_stories as identity
from .scene import Scene


@dataclass(frozen=True)
class Story:
    """One planted behaviour and a KQL query that finds it."""

    name: str
    description: str
    tables: tuple[str, ...]
    query: str
    plant: Callable[[Scene], None]


def _story(
    name: str, tables: str, description: str, query: str, plant: Callable[[Scene], None]
) -> Story:
    return Story(name, description, tuple(tables.split()), query.strip(), plant)


STORIES: list[Story] = [
    _story(
        "powershell-from-appdata",
        "DeviceProcessEvents DeviceFileEvents",
        "An Office document starts PowerShell, which launches a dropped binary "
        "from the user's AppData.",
        """
DeviceProcessEvents
| where InitiatingProcessFileName =~ 'powershell.exe'
| where ProcessCommandLine contains 'appdata'
""",
        endpoint.powershell_from_appdata,
    ),
    _story(
        "encoded-powershell",
        "DeviceProcessEvents DeviceEvents",
        "PowerShell runs a base64-encoded download cradle.",
        """
DeviceProcessEvents
| where FileName =~ 'powershell.exe'
| where ProcessCommandLine has_any ('-EncodedCommand', '-enc', '-e')
""",
        endpoint.encoded_powershell,
    ),
    _story(
        "lolbin-download",
        "DeviceProcessEvents DeviceNetworkEvents",
        "certutil, bitsadmin or mshta fetch a payload over plain HTTP.",
        """
DeviceProcessEvents
| where FileName in~ ('certutil.exe', 'bitsadmin.exe', 'mshta.exe')
| where ProcessCommandLine contains 'http'
""",
        endpoint.lolbin_download,
    ),
    _story(
        "credential-dumping",
        "DeviceProcessEvents DeviceEvents AlertInfo AlertEvidence",
        "procdump or comsvcs.dll MiniDump read lsass memory.",
        """
DeviceEvents
| where ActionType == 'OpenProcessApiCall' and FileName =~ 'lsass.exe'
""",
        endpoint.credential_dumping,
    ),
    _story(
        "lateral-movement",
        "DeviceLogonEvents IdentityLogonEvents",
        "One admin account logs on from one workstation to many servers.",
        """
DeviceLogonEvents
| where LogonType in ('Network', 'RemoteInteractive') and ActionType == 'LogonSuccess'
| summarize Hosts = dcount(DeviceId) by AccountName, RemoteIP
| where Hosts >= 3
""",
        identity.lateral_movement,
    ),
    _story(
        "service-install",
        "DeviceProcessEvents DeviceEvents DeviceRegistryEvents",
        "sc.exe installs an auto-start service from ProgramData.",
        """
DeviceEvents
| where ActionType == 'ServiceInstalled'
""",
        endpoint.service_install,
    ),
    _story(
        "inbox-rule",
        "CloudAppEvents",
        "A mailbox gets a rule that forwards and deletes mail.",
        """
CloudAppEvents
| where ActionType == 'New-InboxRule'
""",
        identity.inbox_rule,
    ),
    _story(
        "phishing-click",
        "EmailEvents EmailUrlInfo UrlClickEvents "
        "DeviceNetworkEvents AlertInfo AlertEvidence",
        "A delivered phishing mail's link is clicked through.",
        """
UrlClickEvents
| where ThreatTypes has 'Phish' and IsClickedThrough
""",
        identity.phishing_click,
    ),
    _story(
        "qr-code-phish",
        "EmailEvents EmailUrlInfo",
        "A look-alike e-signature mail hides its link in a QR code and reaches "
        "the inbox.",
        """
EmailEvents
| where EmailDirection == 'Inbound' and DeliveryAction == 'Delivered'
| join kind=inner (EmailUrlInfo | where UrlLocation == 'QRCode') on NetworkMessageId
""",
        identity.qr_code_phish,
    ),
    _story(
        "bec-impersonation",
        "EmailEvents",
        "A look-alike of the CEO asks for an urgent task in a mail with no link "
        "or file; its intent is classified, but at low confidence it still "
        "reaches the inbox.",
        """
EmailEvents
| where ThreatClassification in ('Task', 'Gift card', 'Payroll', 'Invoice')
| where DeliveryAction == 'Delivered'
""",
        identity.bec_impersonation,
    ),
    _story(
        "shadow-copy-deletion",
        "DeviceProcessEvents AlertInfo AlertEvidence",
        "vssadmin or wmic deletes volume shadow copies.",
        """
DeviceProcessEvents
| where ProcessCommandLine has 'shadowcopy' or ProcessCommandLine has 'shadows'
""",
        endpoint.shadow_copy_deletion,
    ),
    _story(
        "scheduled-task",
        "DeviceProcessEvents DeviceEvents",
        "schtasks creates an on-logon task running a binary from AppData.",
        """
DeviceEvents
| where ActionType == 'ScheduledTaskCreated'
""",
        endpoint.scheduled_task,
    ),
    _story(
        "run-key",
        "DeviceProcessEvents DeviceRegistryEvents",
        "reg.exe adds a Run key value pointing into Temp.",
        """
DeviceRegistryEvents
| where RegistryKey endswith 'CurrentVersion\\\\Run'
""",
        endpoint.run_key,
    ),
    _story(
        "log-clearing",
        "DeviceProcessEvents AlertInfo AlertEvidence",
        "wevtutil clears the Security, System and Application logs.",
        """
DeviceProcessEvents
| where FileName =~ 'wevtutil.exe' and ProcessCommandLine has ' cl '
""",
        endpoint.log_clearing,
    ),
    _story(
        "defender-tampering",
        "DeviceProcessEvents",
        "PowerShell disables real-time protection and adds an exclusion.",
        """
DeviceProcessEvents
| where ProcessCommandLine has_any ('DisableRealtimeMonitoring', 'ExclusionPath')
""",
        endpoint.defender_tampering,
    ),
    _story(
        "web-shell",
        "DeviceProcessEvents",
        "The IIS worker process runs reconnaissance commands through cmd.exe.",
        """
DeviceProcessEvents
| where InitiatingProcessFileName =~ 'w3wp.exe' and FileName =~ 'cmd.exe'
""",
        endpoint.web_shell,
    ),
    _story(
        "office-script-host",
        "DeviceProcessEvents",
        "Word starts wscript.exe on a downloaded .jse script.",
        """
DeviceProcessEvents
| where InitiatingProcessFileName =~ 'winword.exe' and FileName =~ 'wscript.exe'
""",
        endpoint.office_script_host,
    ),
    _story(
        "sam-name-spoofing",
        "IdentityDirectoryEvents",
        "A machine account is renamed to a domain controller's name (CVE-2021-42278).",
        """
IdentityDirectoryEvents
| where ActionType == 'SAM Account Name changed'
""",
        identity.sam_name_spoofing,
    ),
    _story(
        "ldap-recon",
        "IdentityQueryEvents IdentityLogonEvents",
        "LDAP queries for SPN accounts and Domain Admins, then a Kerberos "
        "service ticket for an SPN.",
        """
IdentityQueryEvents
| where ActionType == 'LDAP query' and Query contains 'servicePrincipalName'
""",
        identity.ldap_recon,
    ),
    _story(
        "domain-enumeration",
        "DeviceProcessEvents",
        "net, whoami and nltest enumerate domain users, groups and trusts.",
        """
DeviceProcessEvents
| where FileName =~ 'net.exe' and ProcessCommandLine contains '/domain'
""",
        endpoint.domain_enumeration,
    ),
    _story(
        "local-admin-added",
        "DeviceProcessEvents DeviceEvents",
        "A new local account is created and added to Administrators.",
        """
DeviceEvents
| where ActionType == 'UserAccountAddedToLocalGroup'
""",
        endpoint.local_admin_added,
    ),
    _story(
        "print-spooler-exploit",
        "DeviceFileEvents DeviceImageLoadEvents DeviceProcessEvents",
        "The print spooler loads a dropped driver DLL from its Old folder and "
        "starts commands as SYSTEM (CVE-2021-34527).",
        """
DeviceImageLoadEvents
| where InitiatingProcessFileName =~ 'spoolsv.exe'
| where FolderPath contains @'spool\\drivers\\x64\\3\\Old'
""",
        exploit.print_spooler_exploit,
    ),
    _story(
        "rare-service-beacon",
        "DeviceEvents DeviceProcessEvents",
        "A randomly named service binary starts rundll32.exe without arguments.",
        """
DeviceProcessEvents
| where InitiatingProcessParentFileName =~ 'services.exe'
| where FileName =~ 'rundll32.exe' and ProcessCommandLine =~ 'rundll32.exe'
""",
        exploit.rare_service_beacon,
    ),
    _story(
        "psexec-remote-copy",
        "DeviceProcessEvents DeviceFileEvents",
        "PsExec copies its service and a payload to the ADMIN$ share of three servers.",
        """
DeviceFileEvents
| where InitiatingProcessFileName =~ 'PsExec.exe' and FolderPath startswith @'\\\\'
""",
        exploit.psexec_remote_copy,
    ),
    _story(
        "mshta-inline-script",
        "DeviceProcessEvents",
        "mshta.exe runs an inline about: script that starts a PowerShell download.",
        """
DeviceProcessEvents
| where InitiatingProcessFileName =~ 'mshta.exe'
| where InitiatingProcessCommandLine contains '<script>'
""",
        exploit.mshta_inline_script,
    ),
]
